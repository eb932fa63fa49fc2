#!/usr/bin/env python3
"""How a run's decision cost grows with its length, over /v1/decide.

Starts `arbiter serve` (the binary named by ARBITER, release for figures)
on the bench bundle, sends one run of 1,000 distinct `docs.search` calls on
one keep-alive connection (each allowed and committed, so the run's history
grows as in production), and prints the median latency of calls 1-50,
51-100, 451-500 and 951-1,000, each as a ratio to calls 51-100.

    ARBITER=target/release/arbiter python3 scripts/bench/run_length.py
"""

import http.client
import json
import os
import pathlib
import random
import socket
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARBITER = os.environ.get("ARBITER", str(ROOT / "target" / "release" / "arbiter"))
WORDS = ("orders daily schema change column missing partition late arrival freshness warehouse table rows count "
         "null duplicate key customer amount currency region eu backfill job failed retry timeout upstream source "
         "export runbook oncall alert threshold metric dashboard owner contract version drift").split()
CALLS = 1_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    port = free_port()
    server = subprocess.Popen([ARBITER, "serve", "--anonymous", "--no-grpc", "--http", f"127.0.0.1:{port}",
                               "--bundle", str(ROOT / "examples" / "bench" / "bundle.toml")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        conn = http.client.HTTPConnection("127.0.0.1", port)
        rng = random.Random(7)
        micros = []
        for n in range(CALLS):
            query = " ".join(rng.choice(WORDS) for _ in range(5)) + f" {n}"
            body = json.dumps({"id": f"rl-{n}", "principal": {"pipeline": "orders_daily", "agent": "monitor",
                                                              "team": "data-platform", "environment": "prod",
                                                              "run": "run-length"},
                               "action": {"kind": "tool_call", "tool": "docs.search",
                                          "arguments": {"query": query}}})
            started = time.perf_counter()
            conn.request("POST", "/v1/decide", body, {"content-type": "application/json"})
            answer = json.loads(conn.getresponse().read())
            micros.append((time.perf_counter() - started) * 1e6)
            if answer.get("decision") != "allow":
                print(f"call {n} was not allowed: {answer}", file=sys.stderr)
                return 1
        # Calls 1-50 include the pool's first instances; 51-100 is the first
        # warm window, the one the later ones are compared with.
        first = statistics.median(micros[50:100])
        for start in (0, 50, 450, 950):
            median = statistics.median(micros[start:start + 50])
            print(f"calls {start + 1}-{start + 50}: median {median:.0f} µs, {median / first:.2f}× calls 51-100")
        return 0
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())
