"""The dishonest caller: every lever an agent held over its own limits,
tried against a real `arbiter serve`. Each of these got through before the
trust-boundaries work (decision 0009)."""

import datetime

import httpx

from conftest import bearer

PRINCIPAL = {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform", "environment": "prod",
             "run": "run-trust"}


def llm(id, run="run-trust", max_output=20000, **extra):
    return {"id": id, "principal": {**PRINCIPAL, "run": run},
            "action": {"kind": "llm_request", "model": "claude-sonnet-4-5-20250929", "prompt_tokens": 1000,
                       "max_output_tokens": max_output}, **extra}


def tool(id, name, arguments, run="run-trust", **extra):
    return {"id": id, "principal": {**PRINCIPAL, "run": run},
            "action": {"kind": "tool_call", "tool": name, "arguments": arguments}, **extra}


def rfc3339(offset_seconds):
    at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_seconds)
    return at.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def exhaust_run_budget(arbiter, run):
    """The run budget is 60,000 tokens: two 21k requests fit, the third is clamped or refused."""
    decisions = [arbiter.decide(llm(f"{run}-{i}", run=run)).json() for i in range(4)]
    assert decisions[-1]["reasons"][0]["code"] == "budget_exhausted", decisions[-1]
    return decisions


def test_a_caller_cannot_move_the_clock(arbiter):
    exhaust_run_budget(arbiter, "run-clock")
    # One report "from the future" for an unknown id used to sweep all state away.
    far = arbiter.client.post("/v1/usage", json={"id": "nope", "prompt_tokens": 0, "output_tokens": 0,
                                                 "at": "2099-01-01T00:00:00Z"})
    assert far.status_code == 404
    after = arbiter.decide(llm("run-clock-after", run="run-clock")).json()
    assert after["reasons"][0]["code"] == "budget_exhausted", "the budget survives a far-future report"
    # A timestamp of tomorrow, or of last year, does not open a fresh window.
    for offset in (86_400, 2 * 86_400, -400 * 86_400):
        moved = arbiter.decide(llm(f"run-clock-{offset}", run="run-clock", timestamp=rfc3339(offset))).json()
        assert moved["reasons"][0]["code"] == "budget_exhausted", (offset, moved)
    # ...and today's daily budget counts what a "tomorrow" request reserves.
    metrics = arbiter.client.get("/metrics").text
    day = [line for line in metrics.splitlines()
           if line.startswith('arbiter_budget_used{scope="pipeline:orders_daily",window="day"')]
    assert day and int(float(day[0].split()[-1])) >= 42_000, day


def test_a_caller_cannot_skip_an_open_breaker_with_a_future_timestamp(arbiter):
    for i in range(5):
        d = arbiter.decide(tool(f"q{i}", "warehouse.query", {"sql": "select 1"}, run=f"run-b{i}")).json()
        assert d["decision"] == "allow"
        assert arbiter.client.post("/v1/outcomes", json={"id": f"q{i}", "status": "failure"}).status_code == 200
    # The breaker opened for 60 s; a request claiming to be 2 minutes later
    # used to be admitted as a half-open probe.
    probe = arbiter.decide(tool("q-probe", "warehouse.query", {"sql": "select 1"}, run="run-b9",
                                timestamp=rfc3339(120))).json()
    assert (probe["decision"], probe["reasons"][0]["code"]) == ("deny", "circuit_open")


def test_a_caller_acts_only_as_its_grant_allows(arbiter):
    cases = [({**PRINCIPAL, "team": "finance"}, "team `finance`"),
             ({**PRINCIPAL, "environment": "dev"}, "environment `dev`"),
             ({**PRINCIPAL, "pipeline": "finance_daily", "agent": "x"}, "pipeline `finance_daily`")]
    for principal, named in cases:
        r = arbiter.decide({**llm("forged"), "principal": principal})
        assert r.status_code == 403 and r.json()["error"]["code"] == "principal_not_granted", r.text
        assert named in r.json()["error"]["message"]
    anonymous = arbiter.client.post("/v1/decide", json=llm("anon"), headers={"authorization": ""})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthenticated"
    unknown = arbiter.client.post("/v1/decide", json=llm("unknown"), headers=bearer("k-guessed"))
    assert unknown.status_code == 401
    approver = arbiter.client.post("/v1/decide", json=llm("approver"), headers=bearer("k-oncall"))
    assert approver.status_code == 403 and "lacks the `decide` role" in approver.text
    assert arbiter.decide(llm("mine", max_output=100)).json()["decision"] == "allow"


def test_reports_come_only_from_the_decision_s_owner(arbiter):
    d = arbiter.decide(llm("r1", run="run-report", max_output=30000)).json()
    assert d["decision"] == "allow"
    finance = bearer("k-finance")
    # Another tenant cannot refund the reservation, nor name its owner.
    refund = arbiter.client.post("/v1/usage", json={"id": "r1", "prompt_tokens": 0, "output_tokens": 0},
                                 headers=finance)
    assert refund.status_code == 404
    posing = arbiter.client.post("/v1/usage", json={"id": "r1", "prompt_tokens": 0, "output_tokens": 0,
                                                    "owner": "orders-monitor"}, headers=finance)
    assert posing.status_code == 403
    # A collector with the report role may, once.
    collector = bearer("k-collector")
    body = {"id": "r1", "prompt_tokens": 1000, "output_tokens": 10, "owner": "orders-monitor"}
    assert arbiter.client.post("/v1/usage", json=body, headers=collector).status_code == 200
    assert arbiter.client.post("/v1/usage", json=body, headers=collector).status_code == 409, "once"
    assert arbiter.client.post("/v1/usage", json={"id": "r1", "prompt_tokens": 0, "output_tokens": 0}).status_code == 409

    # Nor can another tenant trip (or hold closed) this tenant's breaker.
    for i in range(5):
        assert arbiter.decide(tool(f"t{i}", "warehouse.query", {"sql": "select 1"}, run=f"run-t{i}")).json()[
            "decision"] == "allow"
        tripped = arbiter.client.post("/v1/outcomes", json={"id": f"t{i}", "status": "failure"}, headers=finance)
        assert tripped.status_code == 404
    still = arbiter.decide(tool("t-after", "warehouse.query", {"sql": "select 1"}, run="run-t9")).json()
    assert still["decision"] == "allow", "the breaker stayed closed"


def test_approvals_come_from_named_approvers_and_stay_decided(arbiter):
    first = arbiter.decide(tool("e1", "warehouse.drop_table", {"table": "tmp"}, run="run-esc")).json()
    esc = first["escalation"]["id"]
    for key, status in (("k-mallory", 403), ("k-monitor", 403), (None, 401)):
        headers = bearer(key) if key else {"authorization": ""}
        r = arbiter.client.post(f"/v1/escalations/{esc}/approve", headers=headers)
        assert r.status_code == status, (key, r.text)
    admin = arbiter.client.post(f"/v1/escalations/{esc}/approve", headers=arbiter.admin())
    assert admin.status_code == 403, "the admin token deploys; it does not approve"
    free_text = arbiter.client.post(f"/v1/escalations/{esc}/approve", json={"by": "mallory"},
                                    headers=bearer("k-oncall"))
    assert free_text.status_code == 400, "the approver is the credential, not a field"
    assert arbiter.client.post(f"/v1/escalations/{esc}/approve", headers=bearer("k-oncall")).status_code == 200

    # Re-sending the escalated request opens nothing over the approval.
    for _ in range(3):
        again = arbiter.decide(tool("e1", "warehouse.drop_table", {"table": "tmp"}, run="run-esc")).json()
        assert again["decision"] == "escalate"
    listed = {e["id"]: e for e in arbiter.client.get("/v1/escalations", headers=arbiter.admin()).json()["escalations"]}
    assert listed[esc]["status"]["status"] == "approved" and listed[esc]["status"]["by"] == "oncall-alice"
    retry = arbiter.decide(tool("e2", "warehouse.drop_table", {"table": "tmp"}, run="run-esc",
                                escalation_id=esc)).json()
    assert (retry["decision"], retry["approved_by"]) == ("allow", "oncall-alice")
    # Another tenant cannot use the approval either (its ids are its own).
    stolen = arbiter.client.post("/v1/decide", headers=bearer("k-finance"), json={
        **tool("e3", "warehouse.drop_table", {"table": "tmp"}, escalation_id=esc),
        "principal": {"pipeline": "finance_daily", "agent": "a", "team": "finance", "environment": "prod",
                      "run": "r"}}).json()
    assert stolen["decision"] != "allow"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def flood(client, make, count):
    for i in range(count):
        r = client.post("/v1/decide", json=make(i))
        assert r.status_code in (200, 403), r.text


def test_floods_leave_memory_bounded_and_the_server_answering(arbiter_factory):
    """Every endpoint an agent can reach, flooded twice with distinct data."""
    server = arbiter_factory("flood", "--state-history-runs", "500", "--max-pending-escalations-per-principal", "50")
    client = httpx.Client(base_url=server.url, timeout=10, headers=bearer("k-monitor"))
    big = "x" * 16384

    def escalating(i):
        return tool(f"esc-{i}", "warehouse.drop_table", {"table": f"t{i}"}, run=f"run-e{i}")

    def one_call_run(i):
        return tool(f"run-{i}", "docs.search", {"query": f"q{i} {big}"}, run=f"flood-{i}")

    def reports(offset):
        for i in range(offset, offset + 1000):
            assert client.post("/v1/usage", json={"id": f"none-{i}", "prompt_tokens": 1,
                                                  "output_tokens": 1}).status_code == 404
            assert client.post("/v1/outcomes", json={"id": f"none-{i}", "status": "failure"}).status_code == 404

    def gateway_calls(offset):
        # Through the ext_authz endpoint, each with a model name of its own.
        for i in range(offset, offset + 1000):
            r = client.post("/ext_authz/v1/chat/completions", headers={
                "x-arbiter-key": "k-monitor", "x-arbiter-pipeline": "orders_daily", "x-arbiter-agent": "monitor",
                "x-arbiter-team": "data-platform", "x-arbiter-environment": "prod", "x-arbiter-run": f"gw-{i}"},
                json={"model": f"model-{i}", "max_tokens": 5, "messages": [{"role": "user", "content": big}]})
            assert r.status_code == 403, r.text

    rounds = []
    for offset in (0, 2000):
        flood(client, lambda i: escalating(offset + i), 2000)
        flood(client, lambda i: one_call_run(offset + i), 2000)
        reports(offset)
        gateway_calls(offset)
        rounds.append(rss_kib(server.proc.pid))
    # The first round filled every cap; the second, as large, adds nothing
    # that is kept. Unbounded (measured: caps lifted to 100,000, nine
    # policies) the second round grew RSS by 38 MiB. Until 2026-12-02 a
    # journal snapshot copied the state and its JSON text (the 16 KiB
    # queries of 500 runs) and RSS stepped by 20-28 MiB whenever one fell in
    # a round; streamed, four rounds read [64108, 64828, 65216, 65264] KiB.
    print(f"RSS after each round: {rounds} KiB")
    assert rounds[1] - rounds[0] < 8 * 1024, f"RSS grew from {rounds[0]} to {rounds[1]} KiB"
    refused = client.post("/v1/decide", json=escalating(99_999)).json()
    assert refused["reasons"][0]["code"] == "too_many_escalations", refused
    assert client.get("/healthz").status_code == 200
    assert client.post("/v1/decide", json=llm("after-flood", run="after", max_output=10)).json()["decision"] == "allow"
