"""The embedded journal under concurrent load, killed with SIGKILL: every
charge the server acknowledged (an `allow` answered to an LLM request,
whose tokens it reserved) is in the state it restarts from. The journal
commits in groups (one fsync for every change written meanwhile); this is
the test that grouping never acknowledges a change before it is on disk."""

import json
import signal
import subprocess
import threading
import time

from conftest import ARBITER, ROOT
from test_api import httpx_client

CONNECTIONS = 32


def llm(request_id: str, run: str) -> dict:
    return {"id": request_id,
            "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                          "environment": "prod", "run": run},
            "action": {"kind": "llm_request", "model": "claude-sonnet-4-5-20250929", "prompt_tokens": 10,
                       "max_output_tokens": 10}}


def spend(state, since: str) -> dict:
    out = subprocess.run([ARBITER, "report", "--state", str(state), "--since", since, "--by", "pipeline",
                          "--format", "json"], cwd=ROOT, check=True, capture_output=True, text=True)
    return {row["key"]: row for row in json.loads(out.stdout)}


def test_no_acknowledged_charge_is_lost_to_a_kill_under_load(arbiter_factory):
    server = arbiter_factory("journal")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    stop_flag = threading.Event()
    acknowledged, sent = [], []

    def load(connection: int):
        with httpx_client(server.url) as client:
            i = 0
            while not stop_flag.is_set():
                i += 1
                request_id = f"c{connection}-{i}"
                sent.append(request_id)
                try:
                    # A fresh run every 20 calls: the run budget never runs out.
                    r = client.post("/v1/decide", json=llm(request_id, f"run-{connection}-{i // 20}"))
                except Exception:  # noqa: BLE001 - the server is killed under us
                    return
                if r.status_code == 200 and r.json()["decision"] == "allow":
                    acknowledged.append(request_id)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 400 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()
    stop_flag.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged) >= 400, f"only {len(acknowledged)} allows before the kill"

    row = spend(server.workdir / "state", today)["orders_daily"]
    # Every acknowledged reservation survived; nothing never sent appeared.
    assert len(acknowledged) <= row["requests"] <= len(sent), (len(acknowledged), row, len(sent))
    assert row["prompt_tokens"] >= 10 * len(acknowledged)
