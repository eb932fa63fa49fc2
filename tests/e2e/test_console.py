"""The console (/ui) in a real headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium): approving an escalation, budgets and
breakers, the kill switch from the page and from the CLI on a second
replica, budget alerts to a webhook; and the attacks a browser makes easy
(forged sessions, CSRF, roles). Saves screenshots to docs/img/."""

import json
import re
import shutil
import subprocess
import time

import httpx
import pytest

from conftest import ARBITER, ROOT, TOKEN, bearer
from test_api import GATEWAY_HEADERS

pytest.importorskip("selenium")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

IMG = ROOT / "docs" / "img"


def principal(run="r-console"):
    return {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform", "environment": "prod",
            "run": run}


def tool(id, name, arguments, **extra):
    return {"id": id, "principal": principal(), "action": {"kind": "tool_call", "tool": name,
                                                          "arguments": arguments}, **extra}


def llm(id, run, prompt, max_output=1000):
    return {"id": id, "principal": principal(run), "action": {
        "kind": "llm_request", "model": "claude-sonnet-4-5-20250929", "prompt_tokens": prompt,
        "max_output_tokens": max_output}}


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the whole module."""
    if not shutil.which("chromium") or not shutil.which("chromedriver"):
        pytest.fail("chromium and chromium-driver are needed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,860",
                 "--disable-gpu", "--no-first-run"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.implicitly_wait(0)
    yield driver
    driver.quit()


def wait_for(driver, predicate, timeout=10):
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: predicate(d))


def login(driver, server, key):
    driver.delete_all_cookies()
    driver.get(f"{server.url}/ui/login")
    driver.find_element(By.ID, "token").send_keys(key)
    driver.find_element(By.ID, "login").click()
    wait_for(driver, lambda d: d.find_elements(By.ID, "who"))


def shot(driver, name):
    IMG.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(IMG / f"console-{name}.png"))


def text(driver):
    return driver.find_element(By.TAG_NAME, "body").text


def test_approve_in_the_console_and_the_retry_passes_once(arbiter, browser):
    # A write through the read-only query tool waits for the on-call group.
    first = arbiter.decide(tool("c1", "warehouse.query", {"sql": "delete from orders_daily where false"})).json()
    assert first["decision"] == "escalate"
    esc = first["escalation"]["id"]

    # The admin (no approve role) sees it, and the buttons refused.
    login(browser, arbiter, TOKEN)
    browser.get(f"{arbiter.url}/ui/escalations")
    row = browser.find_element(By.CSS_SELECTOR, f"tr.escalation[data-id='{esc}']")
    assert row.find_elements(By.CSS_SELECTOR, "button.refused") and not row.find_elements(By.CSS_SELECTOR, "button.approve")
    assert "lacks the `approve` role" in row.text

    # The on-call approver: arguments masked as in the audit log (--audit-mask sql), a countdown, approve.
    login(browser, arbiter, "k-oncall")
    browser.get(f"{arbiter.url}/ui/escalations")
    row = browser.find_element(By.CSS_SELECTOR, f"tr.escalation[data-id='{esc}']")
    assert "***" in row.text and "delete from" not in browser.page_source
    assert "orders_daily/monitor" in row.text and "data-platform-oncall" in row.text
    wait_for(browser, lambda d: "left" in d.find_element(By.CSS_SELECTOR, "time.countdown").text)
    shot(browser, "escalations")
    row.find_element(By.CSS_SELECTOR, "button.approve").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "notice"))
    assert f"{esc} approved by oncall-alice" in browser.find_element(By.ID, "notice").text
    decided = browser.find_element(By.CSS_SELECTOR, f"#decided tr[data-id='{esc}']")
    assert "approved" in decided.text and "oncall-alice" in decided.text

    retry = arbiter.decide(tool("c2", "warehouse.query", {"sql": "delete from orders_daily where false"},
                                escalation_id=esc)).json()
    assert retry["decision"] == "allow" and retry["approved_by"] == "oncall-alice"
    again = arbiter.decide(tool("c3", "warehouse.query", {"sql": "delete from orders_daily where false"},
                                escalation_id=esc)).json()
    assert (again["decision"], again["reasons"][0]["code"]) == ("deny", "escalation_used")

    # Decisions, filtered, link to their audit record (masked there too).
    browser.get(f"{arbiter.url}/ui/decisions?decision=escalate")
    rows = browser.find_elements(By.CSS_SELECTOR, "#decisions tr.decision")
    assert rows and all("escalate" in r.text for r in rows)
    shot(browser, "decisions")
    rows[0].find_element(By.TAG_NAME, "a").click()
    record = json.loads(wait_for(browser, lambda d: d.find_element(By.ID, "record")).text)
    assert record["request"]["action"]["arguments"]["sql"] == "***"


def test_attacks_on_the_console_are_refused(arbiter):
    base = arbiter.url
    pending = arbiter.decide(tool("a1", "warehouse.drop_table", {"table": "tmp"})).json()["escalation"]["id"]

    def session(key):
        client = httpx.Client(base_url=base, follow_redirects=False)
        assert client.post("/ui/login", data={"token": key}).status_code == 303
        page = client.get("/ui/escalations").text
        return client, re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)

    # A forged or missing credential gets no session.
    with httpx.Client(base_url=base, follow_redirects=False) as anon:
        assert anon.post("/ui/login", data={"token": "k-forged"}).status_code == 401
        assert anon.post("/ui/login", data={"token": "k-monitor"}).status_code == 403, "decide-only keys stay out"
        assert anon.get("/ui/escalations").headers["location"] == "/ui/login"
        anon.cookies.set("arbiter_session", "0" * 64)
        assert anon.get("/ui/escalations").status_code == 303
        assert anon.post(f"/ui/escalations/{pending}/approve", data={"csrf": "x"}).status_code == 303
    alice, alice_csrf = session("k-oncall")
    admin, admin_csrf = session(TOKEN)
    # CSRF: missing, or another session's token.
    assert alice.post(f"/ui/escalations/{pending}/approve", data={"comment": "no token"}).status_code == 422
    assert alice.post(f"/ui/escalations/{pending}/approve", data={"csrf": admin_csrf}).status_code == 403
    # An approver not named by the escalation, and an admin without the approve role, are refused as by the API.
    mallory, mallory_csrf = session("k-mallory")
    refused = mallory.post(f"/ui/escalations/{pending}/approve", data={"csrf": mallory_csrf})
    assert refused.status_code == 403 and "not_an_approver" in refused.text
    assert admin.post(f"/ui/escalations/{pending}/approve", data={"csrf": admin_csrf}).status_code == 403
    # A non-admin cannot roll back, nor resume a halt.
    assert alice.post("/ui/bundles/rollback", data={"csrf": alice_csrf}).status_code == 403
    halted = alice.post("/ui/halts", data={"csrf": alice_csrf, "kind": "pipeline", "name": "orders_daily",
                                           "reason": "drill"})
    assert halted.status_code == 303, "an approver may halt"
    resumed = alice.post("/ui/halts/resume", data={"csrf": alice_csrf, "scope": "pipeline:orders_daily"})
    assert resumed.status_code == 403 and "admin" in resumed.text
    assert arbiter.client.post("/v1/halts/resume", json={"scope": "pipeline:orders_daily"},
                               headers=bearer("k-oncall")).status_code == 403
    assert arbiter.client.post("/v1/halts", json={"scope": "all", "reason": "x"}).status_code == 403, "agents may not"
    # Scopes in odd encodings or case are refused or lift nothing.
    for odd in ["Pipeline:orders_daily", "PIPELINE:orders_daily", "pipeline orders_daily", "pipeline:"]:
        answer = arbiter.client.post("/v1/halts/resume", json={"scope": odd}, headers=arbiter.admin())
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, "invalid_scope"), odd
    for alike in ["pipeline:Orders_Daily", "pipeline:orders%5Fdaily", "pipeline:orders_daily "]:
        answer = arbiter.client.post("/v1/halts/resume", json={"scope": alike}, headers=arbiter.admin())
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_halted"), alike
    assert arbiter.decide(tool("a2", "docs.search", {"query": "runbook"})).json()["reasons"][0]["code"] == "halted"
    # The gateway paths stop too: an MCP call and an LLM call through HTTP ext_authz.
    mcp = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "docs.search", "arguments": {}}}
    chat = {"model": "gpt-4o-2024-08-06", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    for path, body in [("/ext_authz/mcp", mcp), ("/ext_authz/v1/chat/completions", chat)]:
        answer = arbiter.client.post(path, content=json.dumps(body), headers=GATEWAY_HEADERS)
        assert answer.status_code == 403 and "halted" in answer.text, (path, answer.text)
    # Pages carry a strict CSP and never a key.
    page = alice.get("/ui/halts")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "k-oncall" not in page.text and TOKEN not in page.text


def test_budget_bars_breakers_and_an_alert_at_80_percent_once(arbiter_factory, webhook_factory, browser):
    hook = webhook_factory()
    server = arbiter_factory("alerts", "--escalation-webhook", hook.url,
                             "--budget-alert", "pipeline:*=50,80,100")
    login(browser, server, TOKEN)

    def percent():
        browser.get(f"{server.url}/ui/budgets")
        rows = browser.find_elements(By.CSS_SELECTOR, "tr.budget[data-scope='pipeline:orders_daily']")
        return int(rows[0].get_attribute("data-percent")) if rows else 0

    assert percent() == 0
    # The pipeline's day budget is 200,000 tokens; each run may use 60,000.
    for i, prompt in enumerate([50_000, 50_000]):
        assert server.decide(llm(f"b{i}", f"run-{i}", prompt)).json()["decision"] == "allow"
    assert percent() == 51
    for i, prompt in enumerate([50_000, 10_000, 4_000], start=2):
        assert server.decide(llm(f"b{i}", f"run-{i}", prompt)).json()["decision"] == "allow"
    assert percent() == 84
    # Failed queries: four fail every call of the window, the fifth opens the breaker.
    def breaker():
        browser.get(f"{server.url}/ui/budgets")
        return browser.find_element(By.CSS_SELECTOR, "tr.breaker[data-key='orders_daily/warehouse.query']").text

    for i in range(5):
        assert server.decide(tool(f"f{i}", "warehouse.query", {"sql": "select 1"})).json()["decision"] == "allow"
        assert server.client.post("/v1/outcomes", json={"id": f"f{i}", "status": "failure"}).status_code == 200
        if i == 3:
            assert "closed" in breaker() and "100%" in breaker()
    assert "open until" in breaker()
    deadline = time.monotonic() + 10
    while len(hook.events("budget_alert")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # any duplicate would have arrived by now
    alerts = hook.events("budget_alert")
    at_80 = [a for a in alerts if a["budget"]["threshold_percent"] == 80]
    assert len(at_80) == 1 and len(alerts) == 2, alerts
    assert "pipeline:orders_daily" in at_80[0]["text"] and "80%" in at_80[0]["text"], "Slack shows `text`"
    browser.get(f"{server.url}/ui/budgets")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#alerts tr.alert")) == 2
    shot(browser, "budgets")
    metrics = server.client.get("/metrics").text
    assert 'arbiter_budget_alerts_total{threshold="80"} 1' in metrics
    browser.get(f"{server.url}/ui/spend?by=model")
    assert browser.find_elements(By.CSS_SELECTOR, "#spend-chart rect")
    shot(browser, "spend")


def test_halt_from_the_page_and_from_the_cli_on_a_second_replica(arbiter_factory, redis_server, browser):
    first, second = (arbiter_factory(f"replica-{i}", state=redis_server.url) for i in range(2))
    query = lambda id: tool(id, "docs.search", {"query": f"runbook {id}"})  # noqa: E731
    assert first.decide(query("h0")).json()["decision"] == "allow"
    login(browser, first, TOKEN)
    browser.get(f"{first.url}/ui/halts")
    Select(browser.find_element(By.ID, "halt-kind")).select_by_visible_text("pipeline")
    browser.find_element(By.ID, "halt-name").send_keys("orders_daily")
    browser.find_element(By.ID, "halt-reason").send_keys("runaway spend on run 42")
    browser.find_element(By.ID, "halt").click()
    wait_for(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr.halt[data-scope='pipeline:orders_daily']"))
    shot(browser, "kill-switch")
    for server in (first, second):
        denied = server.decide(query(f"h1-{server.http_port}")).json()
        assert (denied["decision"], denied["reasons"][0]["code"]) == ("deny", "halted")
        assert "by admin" in denied["reasons"][0]["message"] and "runaway spend" in denied["reasons"][0]["message"]
    browser.find_element(By.CSS_SELECTOR, "tr.halt button.resume").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "no-halts"))
    assert first.decide(query("h2")).json()["decision"] == "allow"

    # The CLI against the second replica; the first obeys through Redis.
    cli = [ARBITER, "halt", "agent:monitor", "--reason", "drill", "--server", second.url]
    out = subprocess.run(cli, env={"ARBITER_ADMIN_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"}, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert first.decide(query("h3")).json()["reasons"][0]["code"] == "halted"
    resume = subprocess.run([ARBITER, "resume", "agent:monitor", "--server", second.url],
                            env={"ARBITER_ADMIN_TOKEN": TOKEN}, capture_output=True, text=True)
    assert resume.returncode == 0, resume.stderr
    assert first.decide(query("h4")).json()["decision"] == "allow"
    kinds = [json.loads(line)["kind"] for line in second.audit_log.read_text().splitlines()]
    assert "halted" in kinds and "resumed" in kinds


def test_serve_with_no_flags_is_the_demo_with_its_console(browser):
    """`arbiter serve` alone: the orders_daily demo, sample data, a console key printed once."""
    proc = subprocess.Popen([ARBITER, "serve", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--cache-dir",
                             str(ROOT / "target" / "arbiter-tests" / "cache")], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("arbiter serving bundle orders_daily"), line
        url = "http://" + dict(f.split("=", 1) for f in line.split() if "=" in f)["http"]
        key = next(m.group(0) for m in map(re.compile(r"arb_[0-9a-f]{64}").search, iter(proc.stderr.readline, ""))
                   if m)
        server = type("Demo", (), {"url": url})
        login(browser, server, key)
        assert browser.find_elements(By.CSS_SELECTOR, "#pending tr.escalation"), "the sample drop-table waits"
        browser.get(f"{url}/ui/budgets")
        assert browser.find_elements(By.CSS_SELECTOR, "#breakers .state-open"), "the demo's failing tool"
        assert int(browser.find_element(By.CSS_SELECTOR, "tr.budget").get_attribute("data-percent")) > 0
    finally:
        proc.terminate()
        proc.wait(timeout=15)
