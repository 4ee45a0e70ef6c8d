#!/usr/bin/env bash
# Installs what building, running and testing pg_hybrid needs on Debian bookworm. Run as root;
# idempotent: a warm machine skips every step in a few seconds.
#   - PostgreSQL 15 server and headers, clang (for pgrx's bindings), build tools
#   - cargo-pgrx 0.18.0, initialised for PostgreSQL 15
#   - the unprivileged user that runs the clusters (Postgres refuses to run as root)
#   - moto_server (PyPI), the S3-compatible server the snapshot tests start on loopback, in its
#     own virtualenv (MOTO_VENV)
set -euo pipefail

PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
RUN_USER=${PGH_USER:-pgtest}
MOTO_VENV=${MOTO_VENV:-/var/tmp/pg_hybrid/venv}
MOTO_VERSION=5.2.1

packages=(postgresql-15 postgresql-server-dev-15 postgresql-contrib libclang-dev clang pkg-config
          libssl-dev make python3 python3-venv ca-certificates)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "setup: cargo not found; this machine kind ships Rust with rustup (expected in ~/.cargo/bin)" >&2
  exit 1
fi
if ! cargo pgrx --version 2>/dev/null | grep "0.18.0" >/dev/null; then
  echo "setup: installing cargo-pgrx 0.18.0 (a few minutes)"
  cargo install cargo-pgrx --version 0.18.0 --locked --quiet
fi
if ! grep -qs "pg15" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
  cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi

if ! id "$RUN_USER" >/dev/null 2>&1; then
  useradd -m "$RUN_USER"
fi
# grep without -q: it would exit at the first match and pip, killed by SIGPIPE, fail the pipe.
if ! "$MOTO_VENV/bin/pip" show moto 2>/dev/null | grep -x "Version: $MOTO_VERSION" >/dev/null; then
  echo "setup: installing moto[server] $MOTO_VERSION into $MOTO_VENV"
  python3 -m venv "$MOTO_VENV"
  "$MOTO_VENV/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
fi
echo "setup: ok (PostgreSQL $("$PG_CONFIG" --version | awk '{print $2}'), $(cargo pgrx --version), cluster user $RUN_USER, moto $MOTO_VERSION)"
