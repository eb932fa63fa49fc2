"""A real Envoy with arbiter as its external processor (gRPC ext_proc),
driven by the official OpenAI, Anthropic and MCP clients, in front of a
stand-in for the providers that speaks their wire formats (fake_llm.py) and
a real MCP server. No test posts /v1/usage or /v1/outcomes: what settles a
reservation and feeds a breaker comes off the wire."""

import asyncio
import json
import re
import threading
import time

import anthropic
import httpx
import openai
import pytest

from conftest import AGENT_HEADERS, start_envoy, stop
from fake_llm import PROMPT_TOKENS, WORDS
from test_envoy import mcp_session

CLAUDE = "claude-sonnet-4-5-20250929"
GPT = "gpt-4o-2024-08-06"
RUN_LIMIT = 60000  # the reference bundle's per-run budget
MESSAGES = [{"role": "user", "content": "How many rows arrived yesterday?"}]


def openai_client(base, run, **headers):
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0,
                         default_headers={**AGENT_HEADERS, "x-arbiter-run": run, **headers})


def anthropic_client(base, run, **headers):
    return anthropic.Anthropic(base_url=base, api_key="unused", max_retries=0,
                               default_headers={**AGENT_HEADERS, "x-arbiter-run": run, **headers})


def used(arbiter):
    """The pipeline's tokens used today, from arbiter's metrics (0 if none):
    each test has a fresh server, so these are the test's own (run budgets
    are not exported as gauges)."""
    text = arbiter.client.get("/metrics").text
    match = re.search(r'arbiter_budget_used\{scope="pipeline:orders_daily",window="day",unit="tokens"\} (\d+)', text)
    return int(match.group(1)) if match else 0


def eventually(check, what, timeout=10.0):
    """Settling happens as the exchange ends, just after the client has its answer."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.05)


def settled_at(arbiter, expected):
    return eventually(lambda: used(arbiter) == expected or None, f"never settled at {expected}: {used(arbiter)}")


# The request mode of earlier configs (one turn more per exchange):
# decided and rewritten alike.
BUFFERED = {"request_body_mode": "BUFFERED", "send_body_without_waiting_for_header_response": "false"}


@pytest.fixture(params=["full-duplex", "buffered"])
def envoy_proc_either_mode(request, arbiter, fake_llm, mcp_upstream, tmp_path):
    """Envoy as in the example (full-duplex request), and with a buffered request body."""
    settings = BUFFERED if request.param == "buffered" else {}
    proc, url = start_envoy("envoy-ext-proc.yaml", arbiter, fake_llm[1], mcp_upstream.port, tmp_path,
                            settings=settings)
    yield url
    stop(proc)


def test_the_provider_gets_the_reserved_limit_in_its_own_field(envoy_proc_either_mode, fake_llm):
    recorder, _ = fake_llm
    url = envoy_proc_either_mode
    c = openai_client(url, "run-fields")
    before = len(recorder.received)
    c.chat.completions.create(model=CLAUDE, messages=MESSAGES)
    c.chat.completions.create(model=CLAUDE, messages=MESSAGES, max_tokens=300)
    c.responses.create(model=GPT, input="How many rows arrived yesterday?")
    anthropic_client(url, "run-fields").messages.create(model=CLAUDE, max_tokens=700, messages=MESSAGES)
    # A model the bundle does not allow never reaches the provider.
    with pytest.raises(openai.PermissionDeniedError):
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(recorder.received) == before + 4
    bodies = [r["body"] for r in recorder.received[before:]]
    # No limit sent: the provider is told the reserved default.
    assert bodies[0]["max_completion_tokens"] == 4096 and "max_tokens" not in bodies[0]
    # A limit sent: rewritten in the field the client used.
    assert bodies[1]["max_tokens"] == 300 and "max_completion_tokens" not in bodies[1]
    assert bodies[2]["max_output_tokens"] == 4096
    assert bodies[3]["max_tokens"] == 700


def test_a_clamp_reaches_the_provider_in_its_field(envoy_proc, fake_llm):
    recorder, _ = fake_llm
    c = openai_client(envoy_proc, "run-clamp", **{"x-fake": "hold"})
    recorder.release.clear()
    # Held open, the first reservation (30,000 + prompt) stays in the budget.
    first = threading.Thread(target=lambda: c.chat.completions.create(model=CLAUDE, messages=MESSAGES,
                                                                      max_completion_tokens=30000))
    first.start()
    eventually(lambda: any(r["headers"].get("x-arbiter-run") == "run-clamp" for r in recorder.received),
               "the first request never reached the provider")
    before = len(recorder.received)
    second = threading.Thread(target=lambda: c.chat.completions.create(model=CLAUDE, messages=MESSAGES,
                                                                       max_completion_tokens=40000))
    second.start()
    eventually(lambda: len(recorder.received) > before, "the clamped request never reached the provider")
    recorder.release.set()
    first.join(30), second.join(30)
    clamped = recorder.received[before]
    limit = clamped["body"]["max_completion_tokens"]
    assert 256 <= limit < 40000 and limit == int(clamped["headers"]["x-arbiter-clamp-max-output-tokens"])


@pytest.mark.parametrize("api", ["openai-json", "openai-stream", "responses-stream", "anthropic-json",
                                 "anthropic-stream"])
def test_usage_settles_from_the_answer_with_no_report(envoy_proc, arbiter, api):
    run = f"run-usage-{api}"
    c, a = openai_client(envoy_proc, run), anthropic_client(envoy_proc, run)
    if api == "openai-json":
        c.chat.completions.create(model=CLAUDE, messages=MESSAGES, max_completion_tokens=2000)
        expected = PROMPT_TOKENS + 1
    elif api == "openai-stream":
        # The client did not ask for usage: arbiter does, and removes the chunk.
        chunks = list(c.chat.completions.create(model=CLAUDE, messages=MESSAGES, max_completion_tokens=2000,
                                                stream=True))
        assert all(chunk.choices for chunk in chunks), "no usage-only chunk reached the client"
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks).split() == WORDS
        expected = PROMPT_TOKENS + len(WORDS)
    elif api == "responses-stream":
        events = list(c.responses.create(model=GPT, input="How many rows?", max_output_tokens=2000, stream=True))
        assert events[-1].type == "response.completed"
        expected = PROMPT_TOKENS + len(WORDS)
    elif api == "anthropic-json":
        assert a.messages.create(model=CLAUDE, max_tokens=2000, messages=MESSAGES).content[0].text == "ok"
        expected = PROMPT_TOKENS + 1
    else:
        with a.messages.stream(model=CLAUDE, max_tokens=2000, messages=MESSAGES) as stream:
            assert stream.get_final_text().split() == WORDS
        expected = PROMPT_TOKENS + len(WORDS)
    # Reserved: ~2,000 tokens; settled: exactly what the provider reported.
    settled_at(arbiter, expected)


def test_concurrent_streams_never_overrun_the_run_budget(envoy_proc, arbiter, fake_llm):
    recorder, _ = fake_llm
    run = "run-concurrent"
    recorder.release.clear()
    before = len(recorder.received)
    denied, errors = [], []

    def one():
        try:
            stream = openai_client(envoy_proc, run, **{"x-fake": "hold"}).chat.completions.create(
                model=CLAUDE, messages=MESSAGES, max_completion_tokens=4000, stream=True)
            for _ in stream:
                pass
        except openai.PermissionDeniedError as e:
            denied.append(e.body["code"])
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(64)]
    for t in threads:
        t.start()
    # Every request decided while all allowed ones are held open upstream.
    eventually(lambda: len(recorder.received) - before + len(denied) + len(errors) == 64,
               lambda: f"not all 64 were decided: {len(recorder.received) - before} reached, {denied}, {errors}", 60)
    reached = recorder.received[before:]
    granted = sum(r["body"]["max_completion_tokens"] for r in reached)
    # Held open, nothing is settled: the budget holds every reservation
    # (prompt + what the provider was told it may generate), within the limit.
    reserved = used(arbiter)
    assert granted + len(reached) <= reserved <= RUN_LIMIT, (len(reached), granted, reserved)
    assert all(r["body"]["stream_options"]["include_usage"] for r in reached)
    assert set(denied) <= {"budget_exhausted"} and denied, denied
    recorder.release.set()
    for t in threads:
        t.join(60)
    assert not errors, errors
    settled_at(arbiter, len(reached) * (PROMPT_TOKENS + len(WORDS)))


def test_a_cut_stream_and_an_upstream_error_settle(envoy_proc, arbiter):
    cut = openai_client(envoy_proc, "run-cut", **{"x-fake": "cut"})
    with pytest.raises(Exception):
        for _ in cut.chat.completions.create(model=GPT, messages=MESSAGES, max_completion_tokens=2000, stream=True):
            pass
    # The prompt as reserved (the provider read it) + the text delivered,
    # well below the 2,000-token reservation.
    settled = eventually(lambda: used(arbiter) or None, "the cut stream never settled")
    assert 0 < settled < 200, settled
    failing = openai_client(envoy_proc, "run-500", **{"x-fake": "error-500"})
    with pytest.raises(openai.InternalServerError):
        failing.chat.completions.create(model=CLAUDE, messages=MESSAGES, max_completion_tokens=2000)
    # The provider answered an error: nothing generated, the reservation released.
    settled_at(arbiter, settled)


def test_upstream_failures_open_the_breaker_before_the_provider_is_called(envoy_proc, fake_llm):
    recorder, _ = fake_llm
    failing = openai_client(envoy_proc, "run-breaker", **{"x-fake": "error-500"})
    for _ in range(5):
        with pytest.raises(openai.InternalServerError):
            failing.chat.completions.create(model=GPT, messages=MESSAGES, max_completion_tokens=100)
    before = len(recorder.received)

    def refused():
        try:
            openai_client(envoy_proc, "run-breaker-next").chat.completions.create(
                model=GPT, messages=MESSAGES, max_completion_tokens=100)
        except openai.PermissionDeniedError as e:
            return e.body["code"]
        return None

    # Outcomes land as each exchange ends: the breaker opens within moments.
    assert eventually(refused, "the breaker never opened") == "circuit_open"
    assert len(recorder.received) == before, "the refused request never reached the provider"


def test_a_failing_mcp_tool_opens_its_breaker_with_no_report(envoy_proc, mcp_upstream):
    async def work(session):
        await session.list_tools()  # tool-pin holds calls to what was listed
        results = [await session.call_tool("docs.search", {"query": f"runbook {i} for {w}"})
                   for i, w in enumerate(WORDS)]
        assert all(r.is_error for r in results)
        from mcp.shared.exceptions import MCPError

        async def code_of_next():
            try:
                await session.call_tool("docs.search", {"query": "orders_daily late partitions"})
            except MCPError as e:
                return e.error.data["code"]
            return None

        for _ in range(100):
            code = await code_of_next()
            if code:
                return code
            await asyncio.sleep(0.05)
        return None

    assert asyncio.run(mcp_session(envoy_proc, {"x-arbiter-run": "run-mcp-breaker"}, work)) == "circuit_open"
    assert mcp_upstream.calls().count("docs.search") >= 5


@pytest.mark.parametrize("failure_mode_allow,settings,passes", [
    (False, {}, False),
    # Full duplex fails open only if the failure is known before Envoy has
    # streamed any of the body (a race): the mode to fail open in is BUFFERED.
    (True, BUFFERED, True),
], ids=["closed", "allow-buffered"])
def test_envoy_failure_mode_when_arbiter_is_down(arbiter, fake_llm, mcp_upstream, tmp_path, failure_mode_allow,
                                                 settings, passes):
    recorder, port = fake_llm
    proc, url = start_envoy("envoy-ext-proc.yaml", arbiter, port, mcp_upstream.port, tmp_path, failure_mode_allow,
                            settings=settings)
    try:
        stop(arbiter.proc)
        before = len(recorder.received)
        r = httpx.post(f"{url}/v1/chat/completions", headers={**AGENT_HEADERS, "x-arbiter-run": "run-down"},
                       json={"model": "gpt-4o", "messages": MESSAGES}, timeout=10)
        if passes:
            # Unguarded: even a model the bundle would deny goes through.
            assert r.status_code == 200 and len(recorder.received) == before + 1
        else:
            assert r.status_code == 500 and len(recorder.received) == before
    finally:
        stop(proc)


def test_a_body_over_the_limit_is_refused_before_the_provider(arbiter_factory, fake_llm, mcp_upstream, tmp_path):
    recorder, port = fake_llm
    small = arbiter_factory("small-bodies", "--ext-proc-max-request-mib", "1")
    proc, url = start_envoy("envoy-ext-proc.yaml", small, port, mcp_upstream.port, tmp_path)
    try:
        before = len(recorder.received)
        huge = [{"role": "user", "content": "x" * (2 << 20)}]
        r = httpx.post(f"{url}/v1/chat/completions", headers={**AGENT_HEADERS, "x-arbiter-run": "run-huge"},
                       json={"model": CLAUDE, "messages": huge}, timeout=30)
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large", r.text
        assert len(recorder.received) == before
    finally:
        stop(proc)


def test_a_prompt_in_many_chunks_reaches_the_provider_whole(envoy_proc, fake_llm):
    # Sent in pieces, a pause between them: Envoy streams each to arbiter
    # as it comes; arbiter answers with the rewritten body in pieces of its
    # own (64 KiB), its length set (the client sent none: chunked).
    recorder, _ = fake_llm
    long = [{"role": "user", "content": " ".join(f"row{i}" for i in range(12000))}]
    body = json.dumps({"model": CLAUDE, "messages": long, "max_completion_tokens": 100}).encode()

    def pieces():
        for start in range(0, len(body), 30000):
            yield body[start:start + 30000]
            time.sleep(0.05)

    r = httpx.post(f"{envoy_proc}/v1/chat/completions", content=pieces(), timeout=30,
                   headers={**AGENT_HEADERS, "x-arbiter-run": "run-long", "content-type": "application/json"})
    assert r.status_code == 200, r.text
    received = recorder.received[-1]
    assert received["body"]["messages"] == long and received["body"]["max_completion_tokens"] == 100
    assert int(received["headers"]["content-length"]) > 64 * 1024


def test_a_body_larger_than_a_grpc_message_is_decided(envoy_proc_either_mode, fake_llm):
    # 5 MiB is past gRPC's usual 4 MiB message limit: were the stream to
    # close on it, Envoy would forward the request undecided.
    recorder, _ = fake_llm
    before = len(recorder.received)
    huge = [{"role": "user", "content": "x" * (5 << 20)}]
    r = httpx.post(f"{envoy_proc_either_mode}/v1/chat/completions", timeout=30,
                   headers={**AGENT_HEADERS, "x-arbiter-run": "run-5mib"}, json={"model": CLAUDE, "messages": huge})
    assert r.status_code == 403, r.text
    assert len(recorder.received) == before


@pytest.mark.parametrize("settings", [
    {"request_body_mode": "STREAMED", "request_trailer_mode": "SKIP"},
    {"request_body_mode": "NONE", "request_trailer_mode": "SKIP"},
    {"response_body_mode": "NONE"},
], ids=["request-streamed", "request-none", "response-none"])
def test_a_mode_that_lets_a_body_pass_unread_is_refused(arbiter, fake_llm, mcp_upstream, tmp_path, settings):
    recorder, port = fake_llm
    proc, url = start_envoy("envoy-ext-proc.yaml", arbiter, port, mcp_upstream.port, tmp_path, settings=settings)
    try:
        before = len(recorder.received)
        r = httpx.post(f"{url}/v1/chat/completions", headers={**AGENT_HEADERS, "x-arbiter-run": "run-modes"},
                       json={"model": CLAUDE, "messages": MESSAGES, "max_completion_tokens": 100}, timeout=10)
        assert r.status_code == 500 and r.json()["error"]["code"] == "ext_proc_misconfigured", r.text
        mode = next(iter(settings))
        assert f"{mode} {settings[mode]} lets" in r.json()["error"]["message"], r.text
        assert len(recorder.received) == before
    finally:
        stop(proc)


def test_observability_mode_fails_the_stream(arbiter, fake_llm, mcp_upstream, tmp_path):
    # Envoy forwards before any answer in this mode, so arbiter cannot keep
    # the provider from being called (docs/ext-proc.md): it fails the
    # stream, and the client gets a 500 instead of the answer.
    recorder, port = fake_llm
    proc, url = start_envoy("envoy-ext-proc.yaml", arbiter, port, mcp_upstream.port, tmp_path,
                            settings={"observability_mode": "true"})
    recorder.release.clear()
    try:
        r = httpx.post(f"{url}/v1/chat/completions",
                       headers={**AGENT_HEADERS, "x-arbiter-run": "run-observed", "x-fake": "hold"},
                       json={"model": CLAUDE, "messages": MESSAGES, "max_completion_tokens": 100}, timeout=10)
        assert r.status_code == 500, r.text
        assert used(arbiter) == 0, "nothing was decided or booked"
    finally:
        recorder.release.set()
        stop(proc)


def test_a_client_that_gives_up_waiting_still_settles(envoy_proc, arbiter, fake_llm):
    recorder, _ = fake_llm
    recorder.release.clear()
    slow = openai_client(envoy_proc, "run-gave-up", **{"x-fake": "hold"}).with_options(timeout=1.0)
    try:
        with pytest.raises(openai.APITimeoutError):
            slow.chat.completions.create(model=CLAUDE, messages=MESSAGES, max_completion_tokens=2000)
        # The exchange is cut when the client goes: the provider read the
        # prompt, nothing was delivered, the 2,000 reserved output tokens
        # are released rather than held until the reservation expires.
        settled = eventually(lambda: 0 < used(arbiter) < 100 and used(arbiter), "the cut exchange never settled")
        assert settled < 100, settled
    finally:
        recorder.release.set()


def test_an_exchange_past_its_time_limit_is_cut_and_settled(arbiter_factory, fake_llm, mcp_upstream, tmp_path):
    recorder, port = fake_llm
    brief = arbiter_factory("brief-exchanges", "--ext-proc-max-exchange-s", "1")
    proc, url = start_envoy("envoy-ext-proc.yaml", brief, port, mcp_upstream.port, tmp_path)
    recorder.release.clear()
    try:
        held = openai_client(url, "run-too-long", **{"x-fake": "hold"}).with_options(timeout=20.0)
        # arbiter ends the stream after 1 s; with failure_mode_allow false
        # Envoy fails the exchange rather than let it run on unwatched.
        with pytest.raises(openai.APIError) as cut:
            held.chat.completions.create(model=CLAUDE, messages=MESSAGES, max_completion_tokens=2000)
        assert not isinstance(cut.value, openai.APITimeoutError), "arbiter, not the client's timeout, ended it"
        settled = eventually(lambda: used(brief) or None, "the cut exchange never settled")
        assert settled < 100, settled
    finally:
        recorder.release.set()
        stop(proc)
