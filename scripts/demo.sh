#!/usr/bin/env bash
# Sets up a fresh machine and runs the orders_daily demo: builds the
# reference policies to Wasm components, shows what one of them may touch,
# runs the bundle's test cases and decides a few sample requests.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-unknown-unknown >/dev/null
cargo build --quiet -p arbiter-cli
arbiter=target/debug/arbiter
bundle=examples/orders_daily

echo "== build the reference policies (reproducible: digests match the bundle manifest)"
$arbiter build policies/tool-scope policies/human-review policies/model-pin policies/context-bloat \
    policies/data-residency policies/token-budget policies/tool-storm policies/retrieval-thrash \
    policies/circuit-breaker policies/tool-pin policies/secret-scan --out "$bundle/components"
$arbiter pin --check "$bundle/bundle.toml"

echo
echo "== inspect: what the token-budget policy is and may touch"
$arbiter inspect "$bundle/components/token-budget.wasm"

echo
echo "== test: the bundle against its cases"
$arbiter test "$bundle/bundle.toml" "$bundle/cases.json"

echo
echo "== replay: the recorded orders_daily nights, on their own clock"
$arbiter replay --quiet --bundle "$bundle/bundle.toml" "$bundle"/traces/*.jsonl

echo
echo "== eval: sample requests of the orders_daily monitor agent, sharing state"
state=$(mktemp -d)
for request in "$bundle"/requests/*.json; do
    $arbiter eval --format brief --clock request --state "$state" --bundle "$bundle/bundle.toml" "$request"
done

echo
echo "== report: spend by model"
$arbiter report --state "$state" --since 2026-11-26 --until 2026-11-27 --by model --prices "$bundle/prices.toml"
rm -rf "$state"
