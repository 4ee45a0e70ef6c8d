#!/usr/bin/env bash
# Runs the pg_regress golden tests: pg_regress/sql/NAME.sql against pg_regress/expected/NAME.out,
# in name order, on a throwaway cluster of their own (pg_hybrid preloaded), with PostgreSQL's own
# pg_regress driver. Needs pg_hybrid installed (`make install`). Run as root.
#   REGRESS_PORT    port of the throwaway cluster (default 5489)
#   REGRESS_OUTPUT  where results/, regression.out and regression.diffs go (default pg_regress/)
# Exits non-zero, after printing the differences, if any test's output differs from its expected
# file; a test without an expected file fails too.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
PG_REGRESS="$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/regress/pg_regress"
port=${REGRESS_PORT:-5489}
out=${REGRESS_OUTPUT:-pg_regress}

tests=()
for f in pg_regress/sql/*.sql; do
  [ -e "$f" ] || continue
  tests+=("$(basename "$f" .sql)")
done
if ((${#tests[@]} == 0)); then
  echo "regress: no tests in pg_regress/sql" >&2
  exit 1
fi
missing=()
for t in "${tests[@]}"; do
  [ -f "pg_regress/expected/$t.out" ] || missing+=("$t")
done
if ((${#missing[@]})); then
  echo "regress: FAILED: no expected output for: ${missing[*]}" >&2
  echo "regress: run the test, check its output by eye, and save it as pg_regress/expected/NAME.out" >&2
  exit 1
fi

tmp=$(mktemp -d /tmp/pg_hybrid_regress.XXXXXX)
chmod 755 "$tmp"
cleanup() {
  scripts/cluster.sh stop "$tmp/data" || true
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
scripts/cluster.sh start "$tmp/data" "$port" >/dev/null
# With --use-existing, pg_regress expects the database to exist: create it as pg_regress itself
# would, with locale-independent messages and formats so the golden files are stable.
"$("$PG_CONFIG" --bindir)/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
  -c "CREATE DATABASE hybrid_regress TEMPLATE template0" \
  -c "ALTER DATABASE hybrid_regress SET lc_messages TO 'C'" \
  -c "ALTER DATABASE hybrid_regress SET lc_monetary TO 'C'" \
  -c "ALTER DATABASE hybrid_regress SET lc_numeric TO 'C'" \
  -c "ALTER DATABASE hybrid_regress SET lc_time TO 'C'" \
  -c "ALTER DATABASE hybrid_regress SET bytea_output TO 'hex'" \
  -c "ALTER DATABASE hybrid_regress SET timezone_abbreviations TO 'Default'" \
  -c "ALTER SYSTEM SET hybrid.snapshot_interval = 0" \
  -c "SELECT pg_reload_conf()" >/dev/null
# (The workers take no snapshots here: the golden files show only the snapshots they ask for.
# Workers are tested by tests/tests/workers.rs and snapshots.rs.)

mkdir -p "$out"
rm -rf "$out/results" "$out/regression.out" "$out/regression.diffs"
status=0
"$PG_REGRESS" --use-existing --bindir="$("$PG_CONFIG" --bindir)" \
  --host=127.0.0.1 --port="$port" --user=postgres \
  --inputdir=pg_regress --outputdir="$out" --dbname=hybrid_regress \
  "${tests[@]}" || status=$?
if ((status != 0)); then
  [ -s "$out/regression.diffs" ] && cat "$out/regression.diffs"
  echo "regress: last lines of the server log:" >&2
  tail -n 30 "$tmp/data/server.log" >&2 || true
  echo "regress: FAILED (pg_regress exit status $status); output in $out/results, differences in $out/regression.diffs" >&2
  exit 1
fi
echo "regress: ${#tests[@]} tests passed"
