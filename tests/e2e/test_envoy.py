"""A real Envoy with arbiter as ext_authz (gRPC), driven by the official
OpenAI client and the official MCP SDK. Agents prove who they are with an
identity token Envoy verifies (jwt_authn); Envoy tells arbiter the
principal, authenticated by its own gateway credential."""

import asyncio
import json

import httpx
import openai
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
from mcp.shared.exceptions import MCPError as McpError

from conftest import AGENT_HEADERS, MONITOR_CLAIMS, agent_token, bearer

MODEL = "claude-sonnet-4-5-20250929"


def client(base, run):
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0,
                         default_headers={**AGENT_HEADERS, "x-arbiter-run": run})


def chat(c, model=MODEL, max_tokens=100):
    return c.chat.completions.create(model=model, max_completion_tokens=max_tokens,
                                     messages=[{"role": "user", "content": "How many rows arrived yesterday?"}])


def test_openai_client_allowed_reaches_upstream_and_denied_gets_the_reason(envoy, fake_llm):
    recorder, _ = fake_llm
    before = len(recorder.received)
    answer = chat(client(envoy, "run-openai"))
    assert answer.choices[0].message.content == "ok"
    forwarded = recorder.received[before]
    assert forwarded["path"] == "/v1/chat/completions"
    assert forwarded["headers"]["x-arbiter-decision"] == "allow"
    with pytest.raises(openai.PermissionDeniedError) as denied:
        chat(client(envoy, "run-openai"), model="gpt-4o")
    error = denied.value.body
    assert error["code"] == "model_not_pinned" and error["type"] == "arbiter_denied"
    assert len(recorder.received) == before + 1, "the denied request never reached the upstream"


def test_budget_exhaustion_through_envoy(envoy, fake_llm):
    recorder, _ = fake_llm
    c = client(envoy, "run-budget")
    chat(c, max_tokens=30000)
    before = len(recorder.received)
    chat(c, max_tokens=30000)
    clamp = int(recorder.received[before]["headers"]["x-arbiter-clamp-max-output-tokens"])
    assert 256 <= clamp < 30000, "the second request only fits clamped"
    with pytest.raises(openai.PermissionDeniedError) as denied:
        chat(c, max_tokens=30000)
    assert denied.value.body["code"] == "budget_exhausted"


def test_unparseable_llm_traffic_is_refused_not_crashed(envoy):
    headers = {**AGENT_HEADERS, "x-arbiter-run": "r"}
    r = httpx.post(f"{envoy}/v1/chat/completions", headers=headers, json={"model": "m"})
    assert r.status_code == 400 and "body.messages: missing" in r.json()["error"]["message"]
    unknown = httpx.post(f"{envoy}/v1/chat/completions", headers=headers,
                         json={"model": "mystery-model-7", "messages": [{"role": "user", "content": "hi"}]})
    assert unknown.status_code == 403 and unknown.json()["error"]["code"] == "model_not_pinned"
    no_run = httpx.post(f"{envoy}/v1/chat/completions", headers=AGENT_HEADERS, json={"model": "m", "messages": [{}]})
    assert no_run.status_code == 400 and "missing header x-arbiter-run" in no_run.text
    elsewhere = httpx.post(f"{envoy}/v1/embeddings", headers=headers, json={"input": "x"})
    assert elsewhere.status_code == 400 and elsewhere.json()["error"]["code"] == "unrecognized_request"


async def mcp_session(envoy, headers, work):
    async with create_mcp_http_client(headers={**AGENT_HEADERS, **headers}) as http:
        async with streamable_http_client(f"{envoy}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)


def text_of(result):
    return result.content[0].text


def test_mcp_session_survives_denials(envoy):
    async def work(session):
        tools = await session.list_tools()
        assert {t.name for t in tools.tools} >= {"warehouse.query", "shell.exec"}
        with pytest.raises(McpError) as denied:
            await session.call_tool("shell.exec", {"command": "rm -rf /"})
        assert "tool_not_allowed" in denied.value.error.message
        assert denied.value.error.data["code"] == "tool_not_allowed"
        ran = await session.call_tool("warehouse.query", {"sql": "select count(*) from analytics.orders_daily"})
        assert text_of(ran).startswith("ran: select count(*)")

    asyncio.run(mcp_session(envoy, {}, work))


def test_escalate_approve_retry_through_envoy(envoy, arbiter):
    async def drop(session):
        return await session.call_tool("warehouse.drop_table", {"table": "analytics.orders_daily_tmp"})

    async def escalated(session):
        with pytest.raises(McpError) as e:
            await drop(session)
        return e.value.error

    # The approval is for this request of this run: the retry may come on a
    # new MCP session, so the run is named explicitly.
    run = {"x-arbiter-run": "run-escalation"}
    error = asyncio.run(mcp_session(envoy, run, escalated))
    assert error.code == -32002 and error.data["code"] == "needs_approval"
    escalation = error.data["decision"]["escalation"]["id"]
    refused = arbiter.client.post(f"/v1/escalations/{escalation}/approve", headers=bearer("k-mallory"))
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "not_an_approver"
    approved = arbiter.client.post(f"/v1/escalations/{escalation}/approve", headers=bearer("k-oncall"))
    assert approved.status_code == 200

    retry = {**run, "x-arbiter-escalation-id": escalation}
    result = asyncio.run(mcp_session(envoy, retry, drop))
    assert text_of(result) == "dropped analytics.orders_daily_tmp"

    again = asyncio.run(mcp_session(envoy, retry, escalated))
    assert again.data["code"] == "escalation_used"
    audit = [json.loads(line) for line in arbiter.audit_log.read_text().splitlines()]
    assert any(r["kind"] == "escalation_resolved" and r["details"]["by"] == "oncall-alice" for r in audit)


def audit_records(arbiter):
    import json as _json

    return [_json.loads(line) for line in arbiter.audit_log.read_text().splitlines()]


def test_the_principal_is_what_envoy_verified_not_what_the_agent_says(envoy, arbiter, fake_llm):
    recorder, _ = fake_llm
    before = len(recorder.received)
    # The agent claims another team's budget and a dev environment itself.
    forged = {**AGENT_HEADERS, "x-arbiter-run": "run-forged", "x-arbiter-team": "finance",
              "x-arbiter-environment": "dev", "x-arbiter-pipeline": "finance_daily"}
    answer = chat(openai.OpenAI(base_url=f"{envoy}/v1", api_key="unused", max_retries=0, default_headers=forged))
    assert answer.choices[0].message.content == "ok"
    decided = [r for r in audit_records(arbiter) if r["kind"] == "decision"][-1]
    assert decided["caller"] == "envoy"
    assert decided["request"]["principal"] == {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                                              "environment": "prod", "run": "run-forged"}
    forwarded = recorder.received[before]["headers"]
    assert "x-agent-token" not in forwarded and "x-arbiter-key" not in forwarded, "credentials stay at the gateway"

    # No token, a token signed by someone else, an expired token: Envoy
    # refuses them; nothing reaches arbiter or the upstream.
    decisions = len([r for r in audit_records(arbiter) if r["kind"] == "decision"])
    body = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    for headers in ({"x-arbiter-run": "r", "x-arbiter-team": "data-platform"},
                    {"x-agent-token": agent_token(MONITOR_CLAIMS, secret=b"forged-key-forged-key-forged-key-00")},
                    {"x-agent-token": agent_token(MONITOR_CLAIMS, expires_in=-600)}):
        r = httpx.post(f"{envoy}/v1/chat/completions", headers={"x-arbiter-run": "r", **headers}, json=body)
        assert r.status_code == 401, (headers, r.status_code, r.text)
    assert len(recorder.received) == before + 1
    assert len([r for r in audit_records(arbiter) if r["kind"] == "decision"]) == decisions


def test_a_client_cannot_pose_as_the_gateway(envoy, arbiter):
    """arbiter trusts principal headers only from a gateway credential; an
    agent that reaches its ext_authz endpoint directly is just an agent."""
    check = {"x-arbiter-pipeline": "finance_daily", "x-arbiter-agent": "a", "x-arbiter-team": "finance",
             "x-arbiter-environment": "prod", "x-arbiter-run": "r"}
    body = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    no_key = arbiter.client.post("/ext_authz/v1/chat/completions", json=body, headers={**check, "authorization": ""})
    assert no_key.status_code == 401 and no_key.json()["error"]["code"] == "unauthenticated"
    as_monitor = arbiter.client.post("/ext_authz/v1/chat/completions", json=body,
                                     headers={**check, "x-arbiter-key": "k-monitor"})
    assert as_monitor.status_code == 403 and as_monitor.json()["error"]["code"] == "principal_not_granted"
    as_gateway = arbiter.client.post("/ext_authz/v1/chat/completions", json=body,
                                     headers={**check, "x-arbiter-gateway-key": "k-monitor"})
    assert as_gateway.status_code == 403 and "lacks the `gateway` role" in as_gateway.text


def mcp_post(base, body, session=None):
    headers = {**AGENT_HEADERS, "accept": "application/json, text/event-stream"}
    if session:
        headers["mcp-session-id"] = session
    return httpx.post(f"{base}/mcp", json=body, headers=headers)


def mcp_open(base):
    """An MCP session opened by hand, JSON-RPC on the wire, so every refusal is seen as sent."""
    init = mcp_post(base, {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                           "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                                      "clientInfo": {"name": "e2e", "version": "1"}}})
    assert init.status_code == 200, init.text
    session = init.headers["mcp-session-id"]
    assert mcp_post(base, {"jsonrpc": "2.0", "method": "notifications/initialized"}, session).status_code in (200, 202)
    return session


@pytest.mark.parametrize("gateway", ["envoy", "envoy_http", "envoy_proc"])
def test_no_refused_mcp_call_reaches_the_server_in_either_envoy_mode(gateway, request, mcp_upstream):
    base = request.getfixturevalue(gateway)
    session = mcp_open(base)
    # As a client does before calling: behind ext_proc, tool-pin holds calls
    # to the definitions the server listed.
    listed = mcp_post(base, {"jsonrpc": "2.0", "id": 7, "method": "tools/list"}, session)
    assert listed.status_code == 200, listed.text

    def call(id, tool, arguments):
        return mcp_post(base, {"jsonrpc": "2.0", "id": id, "method": "tools/call",
                               "params": {"name": tool, "arguments": arguments}}, session)

    refused = {
        "tool_not_allowed": call(2, "shell.exec", {"command": "rm -rf /"}),
        "needs_approval": call(3, "warehouse.drop_table", {"table": "analytics.orders_daily"}),
        # The same call in notification form used to pass unguarded.
        "notification_not_allowed": mcp_post(base, {"jsonrpc": "2.0", "method": "tools/call", "params": {
            "name": "warehouse.drop_table", "arguments": {"table": "analytics.orders_daily"}}}, session),
        # Methods that make the server return data are decided like tools.
        "resources/read": mcp_post(base, {"jsonrpc": "2.0", "id": 4, "method": "resources/read",
                                          "params": {"uri": "file:///etc/passwd"}}, session),
        "method_not_allowed": mcp_post(base, {"jsonrpc": "2.0", "id": 5, "method": "tasks/run", "params": {}}, session),
    }
    allowed = call(6, "warehouse.query", {"sql": "select 1"})
    assert allowed.status_code == 200 and "ran: select 1" in allowed.text, allowed.text
    for expected, r in refused.items():
        error = r.json()["error"]
        code = error["data"]["code"]
        assert code == ("tool_not_allowed" if expected == "resources/read" else expected), (expected, r.text)
        # HTTP ext_authz lets any 2xx through: refusals must not be 2xx there.
        assert r.status_code == 200 if gateway != "envoy_http" else r.status_code >= 400, (expected, r.status_code)
    assert mcp_upstream.calls() == ["warehouse.query"], "only the allowed call reached the MCP server"
