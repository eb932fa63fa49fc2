"""The example gateway (examples/gateway: a reverse proxy built on arbiter's
tower layer, arbiter in the gateway's own process) driven by the official
OpenAI and MCP clients, in front of the provider stand-in and the real
`server-everything`. The layer decides and answers as `arbiter serve`
behind Envoy does: a floating model is refused in the OpenAI client's own
error shape, an allowed call reaches the provider held to its reservation
and without the caller's key, its usage settles from the answer (read back
from the journal afterwards), and an MCP listing is filtered, a hidden tool
refused and a credential in a result masked."""

import asyncio
import json
import pathlib
import subprocess
import sys
import time

import openai
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

from conftest import ARBITER, BUNDLE, PRINCIPAL, ROOT, stop, write_credentials
from fake_llm import PROMPT_TOKENS
from test_mcp_answers import AWS_KEY, everything, refusal_of, write_bundle  # noqa: F401 (fixture)

GATEWAY = pathlib.Path(ARBITER).with_name("arbiter-example-gateway")
MONITOR_KEY = {"x-arbiter-key": "k-monitor"}
CLAUDE = "claude-sonnet-4-5-20250929"
MESSAGES = [{"role": "user", "content": "How many rows arrived yesterday?"}]


@pytest.fixture(scope="module", autouse=True)
def gateway_built(built):
    assert GATEWAY.exists(), f"{GATEWAY} was not built"


class Gateway:
    def __init__(self, workdir: pathlib.Path, bundle: pathlib.Path, *routes: str):
        workdir.mkdir(parents=True, exist_ok=True)
        self.state, self.audit_log = workdir / "state", workdir / "audit.jsonl"
        cmd = [str(GATEWAY), "--bundle", str(bundle), "--listen", "127.0.0.1:0",
               "--credentials", str(write_credentials(workdir / "credentials.toml")),
               "--state", str(self.state), "--audit-log", str(self.audit_log)]
        for route in routes:
            cmd += ["--route", route]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("arbiter gateway listening on "):
            stop(self.proc)
            raise RuntimeError(f"the example gateway did not start: {line!r}")
        self.url = line.split()[-1]

    def spend(self, since: str):
        """What the journal holds, read once the gateway has stopped."""
        out = subprocess.run([ARBITER, "report", "--state", str(self.state), "--since", since, "--by", "pipeline",
                              "--format", "json"], cwd=ROOT, check=True, capture_output=True, text=True)
        return {row["key"]: row for row in json.loads(out.stdout)}


@pytest.fixture
def llm_gateway(tmp_path, fake_llm):
    _, port = fake_llm
    gateway = Gateway(tmp_path / "llm", BUNDLE, f"/v1/=http://127.0.0.1:{port}/v1/")
    yield gateway
    if gateway.proc.poll() is None:
        stop(gateway.proc)


def openai_client(gateway, run):
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0,
                         default_headers={**PRINCIPAL, **MONITOR_KEY, "x-arbiter-run": run})


def test_the_openai_client_through_the_example_gateway(llm_gateway, fake_llm):
    recorder, _ = fake_llm
    client = openai_client(llm_gateway, "run-gateway-example")
    today = time.strftime("%Y-%m-%d", time.gmtime())

    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert refused.value.body["code"] == "model_not_pinned", refused.value.body
    assert refused.value.response.headers["x-arbiter-decision"] == "deny"

    before = len(recorder.received)
    answer = client.chat.completions.create(model=CLAUDE, messages=MESSAGES, max_completion_tokens=2000)
    assert answer.choices[0].message.content == "ok"
    assert len(recorder.received) == before + 1, "only the allowed call reached the provider"
    forwarded = recorder.received[-1]
    assert forwarded["body"]["max_completion_tokens"] == 2000
    assert not {"x-arbiter-key", "X-Arbiter-Key"} & set(forwarded["headers"]), "the key stays at the gateway"

    assert stop(llm_gateway.proc) == 0, "the gateway did not shut down cleanly"
    row = llm_gateway.spend(today)["orders_daily"]
    # Settled from the provider's own report, not the ~2,000 reserved.
    assert (row["prompt_tokens"], row["output_tokens"], row["reconciled"]) == (PROMPT_TOKENS, 1, 1), row
    decisions = [json.loads(line) for line in llm_gateway.audit_log.read_text().splitlines()]
    assert [d["decision"]["decision"] for d in decisions if d.get("kind") == "decision"] == ["deny", "allow"]


def test_an_unreachable_upstream_is_a_502_and_releases_the_reservation(tmp_path, fake_llm):
    gateway = Gateway(tmp_path / "down", BUNDLE, "/v1/=http://127.0.0.1:9/v1/")
    client = openai_client(gateway, "run-gateway-down")
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model=CLAUDE, messages=MESSAGES, max_completion_tokens=2000)
    assert failed.value.status_code == 502
    assert stop(gateway.proc) == 0
    row = gateway.spend(time.strftime("%Y-%m-%d", time.gmtime()))["orders_daily"]
    assert row["output_tokens"] == 0 and row["reconciled"] == 1, row


def test_the_mcp_client_through_the_example_gateway(tmp_path, everything):  # noqa: F811 (fixture)
    manifest = write_bundle(tmp_path / "mcp-bundle.toml")
    gateway = Gateway(tmp_path / "mcp", manifest, f"/everything=http://127.0.0.1:{everything.port}/mcp,mcp=everything")

    async def work(session):
        shown = sorted(t.name for t in (await session.list_tools()).tools)
        hidden = await refusal_of(session.call_tool("get-tiny-image", {}))
        env = (await session.call_tool("get-env", {})).content[0].text
        return shown, hidden, env

    async def in_session():
        async with create_mcp_http_client(headers={**PRINCIPAL, **MONITOR_KEY, "x-arbiter-run": "r-mcp"}) as http:
            async with streamable_http_client(f"{gateway.url}/everything", http_client=http) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await work(session)

    try:
        shown, hidden, env = asyncio.run(in_session())
    finally:
        assert stop(gateway.proc) == 0
    assert shown == ["echo", "get-env", "get-sum"]
    assert hidden == "tool_not_allowed"
    assert AWS_KEY not in env and "[redacted:aws_access_key]" in env
    assert AWS_KEY not in gateway.audit_log.read_text()
