//! A running server (in process, over HTTP) keeps its admin API to the
//! bundle directory, tells a remote caller nothing of a file's contents,
//! only moves the bundle version forward, and refuses work beyond its
//! in-flight limit instead of queueing it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arbiter_engine::{Bundle, Capability, Decider, EngineConfig, FailMode, Manifest, PolicyEngine, SandboxLimits};
use arbiter_server::{Credentials, ReloadConfig, Server, ServerConfig};
use arbiter_state::{InMemoryStore, StateStore, StoreConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

const TOKEN: &str = "test-admin-token";
const SECRET: &str = "hunter2-AKIA0000000SECRET";

/// Anonymous decisions (these tests are about bounds, not identity) and an
/// admin token.
fn local_credentials() -> Arc<Credentials> {
    let mut credentials = Credentials::default();
    credentials.anonymous = true;
    credentials.add_admin_token(TOKEN).unwrap();
    Arc::new(credentials)
}

struct Running {
    url: String,
    client: Client<HttpConnector, Full<Bytes>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), arbiter_server::ServerError>>,
}

impl Running {
    async fn start(config: ServerConfig, bundle: Bundle, reload: Option<ReloadConfig>) -> Running {
        let state: Arc<dyn StateStore> = Arc::new(InMemoryStore::in_memory(StoreConfig::default()));
        let decider = Decider::new(Arc::new(bundle), state);
        let server = Server::bind(config, decider, reload).await.unwrap();
        let url = format!("http://{}", server.http_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Running { url, client: Client::builder(TokioExecutor::new()).build_http(), stop: Some(stop), task }
    }

    /// POSTs `body` (JSON) and returns the status and the body (JSON, or
    /// the text as a JSON string).
    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &Value) -> (u16, Value) {
        let mut request =
            hyper::Request::post(format!("{}{path}", self.url)).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request.body(Full::new(Bytes::from(body.to_string()))).unwrap()).await
    }

    async fn get(&self, path: &str) -> String {
        let request = hyper::Request::get(format!("{}{path}", self.url)).body(Full::default()).unwrap();
        let (_, body) = self.send(request).await;
        body.as_str().unwrap_or_default().to_owned()
    }

    async fn send(&self, request: hyper::Request<Full<Bytes>>) -> (u16, Value) {
        let response = self.client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn deploy(&self, manifest: &Value) -> (u16, Value) {
        let auth = format!("Bearer {TOKEN}");
        self.post("/v1/admin/bundles", &[("authorization", &auth)], &json!({"manifest": manifest})).await
    }

    async fn stop(mut self) {
        let _ = self.stop.take().map(|stop| stop.send(()));
        self.task.await.unwrap().unwrap();
    }
}

fn engine(limits: SandboxLimits) -> PolicyEngine {
    let cache_dir = Some(arbiter_tests::scratch_dir().join("cache"));
    PolicyEngine::new(EngineConfig { limits, cache_dir, ..EngineConfig::default() }).unwrap()
}

fn tool_call(id: &str, tool: &str) -> Value {
    json!({
        "id": id,
        "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                      "environment": "prod", "run": "run-1"},
        "action": {"kind": "tool_call", "tool": tool, "arguments": {"sql": "select 1"}},
    })
}

/// The orders_daily bundle copied into `dir` as `name`, at `version`.
fn write_bundle(dir: &Path, name: &str, version: &str) -> PathBuf {
    let reference = arbiter_tests::orders_daily_bundle();
    let components = dir.join("components");
    if !components.exists() {
        std::fs::create_dir_all(&components).unwrap();
        for entry in std::fs::read_dir(reference.parent().unwrap().join("components")).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, components.join(path.file_name().unwrap())).unwrap();
        }
    }
    let text = std::fs::read_to_string(&reference).unwrap();
    let text = arbiter_tests::with_bundle_version(&text, version);
    let manifest = dir.join(name);
    std::fs::write(&manifest, text).unwrap();
    manifest
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_loads_only_newer_manifests_of_the_bundle_dir_and_echoes_no_file() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("bundles");
    std::fs::create_dir_all(&dir).unwrap();
    let initial = write_bundle(&dir, "bundle.toml", "1.0.0");
    write_bundle(&dir, "older.toml", "0.9.0");
    write_bundle(&dir, "newer.toml", "1.1.0");
    // Secret-looking files: one outside the bundle directory (and a link to
    // it inside), one inside that is not TOML.
    let secrets = root.path().join("secrets.toml");
    std::fs::write(&secrets, format!("password = \"{SECRET}\"\n")).unwrap();
    std::os::unix::fs::symlink(&secrets, dir.join("linked.toml")).unwrap();
    std::fs::write(dir.join("leak.toml"), format!("# cloud credentials\nAWS_SECRET_ACCESS_KEY={SECRET}\n")).unwrap();
    std::fs::write(dir.join("notes.txt"), "").unwrap();

    let engine = engine(SandboxLimits::default());
    let bundle = Bundle::load(&engine, &initial).unwrap();
    let reload = ReloadConfig {
        engine,
        trusted_keys: vec![],
        initial_manifest: initial.clone(),
        bundle_dir: dir.clone(),
        keep: 5,
    };
    let config = ServerConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        grpc: None,
        credentials: local_credentials(),
        ..ServerConfig::default()
    };
    let server = Running::start(config, bundle, Some(reload)).await;

    let refused = [
        (json!(secrets), 403, "manifest_outside_bundle_dir"),
        (json!("../secrets.toml"), 403, "manifest_outside_bundle_dir"),
        (json!("linked.toml"), 403, "manifest_outside_bundle_dir"),
        (json!("notes.txt"), 422, "manifest_not_a_toml_file"),
        (json!("missing.toml"), 422, "manifest_not_found"),
        (json!("leak.toml"), 422, "bundle_rejected"),
        (json!("bundle.toml"), 409, "version_not_newer"),
        (json!("older.toml"), 409, "version_not_newer"),
    ];
    for (manifest, status, expected) in refused {
        let (got, body) = server.deploy(&manifest).await;
        assert_eq!((got, code(&body)), (status, expected), "{manifest}: {body}");
        assert!(!body.to_string().contains("hunter2"), "{manifest}: the secret leaks: {body}");
    }
    let (_, leak) = server.deploy(&json!("leak.toml")).await;
    let message = leak["error"]["message"].as_str().unwrap();
    assert!(message.contains("not valid TOML") && message.contains("line 2"), "{message}");
    let (_, older) = server.deploy(&json!("older.toml")).await;
    let message = older["error"]["message"].as_str().unwrap();
    assert!(message.contains("0.9.0") && message.contains("1.0.0"), "names both versions: {message}");

    // Nothing refused changed the active bundle.
    let (_, decided) = server.post("/v1/decide", &[], &tool_call("d-1", "warehouse.query")).await;
    assert_eq!(decided["bundle"]["version"], "1.0.0");

    let (status, swapped) = server.deploy(&json!("newer.toml")).await;
    assert_eq!(status, 200, "{swapped}");
    assert_eq!(swapped["active"]["version"], "1.1.0");
    let (_, decided) = server.post("/v1/decide", &[], &tool_call("d-2", "warehouse.query")).await;
    assert_eq!(decided["bundle"]["version"], "1.1.0");
    // Rollback stays the way back.
    let auth = format!("Bearer {TOKEN}");
    let (status, rolled) = server.post("/v1/admin/rollback", &[("authorization", &auth)], &json!({})).await;
    assert_eq!((status, &rolled["active"]["version"]), (200, &json!("1.0.0")), "{rolled}");
    server.stop().await;
}

/// A bundle whose one policy spins until its deadline on `slow.*` tools and
/// does not apply to anything else.
fn slow_bundle(engine: &PolicyEngine) -> Bundle {
    let component = arbiter_tests::hostile_component();
    let bytes = std::fs::read(&component).unwrap();
    let settings: toml::Table = toml::from_str("behaviour = \"loop_forever\"").unwrap();
    let capabilities = [Capability::Log, Capability::Clock, Capability::Budgets, Capability::History].to_vec();
    let mut manifest = Manifest::for_component(&component, &bytes, settings, capabilities, FailMode::Closed);
    manifest.policies[0].scope.tools = Some(vec!["slow.*".to_owned()]);
    Bundle::from_manifest(engine, manifest, Path::new("/"), &component).unwrap()
}

#[test]
fn beyond_max_in_flight_requests_are_refused_fast_and_served_again_after() {
    // The slow evaluation holds the only slot this long (deadlines count
    // clock ticks, which a loaded machine stretches): a wide margin for the
    // few requests refused meanwhile.
    let limits = SandboxLimits { fuel: None, deadline: Duration::from_secs(5), ..SandboxLimits::default() };
    // Outlives the runtime, whose drop waits for running evaluations: its
    // deadline clock must go on until they end, even if an assertion fails.
    let engine = engine(limits);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(refused_then_served(&engine));
}

async fn refused_then_served(engine: &PolicyEngine) {
    let config = ServerConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        grpc: None,
        credentials: local_credentials(),
        max_in_flight: 1,
        in_flight_wait: Duration::from_millis(50),
        // Not the limit under test.
        request_timeout: Duration::from_secs(300),
        ..ServerConfig::default()
    };
    let server = Arc::new(Running::start(config, slow_bundle(engine), None).await);

    let slow = tokio::spawn({
        let server = Arc::clone(&server);
        async move { server.post("/v1/decide", &[], &tool_call("slow-1", "slow.spin")).await }
    });
    while !server.get("/metrics").await.contains("arbiter_evaluations_in_flight 1") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let usage = json!({"id": "slow-1", "prompt_tokens": 1, "output_tokens": 1});
    let (status, body) = server.post("/v1/usage", &[], &usage).await;
    assert_eq!((status, code(&body)), (503, "overloaded"), "{body}");
    let gateway = [
        ("x-arbiter-pipeline", "orders_daily"),
        ("x-arbiter-agent", "monitor"),
        ("x-arbiter-team", "data-platform"),
        ("x-arbiter-environment", "prod"),
        ("x-arbiter-run", "run-1"),
    ];
    let llm = json!({"model": "gpt-4o-2024-08-06", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = server.post("/ext_authz/v1/chat/completions", &gateway, &llm).await;
    assert_eq!((status, code(&body)), (403, "overloaded"), "ext_authz answers a deny: {body}");
    // The API can say "retry later": 503.
    let (status, body) = server.post("/v1/decide", &[], &tool_call("fast-1", "fast.noop")).await;
    assert_eq!((status, code(&body)), (503, "overloaded"), "{body}");
    let metrics = server.get("/metrics").await;
    for source in ["report", "ext_authz", "api"] {
        assert!(metrics.contains(&format!("arbiter_overloaded_total{{source=\"{source}\"}} 1")), "{metrics}");
    }

    let (status, body) = slow.await.unwrap();
    assert_eq!((status, &body["reasons"][0]["code"]), (200, &json!("policy_fault")), "{body}");
    // The slot is free again: requests are served.
    let (status, body) = server.post("/v1/usage", &[], &usage).await;
    assert_eq!((status, code(&body)), (404, "no_such_request"), "decided, not refused: {body}");
    let (status, body) = server.post("/v1/decide", &[], &tool_call("fast-2", "fast.noop")).await;
    assert_eq!((status, &body["decision"]), (200, &json!("allow")), "{body}");
    let (status, _) = server.post("/ext_authz/v1/chat/completions", &gateway, &llm).await;
    assert_eq!(status, 200);
    Arc::into_inner(server).unwrap().stop().await;
}
