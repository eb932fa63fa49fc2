#!/usr/bin/env bash
# The journal store's tail against memory's: `/v1/decide` at 64
# connections (wrk, closed loop, --latency), every request allowed and
# committed, state in memory and in the journal, alternated twice in one
# run so both see the same machine. With BASELINE=<another arbiter
# binary>, its journal is measured in the same rounds (before/after a
# change). Prints a table; figures go to docs/benchmarks.md by hand.
#
#   ARBITER=target/release/arbiter [BASELINE=/tmp/arbiter-before] scripts/bench/journal_tail.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
arbiter=${ARBITER:-target/release/arbiter}
baseline=${BASELINE:-}
seconds=${SECONDS_EACH:-8}
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# Runs one arbiter ($1) with state $2 (memory or journal) under wrk and
# prints a row.
measure() {
    local binary=$1 store=$2 label=$3 extra=""
    [ "$store" = journal ] && { rm -rf "$work/state"; extra="--state $work/state"; }
    # Anonymous on loopback: the figures are of deciding, not key lookups.
    $binary serve --anonymous --no-grpc --bundle examples/bench/bundle.toml --http 127.0.0.1:0 $extra \
        >"$work/serve.out" 2>"$work/serve.err" &
    pid=$!
    for _ in $(seq 100); do grep -q serving "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
    local http
    http=$(sed -nE 's/.*http=[^ ]+:([0-9]+).*/\1/p' "$work/serve.out")
    [ -n "$http" ] || { echo "arbiter did not start: $(cat "$work/serve.err")" >&2; exit 1; }
    local out
    out=$(wrk -t2 -c64 -d"${seconds}s" --latency -s scripts/bench/decide.lua "http://127.0.0.1:$http/v1/decide")
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    local rps p50 p99 max
    rps=$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    max=$(echo "$out" | awk '$1 == "Latency" {print $4; exit}')
    echo "| $label | $rps | $p50 | $p99 | $max |"
}

"$arbiter" build policies/* --out examples/orders_daily/components >/dev/null
echo "| state | req/s | p50 | p99 | max |"
echo "|---|---|---|---|---|"
for _ in 1 2; do
    measure "$arbiter" memory "in memory"
    measure "$arbiter" journal "journal"
    [ -n "$baseline" ] && measure "$baseline" journal "journal, baseline ($baseline)"
done
