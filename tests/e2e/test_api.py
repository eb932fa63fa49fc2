"""The HTTP API of `arbiter serve`, end to end."""

import json
import re
import subprocess
import threading
import time

from conftest import ARBITER, MONITOR, ROOT, SCENARIOS, TOKEN, bearer, stop

PRINCIPAL = {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform", "environment": "prod",
             "run": "run-e2e"}


def tool(id, name, arguments, **extra):
    return {"id": id, "principal": PRINCIPAL, "action": {"kind": "tool_call", "tool": name, "arguments": arguments},
            **extra}


def llm(id, model="claude-sonnet-4-5-20250929", prompt=1000, max_output=500):
    return {"id": id, "principal": PRINCIPAL,
            "action": {"kind": "llm_request", "model": model, "prompt_tokens": prompt, "max_output_tokens": max_output}}


def test_decide_usage_outcomes_and_report(arbiter):
    r = arbiter.decide(llm("l1"))
    assert r.status_code == 200 and r.json()["decision"] == "allow"
    assert set(r.json()) == {"id", "decision", "reasons", "escalation", "obligations", "bundle"}, "no budgets leak"
    assert arbiter.client.post("/v1/usage", json={"id": "l1", "prompt_tokens": 1000, "output_tokens": 20}).json() == {
        "accepted": True}
    again = arbiter.client.post("/v1/usage", json={"id": "l1", "prompt_tokens": 1, "output_tokens": 1})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_reported"
    unknown = arbiter.client.post("/v1/usage", json={"id": "l-none", "prompt_tokens": 1, "output_tokens": 1})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "no_such_request"
    assert arbiter.decide(tool("t1", "warehouse.query", {"sql": "select 1"})).json()["decision"] == "allow"
    assert arbiter.client.post("/v1/outcomes", json={"id": "t1", "status": "success", "latency_ms": 12}).status_code == 200
    assert arbiter.client.post("/v1/outcomes", json={"id": "t1", "status": "success"}).status_code == 409
    assert arbiter.client.get("/v1/report", params={"since": "2020-01-01"}).status_code == 403, "agents read no spend"
    assert arbiter.client.get("/v1/report", params={"since": "2020-01-01"}, headers={"authorization": ""}).status_code == 401
    rows = arbiter.client.get("/v1/report", params={"since": "2020-01-01", "by": "model"}, headers=arbiter.admin()).json()
    assert rows[0]["key"] == "claude-sonnet-4-5-20250929" and rows[0]["prompt_tokens"] == 1000
    assert rows[0]["output_tokens"] == 20 and rows[0]["reconciled"] == 1


def test_escalation_approval_over_http(arbiter):
    first = arbiter.decide(tool("d1", "warehouse.drop_table", {"table": "tmp"})).json()
    assert first["decision"] == "escalate"
    esc = first["escalation"]["id"]
    assert arbiter.client.get("/v1/escalations").status_code == 403, "the agent's own key cannot list"
    assert arbiter.client.get("/v1/escalations", headers=bearer("wrong")).status_code == 401
    assert arbiter.client.post(f"/v1/escalations/{esc}/approve").status_code == 403, "nor approve"
    listed = arbiter.client.get("/v1/escalations", headers=arbiter.admin()).json()["escalations"]
    assert [e["id"] for e in listed] == [esc] and listed[0]["status"] == {"status": "pending"}
    oncall = bearer("k-oncall")
    assert [e["id"] for e in arbiter.client.get("/v1/escalations", headers=oncall).json()["escalations"]] == [esc]
    approved = arbiter.client.post(f"/v1/escalations/{esc}/approve", json={"comment": "tmp table"}, headers=oncall)
    assert approved.status_code == 200 and approved.json()["status"]["by"] == "oncall-alice"
    again = arbiter.client.post(f"/v1/escalations/{esc}/reject", headers=oncall)
    assert again.status_code == 409
    assert arbiter.client.post("/v1/escalations/esc-nope/approve", headers=oncall).status_code == 404

    retry = arbiter.decide(tool("d2", "warehouse.drop_table", {"table": "tmp"}, escalation_id=esc)).json()
    assert retry["decision"] == "allow" and retry["approved_by"] == "oncall-alice"
    twice = arbiter.decide(tool("d3", "warehouse.drop_table", {"table": "tmp"}, escalation_id=esc)).json()
    assert (twice["decision"], twice["reasons"][0]["code"]) == ("deny", "escalation_used")
    other = arbiter.decide(tool("d4", "warehouse.drop_table", {"table": "orders"}, escalation_id=esc)).json()
    assert other["reasons"][0]["code"] == "escalation_mismatch"


BAD_INPUT = [
    # (body, expected status, expected error code, text the message must contain)
    (b'{"id": "x", ', 400, "bad_request", "not valid UTF-8 JSON"),
    (b"\xff\xfe\x00garbage", 400, "bad_request", "not valid UTF-8 JSON"),
    (json.dumps({"id": "x", "action": llm("x")["action"]}).encode(), 400, "invalid_field", "missing field `principal`"),
    (json.dumps({**llm("x"), "principal": {**PRINCIPAL, "team": 7}}).encode(), 400, "invalid_field", "principal.team"),
    (json.dumps({**llm("x"), "principal": {**PRINCIPAL, "environment": "qa"}}).encode(), 400, "invalid_field",
     "principal.environment"),
    (json.dumps(tool("x", "", {})).encode(), 400, "invalid_field", "action.tool: must not be empty"),
    (json.dumps({**tool("x", "a", {}), "action": {"kind": "sql", "tool": "a"}}).encode(), 400, "invalid_field",
     "unknown variant `sql`"),
    (json.dumps(tool("x", "a", [1, 2])).encode(), 400, "invalid_field", "action.arguments: must be a JSON object"),
    (json.dumps({**llm("x"), "action": {"kind": "llm_request", "model": "m", "max_output_tokens": 1}}).encode(), 400,
     "invalid_field", "action.prompt_tokens"),
    (json.dumps(tool("x", "docs.search", {"query": "q" * (2 << 20)})).encode(), 413, "body_too_large", "length limit"),
]


def test_bad_input_gets_a_clear_error_and_the_server_stays_healthy(arbiter):
    for body, status, code, text in BAD_INPUT:
        # The server closes a connection whose body it refused unread (413):
        # such a request must not leave its connection to the next one.
        headers = {"content-type": "application/json", **({"connection": "close"} if status == 413 else {})}
        r = arbiter.client.post("/v1/decide", content=body, headers=headers)
        assert r.status_code == status, (body[:80], r.text)
        error = r.json()["error"]
        assert error["code"] == code and text in error["message"], (body[:80], error)
    bad_usage = arbiter.client.post("/v1/usage", json={"id": "x", "prompt_tokens": "many", "output_tokens": 1})
    assert bad_usage.status_code == 400 and "prompt_tokens" in bad_usage.json()["error"]["message"]
    assert arbiter.client.get("/nope").status_code == 404
    assert arbiter.client.get("/healthz").json() == {"status": "ok"}
    ready = arbiter.client.get("/readyz").json()
    assert ready["state"] == "ok" and ready["bundle"]["policies"] == 11
    assert arbiter.decide(llm("ok")).json()["decision"] == "allow"


def test_metrics_and_a_tamper_evident_audit_log(arbiter):
    arbiter.decide(tool("a1", "shell.exec", {"command": "ls"}))
    arbiter.decide(tool("a2", "warehouse.query", {"sql": "select secret from t"}))
    arbiter.decide(llm("a3", prompt=1000, max_output=500))
    metrics = arbiter.client.get("/metrics").text
    assert 'arbiter_decisions_total{decision="deny",source="api"} 1' in metrics
    assert 'arbiter_budget_used{scope="pipeline:orders_daily",window="day",unit="tokens"} 1500' in metrics
    assert 'arbiter_budget_limit{scope="team:data-platform",window="day",unit="tokens"} 1000000' in metrics
    assert 'arbiter_breaker_state{key="orders_daily/warehouse.query",state="closed"} 1' in metrics
    assert ('arbiter_spend_today{pipeline="orders_daily",agent="monitor",team="data-platform",'
            'model="claude-sonnet-4-5-20250929",kind="prompt_tokens"} 1000') in metrics
    assert 'arbiter_reasons_total{policy="tool-scope",code="tool_not_allowed"} 1' in metrics
    assert "arbiter_policy_seconds_bucket" in metrics
    log = arbiter.audit_log
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["request"]["id"] for r in records] == ["a1", "a2", "a3"]
    assert records[1]["request"]["action"]["arguments"]["sql"] == "***", "masked"
    assert records[1]["decision"]["policies"][0]["digest"].startswith("sha256:")
    ok = subprocess.run([ARBITER, "audit", "verify", str(log)], capture_output=True, text=True)
    assert ok.returncode == 0 and "3 records, chain intact" in ok.stdout
    replayed = subprocess.run([ARBITER, "replay", "--bundle", str(ROOT / "examples/orders_daily/bundle.toml"),
                               "--against", str(ROOT / "examples/orders_daily/bundle.toml"), str(log)],
                              capture_output=True, text=True, cwd=ROOT)
    assert replayed.returncode == 0 and "3 decisions compared, 0 differ" in replayed.stdout, replayed.stdout
    log.write_text(log.read_text().replace('"a1"', '"a9"', 1))
    bad = subprocess.run([ARBITER, "audit", "verify", str(log)], capture_output=True, text=True)
    assert bad.returncode == 1 and "record 1: hash mismatch" in bad.stdout


def in_process_replay(trace):
    out = subprocess.run([ARBITER, "replay", "--bundle", str(ROOT / "examples/orders_daily/bundle.toml"), str(trace)],
                         capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    return [json.loads(line)["result"] for line in out.stdout.splitlines() if line.startswith("{")]


def http_replay(server, trace):
    results = []
    replayer = bearer("k-replay")
    for line in trace.read_text().splitlines():
        event = json.loads(line)
        if event["op"] == "decide":
            d = server.decide({**event["request"], "timestamp": event["at"]}, headers=replayer).json()
            codes = sorted(r["code"] for r in d["reasons"])
            result = {"op": "decide", "id": d["id"], "decision": d["decision"], "codes": codes}
            clamps = [o["value"] for o in d["obligations"] if o["kind"] == "clamp_max_output_tokens"]
            if clamps:
                result["clamp_max_output_tokens"] = min(clamps)
        else:
            path = "/v1/usage" if event["op"] == "usage" else "/v1/outcomes"
            body = {k: v for k, v in event.items() if k not in ("op", "expect")}
            r = server.client.post(path, json=body, headers=replayer)
            result = {"op": event["op"], "id": event["id"], "accepted": r.status_code == 200}
        results.append(result)
    return results


def test_traces_over_http_match_in_process_replay(arbiter_factory):
    traces = sorted(SCENARIOS.glob("*.jsonl"))
    assert len(traces) >= 10
    for trace in traces:
        # Recorded traffic replays on its own clock only when the operator says so.
        server = arbiter_factory(trace.stem, "--clock", "request")
        over_http = http_replay(server, trace)
        in_process = in_process_replay(trace)
        for got, want in zip(over_http, in_process, strict=True):
            if got["op"] == "decide":
                assert got == want, (trace.name, got, want)
            else:
                assert got["accepted"] == ("accepted" in want), (trace.name, got, want)


GATEWAY_HEADERS = {"x-arbiter-pipeline": "orders_daily", "x-arbiter-agent": "monitor", "x-arbiter-team": "data-platform",
                   "x-arbiter-environment": "prod", "x-arbiter-run": "run-gw", "x-arbiter-key": "k-monitor"}


def test_http_ext_authz_variant(arbiter):
    """Envoy's HTTP ext_authz sends the original request to /ext_authz/<path>."""
    def check(path, body, headers=GATEWAY_HEADERS):
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return arbiter.client.post(f"/ext_authz{path}", content=content, headers=headers)

    ok = check("/v1/chat/completions", {"model": "gpt-4o-2024-08-06", "max_tokens": 50,
                                        "messages": [{"role": "user", "content": "hi"}]})
    assert ok.status_code == 200 and ok.headers["x-arbiter-decision"] == "allow"
    anthropic = check("/v1/messages", {"model": "claude-sonnet-4-5", "max_tokens": 50,
                                       "messages": [{"role": "user", "content": "hi"}]})
    assert anthropic.status_code == 403 and anthropic.json()["error"]["code"] == "model_not_pinned"
    escalated = check("/mcp", {"jsonrpc": "2.0", "id": 9, "method": "tools/call",
                               "params": {"name": "warehouse.drop_table", "arguments": {"table": "t"}}})
    body = escalated.json()
    # Non-2xx: Envoy's HTTP ext_authz would forward any 2xx. The body is still
    # the JSON-RPC error answering the call.
    assert escalated.status_code == 428 and body["id"] == 9 and body["error"]["code"] == -32002
    assert escalated.headers["x-arbiter-escalation-id"] == body["error"]["data"]["decision"]["escalation"]["id"]
    cases = [
        ({"jsonrpc": "2.0", "id": 3, "method": "eth_getBalance", "params": []}, 400, "method_not_allowed"),
        ({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": ""}}, 400, "params.name"),
        ({"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "warehouse.drop_table"}}, 400,
         "notification_not_allowed"),
        ({"jsonrpc": "2.0", "id": 5, "method": "resources/read", "params": {"uri": "file:///etc/passwd"}}, 403,
         "tool_not_allowed"),
        (b"\xff\xfe not json", 400, "body is not JSON"),
        ({"model": "m"}, 400, "body.messages: missing"),
    ]
    for body, status, text in cases:
        path = "/mcp" if isinstance(body, dict) and "jsonrpc" in body else "/v1/chat/completions"
        r = check(path, body)
        assert r.status_code == status and text in r.text, (body, r.status_code, r.text)
    passthrough = check("/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert passthrough.status_code == 200 and passthrough.headers["x-arbiter-decision"] == "pass"
    assert arbiter.client.get("/healthz").status_code == 200


def test_escalations_notify_the_webhook_with_retries(arbiter_factory, webhook_factory):
    # The first delivery fails: the server must retry.
    hook = webhook_factory(fail_first=1)
    received = hook.received
    server = arbiter_factory("webhook", "--escalation-webhook", hook.url)
    started = time.monotonic()
    decision = server.decide(tool("w1", "warehouse.drop_table", {"table": "tmp"})).json()
    assert decision["decision"] == "escalate"
    assert time.monotonic() - started < 1.0, "the decision does not wait for the webhook"
    deadline = time.monotonic() + 10
    while len(received) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(received) == 2, received
    assert received[1]["event"] == "escalation_created"
    assert received[1]["escalation"]["id"] == decision["escalation"]["id"]
    assert received[1]["escalation"]["approvers"] == ["data-platform-oncall"]
    assert "data-platform-oncall" in received[1]["text"], "a Slack incoming webhook shows `text`"


def audit_key(tmp_path):
    """A fresh audit key pair (`arbiter keygen`): the secret key's path; `.pub` beside it."""
    key = tmp_path / "audit.key"
    subprocess.run([ARBITER, "keygen", "--out", str(key)], check=True, capture_output=True)
    return key


def verify_audit(server, key):
    return subprocess.run([ARBITER, "audit", "verify", str(server.audit_log), "--key", f"{key}.pub"],
                          capture_output=True, text=True)


def test_audit_survives_a_crash_and_can_be_queried(arbiter_factory, tmp_path):
    import signal as signals

    key = audit_key(tmp_path)
    signed = ("--audit-key", str(key), "--audit-checkpoint-every", "50")
    server = arbiter_factory("crash", *signed)
    stop_flag = threading.Event()
    answered = []

    def load():
        with httpx_client(server.url) as c:
            i = 0
            while not stop_flag.is_set():
                i += 1
                try:
                    r = c.post("/v1/decide", json=tool(f"k{i}", "shell.exec" if i % 3 == 0 else "warehouse.query",
                                                       {"sql": "select 1"}))
                except Exception:  # noqa: BLE001 - the server is killed under us
                    return
                if r.status_code == 200:
                    answered.append(f"k{i}")

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(1.0)
    server.proc.send_signal(signals.SIGKILL)
    server.proc.wait()
    stop_flag.set()
    thread.join()
    # A process crash loses no answered decision: each was written before it was answered.
    lines = server.audit_log.read_text().split("\n")[:-1]  # the last line may be torn
    logged = {r["request"]["id"] for r in map(json.loads, lines) if r["kind"] == "decision"}
    assert len(answered) > 50 and set(answered) <= logged, set(answered) - logged
    verified = verify_audit(server, key)
    assert verified.returncode == 0 and "chain intact" in verified.stdout, verified.stdout
    tail = re.search(r"unsigned tail: (\d+) records", verified.stdout)
    assert int(tail[1]) <= 50 if tail else "no unsigned tail" in verified.stdout, verified.stdout
    # The restart signs the crash's unsigned tail.
    restarted = arbiter_factory("crash", *signed)
    assert stop(restarted.proc) == 0
    assert "no unsigned tail" in verify_audit(server, key).stdout
    denied = subprocess.run([ARBITER, "audit", "query", str(server.audit_log), "--verdict", "deny",
                             "--code", "tool_not_allowed", "--run", "run-e2e"], capture_output=True, text=True)
    lines = [json.loads(line) for line in denied.stdout.splitlines()]
    assert lines and all(r["request"]["action"]["tool"] == "shell.exec" for r in lines)
    none = subprocess.run([ARBITER, "audit", "query", str(server.audit_log), "--pipeline", "other"],
                          capture_output=True, text=True)
    assert none.stdout == "" and "0 records" in none.stderr


def httpx_client(url):
    import httpx

    return httpx.Client(base_url=url, timeout=5, headers=MONITOR)


def immutable(path, on):
    """chattr +i / -i: the server's open file refuses writes (root on ext4 and the like)."""
    return subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True).returncode == 0


def test_audit_required_denies_what_cannot_be_recorded(arbiter_factory, tmp_path):
    import pytest

    key = audit_key(tmp_path)
    required = arbiter_factory("required", "--audit-key", str(key), "--audit-required")
    served = arbiter_factory("best-effort", "--audit-key", str(key))
    for server in (required, served):
        assert server.decide(tool("before", "warehouse.query", {"sql": "select 1"})).json()["decision"] == "allow"
        assert server.client.get("/readyz").json()["audit"] == {"signed": True, "required": server is required,
                                                               "last_write": "ok"}
        if not immutable(server.audit_log, True):
            pytest.skip("chattr +i is not available here (needs root and a filesystem that supports it)")
        try:
            during = server.decide(tool("during", "warehouse.query", {"sql": "select 1"})).json()
            assert server.client.get("/readyz").json()["audit"]["last_write"] == "failed"
            metrics = server.client.get("/metrics").text
        finally:
            immutable(server.audit_log, False)
        assert "arbiter_audit_write_failures_total 1" in metrics, metrics
        if server is required:
            assert during["decision"] == "deny", during
            assert [(r["policy"], r["code"]) for r in during["reasons"]] == [("arbiter", "audit_unavailable")]
        else:
            assert during["decision"] == "allow", "without --audit-required the decision is served"
        after = server.decide(tool("after", "warehouse.query", {"sql": "select 1"})).json()
        assert after["decision"] == "allow" and server.client.get("/readyz").json()["audit"]["last_write"] == "ok"
        assert stop(server.proc) == 0
        verified = verify_audit(server, key)
        assert verified.returncode == 0 and "no unsigned tail" in verified.stdout, verified.stdout
        ids = [json.loads(line)["request"]["id"] for line in server.audit_log.read_text().splitlines()
               if '"kind":"decision"' in line]
        assert ids == ["before", "after"], "the unrecorded decision left no partial record"
