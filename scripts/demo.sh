#!/usr/bin/env bash
# The demo behind `make demo` (which builds and installs pg_hybrid first): a local cluster with a
# table of ~64,000 real Debian package descriptions, a hybrid index on it, and a few searches.
#   DEMO_DIR   data directory of the demo cluster (created on first run)
#   DEMO_PORT  its port (127.0.0.1)
#   DATA_DIR   where the Debian data set is fetched (scripts/fetch-data.sh DATA_DIR debian)
# Idempotent: a second run reuses the cluster, the data, the table and the index, and only runs the
# searches again. Stop the cluster with `make stop-demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR=${DEMO_DIR:-/var/tmp/pg_hybrid/demo}
DEMO_PORT=${DEMO_PORT:-5488}
DATA_DIR=${DATA_DIR:-/var/tmp/pg_hybrid/data}
BIN=/usr/lib/postgresql/15/bin
LIB="$("$BIN/pg_config" --pkglibdir)/pg_hybrid.so"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "demo: $*"; }
sql() { PGOPTIONS="-c client_min_messages=warning" "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$DEMO_PORT" -U postgres "$@"; }
value() { sql -d "$1" -tAc "$2"; }
started=$(now)

# A running cluster keeps the library it loaded at start (shared_preload_libraries): if
# `make install` has put a different build in place since, restart it so the demo shows that build.
lib_sum=$(sha256sum "$LIB" | cut -d' ' -f1)
if [ -s "$DEMO_DIR/postmaster.pid" ] && [ "$(cat "$DEMO_DIR/pg_hybrid.so.sha256" 2>/dev/null)" != "$lib_sum" ]; then
  say "restarting the demo cluster to load the newly installed pg_hybrid"
  scripts/cluster.sh stop "$DEMO_DIR"
fi
scripts/cluster.sh start "$DEMO_DIR" "$DEMO_PORT"
echo "$lib_sum" > "$DEMO_DIR/pg_hybrid.so.sha256"

t=$(now)
scripts/fetch-data.sh "$DATA_DIR" debian
say "data set ready in $(since "$t") s: $DATA_DIR/debian"

if [ "$(value postgres "SELECT count(*) FROM pg_database WHERE datname = 'demo'")" = 0 ]; then
  sql -d postgres -c "CREATE DATABASE demo"
fi
# The extension's SQL can change without a version bump during development: if the installed
# script differs from the one the demo database was set up with, recreate the extension (this drops
# the index, rebuilt below). pgrx writes the script's statements in varying order, with source
# line comments: compare the sorted statement lines.
ext_sum=$(cat "$("$BIN/pg_config" --sharedir)"/extension/pg_hybrid--*.sql | grep -v '^--' | sort | sha256sum | cut -d' ' -f1)
if [ "$(cat "$DEMO_DIR/pg_hybrid.sql.sha256" 2>/dev/null)" != "$ext_sum" ]; then
  sql -d demo -c "DROP EXTENSION IF EXISTS pg_hybrid CASCADE"
fi
sql -d demo -c "CREATE EXTENSION IF NOT EXISTS pg_hybrid"
echo "$ext_sum" > "$DEMO_DIR/pg_hybrid.sql.sha256"

loaded=f
if [ "$(value demo "SELECT to_regclass('packages') IS NOT NULL")" = t ]; then
  loaded=$(value demo "SELECT EXISTS (SELECT FROM packages)")
fi
if [ "$loaded" != t ]; then
  t=$(now)
  # One transaction: an interrupted load leaves no half-filled table behind.
  python3 scripts/data/packages_copy.py "$DATA_DIR/debian/docs.jsonl" "$DATA_DIR/debian/sections.tsv" |
    sql -d demo --single-transaction \
      -c "DROP TABLE IF EXISTS packages" \
      -c "CREATE TABLE packages (id bigint PRIMARY KEY, name text, title text, body text, section text)" \
      -c "COMMENT ON TABLE packages IS 'Debian bookworm (main) packages: name, synopsis, long description, section'" \
      -c "COPY packages (id, name, title, body, section) FROM STDIN" \
      -c "ANALYZE packages"
  say "loaded $(value demo "SELECT count(*) FROM packages") rows into packages in $(since "$t") s"
else
  say "table packages already loaded ($(value demo "SELECT count(*) FROM packages") rows)"
fi

if [ "$(value demo "SELECT to_regclass('packages_search') IS NOT NULL")" != t ]; then
  rows=$(value demo "SELECT count(*) FROM packages")
  say "CREATE INDEX packages_search ON packages USING hybrid (id, title, body) WITH (key_field = 'id')"
  t=$(now)
  sql -d demo -c "CREATE INDEX packages_search ON packages USING hybrid (id, title, body) WITH (key_field = 'id')"
  say "$(awk -v a="$t" -v b="$(now)" -v n="$rows" 'BEGIN { printf "index built in %.2f s (%d rows/s)", b - a, n / (b - a) }')"
else
  say "index packages_search already exists"
fi
sql -d demo -c "SELECT documents, segments, pg_size_pretty(bytes) AS size, directory FROM hybrid.index_info('packages_search')"

search() { # search TITLE CONDITION: the count of matches, then the top 5 by BM25 score
  local select="SELECT id, name, round(hybrid.score(id)::numeric, 3) AS score, hybrid.snippet(body) AS snippet
FROM packages
WHERE $2
ORDER BY hybrid.score(id) DESC LIMIT 5;"
  echo
  echo "== $1: $(value demo "SELECT count(*) FROM packages WHERE $2") matching packages"
  echo "$select"
  sql -d demo -c '\pset format wrapped' -c '\pset columns 160' -c '\timing on' -c "$select"
}

search "Boolean query" "body @@@ '(postgres OR postgresql) AND (replication OR backup)'"
search "Phrase" "body @@@ '\"full text search\"'"
search "Fuzzy term (one typo allowed)" "body @@@ 'databse~1'"
search "Fields" "body @@@ 'title:editor AND body:vim'"
search "Search combined with SQL" "body @@@ 'syntax AND highlighting AND NOT title:(vim OR emacs)' AND section = 'editors'"

cat <<EOF

demo: ready in $(since "$started") s. Connect with:
  psql -h 127.0.0.1 -p $DEMO_PORT -U postgres demo
then try, e.g.:
  SELECT name, title FROM packages WHERE body @@@ 'postgre* AND "full text"' LIMIT 10;
Stop the cluster with: make stop-demo
EOF
