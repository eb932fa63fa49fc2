"""Several `arbiter serve` replicas sharing one real Redis: budgets and
breakers hold across replicas, and a Redis outage fails decisions closed
with `state_unavailable` until Redis is back, without restarting arbiter."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import redis

CLIENTS = 64
RUN_LIMIT = 60_000  # the reference bundle's run budget
PROMPT, MAX_OUTPUT = 900, 100


def llm(id, run, prompt=PROMPT, max_output=MAX_OUTPUT):
    return {"id": id,
            "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                          "environment": "prod", "run": run},
            "action": {"kind": "llm_request", "model": "claude-sonnet-4-5-20250929",
                       "prompt_tokens": prompt, "max_output_tokens": max_output}}


def query(id, run):
    return {"id": id,
            "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                          "environment": "prod", "run": run},
            "action": {"kind": "tool_call", "tool": "warehouse.query",
                       "arguments": {"sql": f"select count(*) from analytics.orders_daily where id = '{id}'"}}}


def codes(decision):
    return [r["code"] for r in decision["reasons"]]


def replicas(arbiter_factory, redis_server, n=2):
    return [arbiter_factory(f"replica-{i}", state=redis_server.url) for i in range(n)]


def budget_used(redis_server, scope_and_window):
    client = redis.Redis(port=redis_server.port, decode_responses=True)
    [key] = client.keys(f"{{arbiter}}:total:tokens|{scope_and_window}*")
    return int(client.hget(key, "used"))


def test_two_replicas_and_64_clients_never_overshoot_one_budget(arbiter_factory, redis_server):
    servers = replicas(arbiter_factory, redis_server)
    attempts = 4 * CLIENTS
    barrier = threading.Barrier(CLIENTS)

    def client(c):
        server = servers[c % 2]
        # A connection pool per client, as 64 separate agents would have
        # (one httpx.Client shared by 32 threads once failed on the client
        # side with EBADF).
        with httpx.Client(base_url=server.url, timeout=10, headers=server.client.headers) as http:
            barrier.wait()
            return [http.post("/v1/decide", json=llm(f"c{c}-{i}", "race")).json()
                    for i in range(attempts // CLIENTS)]

    with ThreadPoolExecutor(CLIENTS) as pool:
        decisions = [d for batch in pool.map(client, range(CLIENTS)) for d in batch]
    allowed = [d for d in decisions if d["decision"] == "allow"]
    denied = [d for d in decisions if d["decision"] == "deny"]
    assert len(decisions) == attempts
    assert len(allowed) == RUN_LIMIT // (PROMPT + MAX_OUTPUT), "exactly the requests that fit"
    assert all(codes(d) == ["budget_exhausted"] for d in denied), {tuple(codes(d)) for d in denied}
    assert budget_used(redis_server, "run:orders_daily/race|run") == RUN_LIMIT
    by_replica = [sum(1 for d in allowed if d["id"].startswith(f"c{c}-")) for c in range(CLIENTS)]
    assert sum(by_replica[0::2]) > 0 and sum(by_replica[1::2]) > 0, "both replicas allowed some"


def test_a_breaker_opened_through_one_replica_denies_on_the_other(arbiter_factory, redis_server):
    a, b = replicas(arbiter_factory, redis_server)
    for i in range(5):  # the bundle's breaker: 5 calls minimum, 50 % failures
        decision = a.decide(query(f"q{i}", f"run-{i}")).json()
        assert decision["decision"] == "allow", decision
        assert a.client.post("/v1/outcomes", json={"id": f"q{i}", "status": "failure"}).status_code == 200
    decision = b.decide(query("q-after", "run-after")).json()
    assert decision["decision"] == "deny"
    assert codes(decision) == ["circuit_open"]
    metrics = b.client.get("/metrics").text
    assert 'arbiter_breaker_state{key="orders_daily/warehouse.query",state="open"} 1' in metrics


def test_redis_killed_mid_load_fails_closed_and_recovers_without_restart(arbiter_factory, redis_server):
    server = arbiter_factory("replica", state=redis_server.url)
    results, stop = [], threading.Event()

    def load(worker):
        i = 0
        while not stop.is_set():
            response = server.decide(llm(f"w{worker}-{i}", f"load-{worker}-{i}", prompt=10, max_output=10))
            results.append((time.monotonic(), response.status_code, response.json()))
            i += 1

    workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    time.sleep(1.0)
    redis_server.kill()
    killed = time.monotonic()
    time.sleep(1.5)
    down = server.client.get("/readyz")
    metrics_down = server.client.get("/metrics").text
    redis_server.start()
    restarted = time.monotonic()
    deadline = restarted + 10
    while not any(t > restarted and d["decision"] == "allow" for t, _, d in list(results)):
        assert time.monotonic() < deadline, "decisions did not resume after Redis came back"
        time.sleep(0.05)
    time.sleep(0.5)
    stop.set()
    for w in workers:
        w.join()

    assert server.proc.poll() is None, "arbiter kept running"
    assert all(status == 200 for _, status, _ in results), {status for _, status, _ in results}
    during = [d for t, _, d in results if killed + 0.3 < t < restarted]
    assert during, "no decision was attempted while Redis was down"
    assert all(d["decision"] == "deny" and set(codes(d)) == {"state_unavailable"} for d in during), during[:3]
    assert down.status_code == 503 and down.json()["state"] == "unavailable"
    assert "arbiter_state_up 0" in metrics_down
    assert server.client.get("/readyz").status_code == 200

    # No acknowledged charge was lost: the AOF kept every allowed reservation.
    # A commit whose reply was lost to the kill may have been applied while
    # its request was denied: charges only ever over-count, by those.
    allowed = sum(1 for _, _, d in results if d["decision"] == "allow")
    unavailable = sum(1 for _, _, d in results if "state_unavailable" in codes(d))
    used = budget_used(redis_server, "pipeline:orders_daily|day:")
    assert allowed * 20 <= used <= (allowed + unavailable) * 20, (allowed, unavailable, used)
    assert used - allowed * 20 <= 4 * 20, "at most one in-flight commit per client was lost to the kill"
