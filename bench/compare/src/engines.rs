//! The deciders compared: each turns one request (JSON bytes, parsed by the
//! engine itself) into allow, deny or escalate.

use std::path::{Path, PathBuf};

use serde_json::Value;

mod cedar;
pub mod native;
mod rego;
mod served;
pub mod wasm;

use native::Rules;
use served::{Filter, State};

/// A combined verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Allow,
    Deny,
    Escalate,
}

/// One decider's state for one thread.
pub trait Decide: Send {
    fn decide(&mut self, request_json: &[u8]) -> anyhow::Result<Outcome>;
}

type Factory = Box<dyn Fn() -> anyhow::Result<Box<dyn Decide>> + Sync>;

/// A way to decide, prepared once; [`Engine::instance`] makes a decider per
/// thread from it.
pub struct Engine {
    /// Whether the cases' `cedar` expectations apply instead of `expect`.
    pub cedar_subset: bool,
    /// Whether the cases' `gateway` expectations apply instead of `expect`
    /// (through Envoy, tool calls arrive as MCP calls, which declare no
    /// facts; LLM cases are left out).
    pub envoy_subset: bool,
    /// The process whose peak memory the row reports, when the engine runs
    /// in a server of its own (else the measuring process).
    pub server_pid: Option<u32>,
    make: Factory,
}

impl Engine {
    pub fn instance(&self) -> anyhow::Result<Box<dyn Decide>> {
        (self.make)()
    }
}

/// A bundle's policy settings by policy name, so that every engine decides
/// with the settings the sandboxed rows load.
pub struct Settings {
    pub by_policy: serde_json::Map<String, Value>,
}

impl Settings {
    pub fn read(bundle: &Path) -> anyhow::Result<Settings> {
        let text = std::fs::read_to_string(bundle)?;
        let manifest: toml::Value = toml::from_str(&text)?;
        let mut by_policy = serde_json::Map::new();
        for policy in manifest.get("policies").and_then(toml::Value::as_array).into_iter().flatten() {
            let name = policy.get("name").and_then(toml::Value::as_str).unwrap_or_default().to_owned();
            let settings = policy.get("settings").cloned().unwrap_or(toml::Value::Table(Default::default()));
            by_policy.insert(name, serde_json::to_value(settings)?);
        }
        Ok(Settings { by_policy })
    }

    pub fn of(&self, policy: &str) -> anyhow::Result<&Value> {
        self.by_policy.get(policy).ok_or_else(|| anyhow::anyhow!("the bundle has no policy `{policy}`"))
    }
}

/// The engines in table order, with what each decides and how.
pub const ENGINES: [(&str, &str); 13] = [
    ("native", "5 rules"),
    ("native-full-bundle", "all 11 orders_daily policies, natively, empty state"),
    ("arbiter", "5 rules"),
    ("arbiter-no-fuel", "5 rules, deadline only (no fuel)"),
    ("arbiter-full-bundle", "all 11 orders_daily policies (8 apply to tool calls)"),
    ("arbiter-http", "5 rules, over HTTP (/v1/decide)"),
    ("arbiter-http-journal", "5 rules, over HTTP, state in the embedded journal (fsync'd)"),
    ("arbiter-http-redis", "5 rules, over HTTP, state in Redis (AOF fsync'd on every write)"),
    ("arbiter-envoy", "5 rules, Envoy ext_authz (gRPC), MCP tools/call"),
    ("arbiter-envoy-ext-proc", "5 rules, Envoy ext_proc (gRPC), MCP tools/call and its result"),
    ("regorus", "5 rules"),
    ("regorus-vm", "5 rules"),
    ("cedar", "2 of 5 rules"),
];

/// The repository checkout this harness belongs to.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The reference bundle, every policy of it, for the full-bundle rows.
pub fn full_bundle() -> PathBuf {
    repo().join("examples/orders_daily/bundle.toml")
}

/// Envoy's configuration for the gateway rows.
fn envoy_config() -> PathBuf {
    repo().join("scripts/bench/envoy-bench.yaml")
}

/// Where the harness keeps compiled components.
fn work_dir() -> PathBuf {
    repo().join("target/arbiter-compare")
}

/// Prepares one engine by its table name (only that one: a child process
/// measuring its peak memory holds nothing else).
pub fn build(name: &str, bundle: &Path, rules_dir: &Path) -> anyhow::Result<Engine> {
    let settings = Settings::read(bundle)?;
    match name {
        "native" => native::engine(&settings, Rules::Five),
        "native-full-bundle" => native::engine(&Settings::read(&full_bundle())?, Rules::FullBundle),
        "arbiter" => wasm::engine(bundle, true),
        "arbiter-no-fuel" => wasm::engine(bundle, false),
        "arbiter-full-bundle" => wasm::engine(&full_bundle(), true),
        "arbiter-http" => served::http(bundle, State::Memory),
        "arbiter-http-journal" => served::http(bundle, State::Journal),
        "arbiter-http-redis" => served::http(bundle, State::Redis),
        "arbiter-envoy" => served::envoy(bundle, &envoy_config(), Filter::ExtAuthz),
        "arbiter-envoy-ext-proc" => served::envoy(bundle, &envoy_config(), Filter::ExtProc),
        "regorus" => rego::interpreter(&settings, rules_dir),
        "regorus-vm" => rego::vm(&settings, rules_dir),
        "cedar" => cedar::engine(&settings, rules_dir),
        other => anyhow::bail!("no engine `{other}`"),
    }
}
