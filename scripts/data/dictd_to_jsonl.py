#!/usr/bin/env python3
"""Entries of a dictd database as documents.

Usage: dictd_to_jsonl.py NAME.index NAME.dict.dz PREFIX >> docs.jsonl

A dictd database (as Debian's dict-wn, dict-gcide and dict-foldoc ship it) is an index of
"headword<TAB>offset<TAB>length" lines, offsets and lengths in dictd's base64 digits, into a
dictzip file (gzip-compatible). Each entry becomes {"id": "PREFIX:n", "title": headword,
"body": entry text}, n being the entry's line number in the index (0-based). Several headwords
can point at one entry; it is emitted once, under the first. The database's own metadata
entries (00-database-*) are skipped.
"""
import gzip
import json
import sys

DIGITS = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def dictd_number(text):
    value = 0
    for c in text:
        value = value * 64 + DIGITS[c]
    return value


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    index_path, dict_path, prefix = sys.argv[1:]
    with gzip.open(dict_path) as f:
        data = f.read()
    emitted = set()
    out = sys.stdout
    with open(index_path, encoding="utf-8", errors="replace") as index:
        for n, line in enumerate(index):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0].startswith(("00-", "00database")):
                continue
            start, length = dictd_number(parts[1]), dictd_number(parts[2])
            if (start, length) in emitted:
                continue
            emitted.add((start, length))
            body = data[start:start + length].decode("utf-8", "replace")
            out.write(json.dumps({"id": f"{prefix}:{n}", "title": parts[0], "body": body},
                                 ensure_ascii=False) + "\n")
    print(f"dictionaries: {len(emitted)} {prefix} entries", file=sys.stderr)


if __name__ == "__main__":
    main()
