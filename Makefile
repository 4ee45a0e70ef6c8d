# pg_hybrid: the two commands (see README.md).
#   make demo   install what is missing, build, install, start a local cluster with a demo table
#   make test   the same set-up, then every test: engine unit tests, pg_regress, integration tests
#   make bench  the same set-up, then every benchmark against its anchor on real data (~40 min)
# Both run as root on a fresh Debian bookworm machine; clusters run as the user pgtest.

DEMO_DIR  ?= /var/tmp/pg_hybrid/demo
DEMO_PORT ?= 5488
DATA_DIR  ?= /var/tmp/pg_hybrid/data
# The S3-compatible server of the snapshot tests (installed by scripts/setup.sh).
export MOTO_SERVER ?= /var/tmp/pg_hybrid/venv/bin/moto_server

.PHONY: demo test setup install unit regress integration stop-demo bench microbench

setup:
	@scripts/setup.sh

install: setup
	@scripts/install.sh

demo: install
	@DEMO_DIR=$(DEMO_DIR) DEMO_PORT=$(DEMO_PORT) DATA_DIR=$(DATA_DIR) scripts/demo.sh

stop-demo:
	@scripts/cluster.sh stop $(DEMO_DIR)

test: install unit regress integration
	@echo "test: all suites passed"

unit:
	cargo test --release --locked -p hybrid_engine

regress:
	@scripts/regress.sh

integration:
	cargo test --release --locked --no-fail-fast -p pg_hybrid_tests -- --test-threads=2

# Fetches the data sets (skipped when present), runs both suites in a tuned cluster of their own
# and prints one table of targets; the results go to bench-results/bench-<date>.json.
bench: install
	cargo run --release --locked -p pg_hybrid_bench -- all --data $(DATA_DIR)

# Criterion micro-benchmarks of the engine's hot paths (src/engine/benches: distances, graph search, tokenising, publish).
microbench: ; cargo bench --locked -p hybrid_engine
