"""Signed bundles, hot reload and rollback on a running server, with a
client deciding throughout."""

import hashlib
import os
import re
import shutil
import subprocess
import threading

import httpx
import pytest

from conftest import ARBITER, BUNDLE, MONITOR, ROOT, TOKEN, start_arbiter, stop

LLM = {"id": "x", "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                                "environment": "prod", "run": "swap"},
       "action": {"kind": "llm_request", "model": "gpt-4o-2024-08-06", "prompt_tokens": 1, "max_output_tokens": 1}}


def cli(*args, check=True):
    out = subprocess.run([ARBITER, *args], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, ARBITER_ADMIN_TOKEN=TOKEN))
    if check:
        assert out.returncode == 0, out.stdout + out.stderr
    return out


def copy_bundle(dest, version, pinned):
    """The reference bundle under `dest`, as `version`, pinning `pinned`."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(BUNDLE.parent / "components", dest / "components", dirs_exist_ok=True)
    text, replaced = re.subn(r'(\[bundle\]\nname = "[^"]*"\nversion = )"[^"]*"', rf'\g<1>"{version}"', BUNDLE.read_text())
    assert replaced == 1, "the reference bundle's [bundle] version was not found"
    text = text.replace('pinned = ["claude-sonnet-4-5-20250929", "gpt-4o-2024-08-06"]', f"pinned = {pinned}")
    (dest / "bundle.toml").write_text(text)
    return dest / "bundle.toml"


@pytest.fixture
def keys(tmp_path):
    cli("keygen", "--out", str(tmp_path / "release.key"))
    cli("keygen", "--out", str(tmp_path / "other.key"))
    return tmp_path / "release.key", tmp_path / "release.key.pub", tmp_path / "other.key"


def test_signatures_are_checked_by_verify_and_by_the_server(tmp_path, keys):
    secret, public, other = keys
    manifest = copy_bundle(tmp_path / "b1", "1.0.0", '["claude-sonnet-4-5-20250929", "gpt-4o-2024-08-06"]')
    unsigned = cli("verify", "--key", str(public), str(manifest), check=False)
    assert unsigned.returncode == 1 and "is not signed" in unsigned.stdout
    cli("sign", "--key", str(secret), str(manifest))
    assert "OK:" in cli("verify", "--key", str(public), str(manifest)).stdout

    tampered = [
        ("manifest", lambda: manifest.write_text(manifest.read_text().replace("limit = 60000", "limit = 60001"))),
        ("component", lambda: (manifest.parent / "components/model-pin.wasm").write_bytes(
            (manifest.parent / "components/model-pin.wasm").read_bytes() + b"\0")),
    ]
    for what, tamper in tampered:
        good = copy_bundle(tmp_path / f"t-{what}", "1.0.0", '["claude-sonnet-4-5-20250929"]')
        cli("sign", "--key", str(secret), str(good))
        manifest = good
        tamper()
        out = cli("verify", "--key", str(public), str(good), check=False)
        assert out.returncode == 1 and "INVALID" in out.stdout, (what, out.stdout)

    # A signed manifest whose pin matches a file that is no policy component:
    # the signature and the pin hold, the component does not.
    pinned_junk = copy_bundle(tmp_path / "junk", "1.0.0", '["claude-sonnet-4-5-20250929"]')
    component = pinned_junk.parent / "components/model-pin.wasm"
    old_pin, junk = hashlib.sha256(component.read_bytes()).hexdigest(), b"\0asm not a component"
    component.write_bytes(junk)
    pinned_junk.write_text(pinned_junk.read_text().replace(old_pin, hashlib.sha256(junk).hexdigest()))
    cli("sign", "--key", str(secret), str(pinned_junk))
    out = cli("verify", "--key", str(public), str(pinned_junk), check=False)
    assert out.returncode == 1 and "model-pin" in out.stdout and "is not a policy component" in out.stdout, out.stdout

    foreign = copy_bundle(tmp_path / "foreign", "1.0.0", '["claude-sonnet-4-5-20250929"]')
    cli("sign", "--key", str(other), str(foreign))
    out = cli("verify", "--key", str(public), str(foreign), check=False)
    assert out.returncode == 1 and "not trusted" in out.stdout

    # The server refuses to start on an unsigned or foreign bundle...
    for bundle, reason in [(copy_bundle(tmp_path / "u", "1.0.0", '["x-2024-01-01"]'), "is not signed"),
                           (foreign, "not trusted")]:
        proc = subprocess.run([ARBITER, "serve", "--bundle", str(bundle), "--trusted-key", str(public),
                               "--http", "127.0.0.1:0", "--no-grpc"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and reason in proc.stderr, proc.stderr


def test_deploy_and_rollback_under_load(tmp_path, keys):
    secret, public, _ = keys
    v1 = copy_bundle(tmp_path / "v1", "1.0.0", '["claude-sonnet-4-5-20250929", "gpt-4o-2024-08-06"]')
    v2 = copy_bundle(tmp_path / "v2", "2.0.0", '["claude-sonnet-4-5-20250929"]')
    bad = copy_bundle(tmp_path / "bad", "3.0.0", '["gpt-4o-latest"]')  # model-pin refuses these settings
    unsigned = copy_bundle(tmp_path / "unsigned", "4.0.0", '["claude-sonnet-4-5-20250929"]')
    for manifest in (v1, v2, bad):
        cli("sign", "--key", str(secret), str(manifest))
    # Every bundle lives under tmp_path: the server loads from there only.
    server = start_arbiter(tmp_path / "server", "--trusted-key", str(public), "--bundle-dir", str(tmp_path), bundle=v1)
    deploy = ("deploy", "--server", server.url, "--bundle-dir", str(tmp_path))
    errors, verdicts, done = [], [], threading.Event()

    def client():
        with httpx.Client(base_url=server.url, timeout=5, headers=MONITOR) as c:
            i = 0
            while not done.is_set():
                i += 1
                try:
                    r = c.post("/v1/decide", json={**LLM, "id": f"c{i}"})
                    r.raise_for_status()
                    d = r.json()
                    verdicts.append((d["bundle"]["version"], d["decision"]))
                except Exception as e:  # noqa: BLE001 - any failure counts
                    errors.append(repr(e))

    thread = threading.Thread(target=client)
    thread.start()
    try:
        out = cli(*deploy, str(v2))
        assert "active: orders_daily 2.0.0" in out.stdout
        for rejected_bundle, reason in [(bad, "floating alias"), (unsigned, "is not signed"),
                                        # Signed, but not newer: rollback is the way back.
                                        (v1, "version_not_newer"), (v2, "version_not_newer")]:
            rejected = cli(*deploy, str(rejected_bundle), check=False)
            assert rejected.returncode != 0 and reason in rejected.stderr, rejected.stderr
        assert "is not newer than the active 2.0.0" in cli(*deploy, str(v1), check=False).stderr
        listed = server.client.get("/v1/admin/bundles", headers=server.admin()).json()
        assert listed["active"]["version"] == "2.0.0", "a rejected bundle changes nothing"
        assert [p["version"] for p in listed["previous"]] == ["1.0.0"]
        assert "active: orders_daily 1.0.0" in cli("rollback", "--server", server.url).stdout
        assert "active: orders_daily 2.0.0" in cli("rollback", "--server", server.url, "--to", "2.0.0").stdout
        assert server.client.post("/v1/admin/rollback", headers={"authorization": ""}).status_code == 401
        assert server.client.post("/v1/admin/rollback").status_code == 403, "an agent key cannot roll back"
    finally:
        done.set()
        thread.join()
        assert stop(server.proc) == 0
    assert not errors, errors[:5]
    expected = {"1.0.0": "allow", "2.0.0": "deny"}
    assert all(expected[v] == d for v, d in verdicts), "every decision matches the bundle that made it"
    assert {v for v, _ in verdicts} == {"1.0.0", "2.0.0"}
    audit = server.audit_log.read_text()
    assert '"kind":"bundle_activated"' in audit and '"kind":"bundle_rolled_back"' in audit


def test_deploy_as_the_readme_ships_a_policy_change(tmp_path, keys):
    """The bundle is edited, re-signed and deployed in place: `arbiter deploy`
    sends the manifest's name, which the server finds in the directory of
    its --bundle."""
    secret, public, _ = keys
    manifest = copy_bundle(tmp_path / "orders", "1.0.0", '["claude-sonnet-4-5-20250929", "gpt-4o-2024-08-06"]')
    cli("sign", "--key", str(secret), str(manifest))
    elsewhere = copy_bundle(tmp_path / "elsewhere", "9.0.0", '["claude-sonnet-4-5-20250929"]')
    cli("sign", "--key", str(secret), str(elsewhere))
    server = start_arbiter(tmp_path / "server", "--trusted-key", str(public), bundle=manifest)
    try:
        copy_bundle(tmp_path / "orders", "1.1.0", '["claude-sonnet-4-5-20250929"]')
        cli("sign", "--key", str(secret), str(manifest))
        out = cli("deploy", "--server", server.url, str(manifest))
        assert "active: orders_daily 1.1.0" in out.stdout, out.stdout
        assert server.decide(LLM).json()["decision"] == "deny", "the new pin list serves"
        # A manifest outside the bundle directory cannot be named, however it is spelled.
        for manifest_path in [str(elsewhere), "../elsewhere/bundle.toml"]:
            r = server.client.post("/v1/admin/bundles", headers=server.admin(), json={"manifest": manifest_path})
            assert r.status_code == 403 and r.json()["error"]["code"] == "manifest_outside_bundle_dir", r.text
        out = cli("deploy", "--server", server.url, "--bundle-dir", str(tmp_path / "orders"), str(elsewhere),
                  check=False)
        assert out.returncode != 0 and "is not inside --bundle-dir" in out.stderr, out.stderr
        assert server.decide(LLM).json()["bundle"]["version"] == "1.1.0"
    finally:
        assert stop(server.proc) == 0
