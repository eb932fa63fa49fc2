"""A real Envoy with arbiter as ext_authz (gRPC), driven by the official
OpenAI client and the official MCP SDK."""

import asyncio
import json

import httpx
import openai
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
from mcp.shared.exceptions import MCPError as McpError

from conftest import PRINCIPAL

MODEL = "claude-sonnet-4-5-20250929"


def client(base, run):
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0,
                         default_headers={**PRINCIPAL, "x-arbiter-run": run})


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
    headers = {**PRINCIPAL, "x-arbiter-run": "r"}
    r = httpx.post(f"{envoy}/v1/chat/completions", headers=headers, json={"model": "m"})
    assert r.status_code == 400 and "body.messages: missing" in r.json()["error"]["message"]
    unknown = httpx.post(f"{envoy}/v1/chat/completions", headers=headers,
                         json={"model": "mystery-model-7", "messages": [{"role": "user", "content": "hi"}]})
    assert unknown.status_code == 403 and unknown.json()["error"]["code"] == "model_not_pinned"
    no_principal = httpx.post(f"{envoy}/v1/chat/completions", json={"model": "m", "messages": [{}]})
    assert no_principal.status_code == 400
    assert "missing headers x-arbiter-pipeline, x-arbiter-agent, x-arbiter-team, x-arbiter-environment, x-arbiter-run" in no_principal.text
    elsewhere = httpx.post(f"{envoy}/v1/embeddings", headers=headers, json={"input": "x"})
    assert elsewhere.status_code == 400 and elsewhere.json()["error"]["code"] == "unrecognized_request"


async def mcp_session(envoy, headers, work):
    async with create_mcp_http_client(headers={**PRINCIPAL, **headers}) as http:
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
    approved = arbiter.client.post(f"/v1/escalations/{escalation}/approve", json={"by": "oncall-alice"},
                                   headers=arbiter.admin())
    assert approved.status_code == 200

    retry = {**run, "x-arbiter-escalation-id": escalation}
    result = asyncio.run(mcp_session(envoy, retry, drop))
    assert text_of(result) == "dropped analytics.orders_daily_tmp"

    again = asyncio.run(mcp_session(envoy, retry, escalated))
    assert again.data["code"] == "escalation_used"
    audit = [json.loads(line) for line in arbiter.audit_log.read_text().splitlines()]
    assert any(r["kind"] == "escalation_resolved" and r["details"]["by"] == "oncall-alice" for r in audit)
