//! Helpers shared by the end-to-end tests: paths, building the reference
//! and hostile policies once, and loading bundles.

mod redis_server;

pub use redis_server::RedisServer;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use arbiter_engine::{EngineConfig, PolicyEngine};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// The reference policies, as the orders_daily bundle lists them.
pub fn reference_policies() -> Vec<String> {
    let manifest = root().join("examples/orders_daily/bundle.toml");
    let manifest = arbiter_engine::Manifest::from_file(&manifest).unwrap_or_else(|e| panic!("{e}"));
    manifest.policies.into_iter().map(|p| p.name).collect()
}

/// Builds every policy of the orders_daily bundle (from `policies/<name>`)
/// into its component directory, once per test binary, and returns the
/// manifest path.
pub fn orders_daily_bundle() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let bundle_dir = root().join("examples/orders_daily");
            for policy in reference_policies() {
                build(&root().join("policies").join(policy), &bundle_dir.join("components"));
            }
            bundle_dir.join("bundle.toml")
        })
        .clone()
}

/// Builds the hostile test policy and returns its component path.
pub fn hostile_component() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build(&root().join("tests/hostile-guest"), &scratch_dir())).clone()
}

fn build(crate_dir: &Path, out: &Path) -> PathBuf {
    match arbiter_build::build_policy(crate_dir, out) {
        Ok(built) => built.path,
        Err(e) => panic!("cannot build {}: {e}", crate_dir.display()),
    }
}

/// A directory for test outputs under the target directory.
pub fn scratch_dir() -> PathBuf {
    let dir = root().join("target/arbiter-tests");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// An engine with default limits, caching compiled components under the
/// target directory.
pub fn engine() -> PolicyEngine {
    let config = EngineConfig { cache_dir: Some(scratch_dir().join("cache")), ..EngineConfig::default() };
    PolicyEngine::new(config).unwrap_or_else(|e| panic!("engine: {e}"))
}

/// The shared contract's world, for wrapping hand-written core modules.
pub fn contract() -> (wit_parser::Resolve, wit_parser::WorldId) {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve.push_dir(root().join("wit")).unwrap_or_else(|e| panic!("wit: {e:#}"));
    let world = resolve.select_world(&[package], Some("policy")).unwrap_or_else(|e| panic!("world: {e:#}"));
    (resolve, world)
}

/// Wraps a core module written in WAT into a policy component of the contract.
pub fn component_from_core_wat(wat_text: &str) -> Vec<u8> {
    let mut module = wat::parse_str(wat_text).unwrap_or_else(|e| panic!("wat: {e}"));
    let (resolve, world) = contract();
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8, false)
        .unwrap_or_else(|e| panic!("embed: {e:#}"));
    arbiter_build::componentize(&module).unwrap_or_else(|e| panic!("componentize: {e}"))
}

/// A bundle of one component, named and versioned as it says it is.
pub fn single_policy_bundle(
    engine: &PolicyEngine,
    component: &Path,
    settings: serde_json::Value,
    capabilities: Vec<arbiter_engine::Capability>,
    fail: arbiter_engine::FailMode,
) -> Result<arbiter_engine::Bundle, arbiter_engine::BundleError> {
    let bytes = std::fs::read(component).unwrap_or_else(|e| panic!("{}: {e}", component.display()));
    let settings: toml::Table = serde_json::from_value(settings).unwrap_or_else(|e| panic!("settings: {e}"));
    let manifest = arbiter_engine::Manifest::for_component(component, &bytes, settings, capabilities, fail);
    arbiter_engine::Bundle::from_manifest(engine, manifest, Path::new("/"), component)
}

/// A tool-call request of the orders_daily monitor.
pub fn tool_call(id: &str, tool: &str, arguments: serde_json::Value) -> arbiter_types::Request {
    let body = serde_json::json!({
        "id": id,
        "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                      "environment": "prod", "run": "run-1"},
        "action": {"kind": "tool_call", "tool": tool, "arguments": arguments},
        "timestamp": "2026-11-26T02:00:00Z"
    });
    arbiter_types::Request::from_json_value(&body).unwrap_or_else(|e| panic!("request: {e}"))
}

/// The shared scenario folder (`../shared/scenarios` beside the checkout,
/// or `ARBITER_SCENARIOS`).
pub fn scenarios_dir() -> PathBuf {
    let dir =
        std::env::var_os("ARBITER_SCENARIOS").map(PathBuf::from).unwrap_or_else(|| root().join("../shared/scenarios"));
    assert!(dir.is_dir(), "scenario traces not found at {} (set ARBITER_SCENARIOS)", dir.display());
    dir
}

/// The lines of every orders_daily trace, by file name.
pub fn orders_daily_traces() -> Vec<(String, Vec<serde_json::Value>)> {
    let dir = scenarios_dir().join("orders_daily");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no traces in {}", dir.display());
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let events = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
                .collect();
            (path.file_name().unwrap_or_default().to_string_lossy().into_owned(), events)
        })
        .collect()
}

/// Evaluates a request against a bundle with fresh, empty state.
pub fn decide(
    bundle: &arbiter_engine::Bundle,
    request: &arbiter_types::Request,
    now_ms: i64,
) -> arbiter_types::Decision {
    let state: std::sync::Arc<dyn arbiter_state::StateStore> =
        std::sync::Arc::new(arbiter_state::InMemoryStore::in_memory(arbiter_state::StoreConfig::default()));
    bundle.evaluate(request, now_ms, &state)
}
