"""Time per streamed answer through Envoy: URL, label. Sequential streamed
chat completions of the e2e provider stand-in (tests/e2e/fake_llm.py),
reports the median time to the last byte and the events per answer, so
that two runs (with and without ext_proc) give the cost per streamed chunk
(the stand-in writes each event as one chunk)."""

import statistics
import sys
import time

import httpx

url, label = sys.argv[1], sys.argv[2]
headers = {"x-arbiter-pipeline": "orders_daily", "x-arbiter-agent": "monitor", "x-arbiter-team": "data-platform",
           "x-arbiter-environment": "prod", "x-arbiter-run": f"bench-stream-{label}"}
body = {"model": "claude-sonnet-4-5-20250929", "max_completion_tokens": 256, "stream": True,
        "messages": [{"role": "user", "content": "How many orders arrived yesterday?"}]}
times, events = [], 0
with httpx.Client(timeout=10) as client:
    for i in range(220):
        started = time.perf_counter()
        with client.stream("POST", url, json=body, headers=headers) as answer:
            assert answer.status_code == 200, answer.read()
            events = sum(1 for line in answer.iter_lines() if line.startswith("data:"))
        if i >= 20:  # warm-up
            times.append(time.perf_counter() - started)
print(f"| streamed answer, {label}, {events} events each, 200 in sequence | median {statistics.median(times) * 1000:.2f} ms,"
      f" p99 {statistics.quantiles(times, n=100)[98] * 1000:.2f} ms |")
