"""examples/ci/policy-gate.sh, the pull-request gate, passes an unchanged
bundle and fails a change whose version bump is too small."""

import os
import subprocess

from conftest import ARBITER, BUNDLE, ROOT, SCENARIOS

GATE = ROOT / "examples" / "ci" / "policy-gate.sh"


def gate(bundle, base):
    traces = sorted(str(p) for p in SCENARIOS.glob("*.jsonl"))
    return subprocess.run([str(GATE), str(bundle), str(base), str(BUNDLE.parent / "cases.json"), *traces],
                          cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, ARBITER=ARBITER), timeout=600)


def test_gate_passes_an_unchanged_bundle():
    out = gate(BUNDLE, BUNDLE)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "0 findings" in out.stdout and "0 differ" in out.stdout


def test_gate_fails_a_stricter_bundle_without_a_version_bump(tmp_path):
    changed = BUNDLE.parent / "pr-bundle.toml"
    try:
        changed.write_text(BUNDLE.read_text().replace("limit = 60000", "limit = 50000"))
        out = gate(changed, BUNDLE)
        assert out.returncode != 0
        assert "need at least MINOR" in out.stdout, out.stdout[-2000:]
    finally:
        changed.unlink(missing_ok=True)
