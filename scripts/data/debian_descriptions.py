#!/usr/bin/env python3
"""Debian package descriptions from the archive's index files, as documents.

Usage: debian_descriptions.py TRANSLATION_EN OUTDIR [PACKAGES]

TRANSLATION_EN is the i18n/Translation-en index of a suite and component (bookworm main: about
64,000 packages); PACKAGES, optional, is the binary Packages index of the same suite (e.g.
main/binary-amd64), which carries each package's section.

Writes
  OUTDIR/docs.jsonl     one {"id": package, "title": synopsis, "body": long description} per line,
                        in archive order
  OUTDIR/sections.tsv   (with PACKAGES) "package<TAB>section" per line, sorted by package; packages
                        built only for other architectures are absent from an amd64 index
Each file is written under a temporary name and renamed, so an interrupted run leaves none behind.
"""
import json
import os
import sys


def stanzas(path):
    """Yields each deb822 stanza of `path` as a dict of field -> list of lines (first line, then
    continuation lines with their leading space removed)."""
    fields, current = {}, None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line.strip():
                if fields:
                    yield fields
                fields, current = {}, None
            elif line[0] in " \t":
                if current is not None:
                    fields[current].append(line[1:])
            else:
                name, _, value = line.partition(":")
                current = name
                fields[name] = [value.strip()]
    if fields:
        yield fields


def long_description(lines):
    """The continuation lines of a Description field as text: a line holding only "." is an
    empty line (Debian policy 5.6.13)."""
    body = ["" if line.strip() == "." else line for line in lines]
    return "\n".join(body).strip()


def write_atomically(path, lines):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        for line in lines:
            out.write(line + "\n")
    os.replace(tmp, path)


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    translation, outdir = sys.argv[1], sys.argv[2]
    packages = sys.argv[3] if len(sys.argv) == 4 else None
    os.makedirs(outdir, exist_ok=True)

    docs = []
    for st in stanzas(translation):
        if "Package" not in st or "Description-en" not in st:
            continue
        desc = st["Description-en"]
        docs.append(json.dumps(
            {"id": st["Package"][0], "title": desc[0], "body": long_description(desc[1:])},
            ensure_ascii=False))
    write_atomically(os.path.join(outdir, "docs.jsonl"), docs)
    print(f"debian: {len(docs)} descriptions -> {outdir}/docs.jsonl", file=sys.stderr)

    if packages:
        sections = {}
        for st in stanzas(packages):
            if "Package" in st and "Section" in st:
                sections.setdefault(st["Package"][0], st["Section"][0])
        write_atomically(os.path.join(outdir, "sections.tsv"),
                         (f"{p}\t{s}" for p, s in sorted(sections.items())))
        print(f"debian: {len(sections)} package sections -> {outdir}/sections.tsv", file=sys.stderr)


if __name__ == "__main__":
    main()
