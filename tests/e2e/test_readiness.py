"""`arbiter readiness --server` scores what a running server observably
does, read from its admin API, which returns no secret."""

import json
import os
import subprocess

import httpx

from conftest import ARBITER, BUNDLE, MONITOR, ROOT, TOKEN


def test_admin_settings_need_the_admin_role_and_hold_no_secret(arbiter):
    assert httpx.get(f"{arbiter.url}/v1/admin/settings").status_code == 401
    assert httpx.get(f"{arbiter.url}/v1/admin/settings", headers=MONITOR).status_code == 403
    answer = httpx.get(f"{arbiter.url}/v1/admin/settings", headers=arbiter.admin())
    assert answer.status_code == 200, answer.text
    settings = answer.json()
    assert settings["bundle"] == ["orders_daily", settings["bundle"][1]]
    assert (settings["state"], settings["audit_log"], settings["clock"], settings["anonymous"]) == \
        ("journal", True, "server", False)
    assert settings["identity"]["approvers"] == 2 and settings["identity"]["admins"] == 1
    for secret in [TOKEN, "k-monitor", str(arbiter.workdir), "audit.jsonl"]:
        assert secret not in answer.text, f"{secret!r} leaked"


def test_readiness_observes_the_live_server(arbiter):
    def readiness(*extra, token=TOKEN):
        env = dict(os.environ, ARBITER_ADMIN_TOKEN=token)
        return subprocess.run([ARBITER, "readiness", str(BUNDLE), "--server", arbiter.url, *extra],
                              cwd=ROOT, capture_output=True, text=True, env=env, timeout=60)

    out = readiness("--format", "json")
    assert out.returncode == 0, out.stderr
    items = {i["item"]: i for i in json.loads(out.stdout)["items"]}
    assert items["observability baseline"]["basis"] == "observed"
    assert items["observability baseline"]["score"] == "Ready"
    # This server was started without an escalation webhook: observed, not claimed.
    assert items["escalation path"]["score"] == "Needs Work"
    assert "no escalation webhook: approvers are not told" in items["escalation path"]["evidence"]
    assert items["cost management"]["basis"] == "bundle"
    text = readiness()
    assert " 8. observability baseline     Ready (observed)" in text.stdout, text.stdout
    refused = readiness(token="wrong")
    assert refused.returncode != 0 and "401 Unauthorized unauthenticated" in refused.stderr, refused.stderr
