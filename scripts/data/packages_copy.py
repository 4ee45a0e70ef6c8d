#!/usr/bin/env python3
"""The demo table's rows, in COPY's text format, from the Debian data set of fetch-data.sh.

Usage: packages_copy.py DIR/debian/docs.jsonl [DIR/debian/sections.tsv] | psql -c "COPY packages FROM STDIN"

Columns: id (1, 2, ... in file order), name (the package), title (its synopsis), body (its long
description), section (from sections.tsv; NULL for a package it does not list).
"""
import json
import sys

ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def field(value):
    return "\\N" if value is None else value.translate(ESCAPES)


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    sections = {}
    if len(sys.argv) == 3:
        with open(sys.argv[2], encoding="utf-8") as f:
            for line in f:
                name, _, section = line.rstrip("\n").partition("\t")
                sections[name] = section
    out = sys.stdout
    with open(sys.argv[1], encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            doc = json.loads(line)
            row = (str(n), doc["id"], doc["title"], doc["body"], sections.get(doc["id"]))
            out.write("\t".join(field(v) for v in row) + "\n")


if __name__ == "__main__":
    main()
