#!/usr/bin/env bash
# Manages a local PostgreSQL 15 cluster with pg_hybrid preloaded, run by an unprivileged user.
#   cluster.sh start DIR PORT   create the cluster if DIR is empty, then start it (idempotent)
#   cluster.sh stop DIR         stop it (fast mode)
#   cluster.sh status DIR
# The cluster listens on 127.0.0.1 and a socket in /tmp, trusts local connections (a development
# and test cluster), and loads pg_hybrid through shared_preload_libraries.
set -euo pipefail
BIN=/usr/lib/postgresql/15/bin
RUN_USER=${PGH_USER:-pgtest}
cmd=${1:?usage: cluster.sh start|stop|status DIR [PORT]}
dir=${2:?data directory}

# The server must not inherit RUST_BACKTRACE from a developer's shell: pgrx would append a Rust
# backtrace to the DETAIL of every error users see.
as_user() {
  if [ "$(id -un)" = "$RUN_USER" ]; then env -u RUST_BACKTRACE "$@"; else runuser -u "$RUN_USER" -- env -u RUST_BACKTRACE "$@"; fi
}

case "$cmd" in
  start)
    port=${3:?port}
    if [ ! -s "$dir/PG_VERSION" ]; then
      install -d -m 700 -o "$RUN_USER" -g "$RUN_USER" "$dir"
      as_user "$BIN/initdb" -D "$dir" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >/dev/null
      cat >> "$dir/postgresql.conf" <<CONF
# pg_hybrid development cluster
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '/tmp'
shared_preload_libraries = 'pg_hybrid'
max_connections = 100
shared_buffers = 256MB
maintenance_work_mem = 256MB
logging_collector = off
log_min_messages = warning
CONF
    fi
    if ! as_user "$BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
      as_user "$BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
    fi
    echo "cluster: running in $dir on port $(grep -E '^port' "$dir/postgresql.conf" | tail -1 | awk '{print $3}')"
    ;;
  stop)
    if [ -s "$dir/PG_VERSION" ] && as_user "$BIN/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
      as_user "$BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
    fi
    ;;
  status)
    as_user "$BIN/pg_ctl" -D "$dir" status
    ;;
  *)
    echo "usage: cluster.sh start|stop|status DIR [PORT]" >&2
    exit 2
    ;;
esac
