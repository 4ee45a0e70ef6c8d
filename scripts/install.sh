#!/usr/bin/env bash
# Builds pg_hybrid (release profile) and installs it into PostgreSQL 15. Run as root.
#
# The shared library is installed by rename, never overwritten in place: a running cluster keeps
# the old file mapped, and writing into a mapped library crashes it. New clusters (and restarts)
# load the new one.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config

cargo pgrx package --pg-config "$PG_CONFIG" --out-dir target/pgrx-package >/dev/null
pkg=target/pgrx-package
libdir=$("$PG_CONFIG" --pkglibdir)
sharedir=$("$PG_CONFIG" --sharedir)
src_lib=$(find "$pkg" -name 'pg_hybrid.so' | head -1)
# A name of our own: two installs running at once must not rename each other's half-copied file.
tmp="$libdir/.pg_hybrid.so.new.$$"
install -m 755 "$src_lib" "$tmp"
mv -f "$tmp" "$libdir/pg_hybrid.so"
for f in $(find "$pkg" -path '*/extension/*' -type f); do
  install -m 644 "$f" "$sharedir/extension/$(basename "$f")"
done
# Scripts of released versions and the upgrades between them (frozen once released).
for f in sql/pg_hybrid--*.sql; do
  install -m 644 "$f" "$sharedir/extension/$(basename "$f")"
done
echo "install: pg_hybrid $(grep -m1 '^version' Cargo.toml | cut -d'"' -f2) -> $libdir"
