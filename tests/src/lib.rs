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

/// The `[bundle]` version in a manifest's text.
pub fn bundle_version(manifest: &str) -> &str {
    let (start, end) = bundle_version_span(manifest);
    &manifest[start..end]
}

/// A manifest's text with its `[bundle]` version replaced, comments kept, so
/// tests derive bundles from the reference whatever version it is at.
pub fn with_bundle_version(manifest: &str, version: &str) -> String {
    let (start, end) = bundle_version_span(manifest);
    format!("{}{version}{}", &manifest[..start], &manifest[end..])
}

/// The version after `version` with a MINOR bump (`0.2.0` -> `0.3.0`).
pub fn next_minor(version: &str) -> String {
    let parts: Vec<u64> = version.split('.').map(|p| p.parse().unwrap_or_else(|e| panic!("{version}: {e}"))).collect();
    let [major, minor, _] = parts[..] else { panic!("{version} is not MAJOR.MINOR.PATCH") };
    format!("{major}.{}.0", minor + 1)
}

/// Where the `[bundle]` table's version string lies (inside its quotes).
fn bundle_version_span(manifest: &str) -> (usize, usize) {
    const KEY: &str = "\nversion = \"";
    let table = manifest.find("[bundle]").unwrap_or_else(|| panic!("no [bundle] table"));
    let key = manifest[table..].find(KEY).unwrap_or_else(|| panic!("no [bundle] version"));
    let start = table + key + KEY.len();
    let end = start + manifest[start..].find('"').unwrap_or_else(|| panic!("unterminated [bundle] version"));
    (start, end)
}

/// Builds one reference policy (`policies/<name>`) into the scratch
/// directory, once per test binary, and returns its component path.
pub fn reference_component(name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(String, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, path)) = built.iter().find(|(n, _)| n == name) {
        return path.clone();
    }
    let path = build(&root().join("policies").join(name), &scratch_dir().join("reference"));
    built.push((name.to_owned(), path.clone()));
    path
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

/// A copy of a policy component whose embedded identity says `new`
/// instead of `old`: many distinct policies from one build. The names
/// must be of one length, since the bytes are swapped in place (no section
/// changes size); every copy of the identity is swapped (the SDK's static
/// is in the data segment too).
pub fn renamed_component(bytes: &[u8], old: &str, new: &str) -> Vec<u8> {
    assert_eq!(old.len(), new.len(), "`{new}` must be as long as `{old}`");
    let (identity, renamed_identity) = (format!("{{\"name\":\"{old}\","), format!("{{\"name\":\"{new}\","));
    let mut renamed = bytes.to_vec();
    let mut swapped = 0;
    let mut at = 0;
    while let Some(found) = renamed[at..].windows(identity.len()).position(|w| w == identity.as_bytes()) {
        let start = at + found;
        renamed[start..start + identity.len()].copy_from_slice(renamed_identity.as_bytes());
        swapped += 1;
        at = start + identity.len();
    }
    assert!(swapped > 0, "the component embeds no identity {identity}");
    renamed
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
    monitor_request(id, serde_json::json!({"kind": "tool_call", "tool": tool, "arguments": arguments}))
}

/// An LLM request of the orders_daily monitor, for a pinned Claude model.
pub fn llm_request(id: &str, prompt_tokens: u64, max_output_tokens: u64) -> arbiter_types::Request {
    let action = serde_json::json!({"kind": "llm_request", "model": "claude-sonnet-4-5-20250929",
                                    "prompt_tokens": prompt_tokens, "max_output_tokens": max_output_tokens});
    monitor_request(id, action)
}

fn monitor_request(id: &str, action: serde_json::Value) -> arbiter_types::Request {
    let body = serde_json::json!({
        "id": id,
        "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                      "environment": "prod", "run": "run-1"},
        "action": action,
        "timestamp": "2026-11-26T02:00:00Z"
    });
    arbiter_types::Request::from_json_value(&body).unwrap_or_else(|e| panic!("request: {e}"))
}

/// A commit of one charge alone (run `p/r`, agent `a`, team `t`; no
/// breaker, tool call or LLM usage), to load a store directly.
pub fn charge_commit(request_id: String, now_ms: i64, charge: arbiter_types::Charge) -> arbiter_state::Commit {
    arbiter_state::Commit {
        request_id,
        now_ms,
        run: arbiter_state::RunKey { pipeline: "p".into(), run: "r".into() },
        agent: "a".into(),
        team: "t".into(),
        charges: vec![charge],
        breakers: Vec::new(),
        tool_call: None,
        llm: None,
        approval: None,
    }
}

/// The reference scenario's traces (`ARBITER_TRACES` names another folder).
pub fn orders_daily_traces_dir() -> PathBuf {
    std::env::var_os("ARBITER_TRACES").map(PathBuf::from).unwrap_or_else(|| root().join("examples/orders_daily/traces"))
}

/// The lines of every orders_daily trace, by file name.
pub fn orders_daily_traces() -> Vec<(String, Vec<serde_json::Value>)> {
    let dir = orders_daily_traces_dir();
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

/// A state store that runs `before_read` before every read a capability
/// makes (`used`, `breaker_state`, `tool_calls`, `count_tool_calls`,
/// `tool_views`), e.g. to
/// make host calls slow or hold evaluations in flight; everything else goes
/// straight to an in-memory store.
pub fn hooked_store(before_read: impl Fn() + Send + Sync + 'static) -> std::sync::Arc<dyn arbiter_state::StateStore> {
    let inner = arbiter_state::InMemoryStore::in_memory(arbiter_state::StoreConfig::default());
    std::sync::Arc::new(HookedStore { inner, before_read: Box::new(before_read) })
}

struct HookedStore {
    inner: arbiter_state::InMemoryStore,
    before_read: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for HookedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookedStore").field("inner", &self.inner).finish_non_exhaustive()
    }
}

mod hooked {
    use arbiter_state::{
        BreakerState, Commit, CommitRefused, Escalation, EscalationRefused, Gauges, Halt, HaltScope, ListedToolInput,
        ListingRefused, OutcomeRejected, OutcomeReport, PastToolCall, Resolution, RunKey, SpendEntry, StateError,
        StateStore, ToolView, UsageRejected, UsageReport,
    };
    use arbiter_types::{BreakerConfig, ChargeUnit, Window};

    use super::HookedStore;

    impl StateStore for HookedStore {
        fn used(&self, scope: &str, window: Window, unit: ChargeUnit, now_ms: i64) -> Result<u64, StateError> {
            (self.before_read)();
            self.inner.used(scope, window, unit, now_ms)
        }

        fn breaker_state(&self, key: &str, config: &BreakerConfig, now_ms: i64) -> Result<BreakerState, StateError> {
            (self.before_read)();
            self.inner.breaker_state(key, config, now_ms)
        }

        fn tool_calls(&self, run: &RunKey, tool: Option<&str>, since_ms: i64) -> Result<Vec<PastToolCall>, StateError> {
            (self.before_read)();
            self.inner.tool_calls(run, tool, since_ms)
        }

        fn count_tool_calls(&self, run: &RunKey, since_ms: i64) -> Result<u32, StateError> {
            (self.before_read)();
            self.inner.count_tool_calls(run, since_ms)
        }

        fn commit(&self, commit: Commit) -> Result<Result<(), CommitRefused>, StateError> {
            self.inner.commit(commit)
        }

        fn reconcile(&self, usage: UsageReport) -> Result<Result<(), UsageRejected>, StateError> {
            self.inner.reconcile(usage)
        }

        fn record_outcome(&self, outcome: OutcomeReport) -> Result<Result<(), OutcomeRejected>, StateError> {
            self.inner.record_outcome(outcome)
        }

        fn open_escalation(&self, escalation: Escalation) -> Result<Result<(), EscalationRefused>, StateError> {
            self.inner.open_escalation(escalation)
        }

        fn resolve_escalation(
            &self,
            resolution: Resolution,
        ) -> Result<Result<Escalation, EscalationRefused>, StateError> {
            self.inner.resolve_escalation(resolution)
        }

        fn escalation(&self, id: &str) -> Result<Option<Escalation>, StateError> {
            self.inner.escalation(id)
        }

        fn escalations(&self) -> Result<Vec<Escalation>, StateError> {
            self.inner.escalations()
        }

        fn gauges(&self, now_ms: i64) -> Result<Gauges, StateError> {
            self.inner.gauges(now_ms)
        }

        fn spend(&self, since_ms: i64, until_ms: i64) -> Result<Vec<SpendEntry>, StateError> {
            self.inner.spend(since_ms, until_ms)
        }

        fn tool_views(&self, server: &str, names: &[String]) -> Result<Vec<ToolView>, StateError> {
            (self.before_read)();
            self.inner.tool_views(server, names)
        }

        fn record_listing(
            &self,
            server: &str,
            tools: &[ListedToolInput],
            now_ms: i64,
        ) -> Result<Result<(), ListingRefused>, StateError> {
            self.inner.record_listing(server, tools, now_ms)
        }

        fn halts(&self) -> Result<Vec<Halt>, StateError> {
            self.inner.halts()
        }

        fn halt(&self, halt: Halt) -> Result<(), StateError> {
            self.inner.halt(halt)
        }

        fn resume(&self, scope: &HaltScope) -> Result<bool, StateError> {
            self.inner.resume(scope)
        }

        fn claim(&self, key: &str, until_ms: i64, now_ms: i64) -> Result<bool, StateError> {
            self.inner.claim(key, until_ms, now_ms)
        }
    }
}

/// Holds every caller until `parties` of them have arrived, so that many
/// evaluations are provably in flight at once. Gives up (panics) after a
/// minute: a guard against hanging the test run, not a speed check.
#[derive(Debug)]
pub struct Gate {
    arrived: std::sync::Mutex<usize>,
    all_in: std::sync::Condvar,
    parties: usize,
}

impl Gate {
    pub fn new(parties: usize) -> Self {
        Gate { arrived: std::sync::Mutex::new(0), all_in: std::sync::Condvar::new(), parties }
    }

    pub fn wait(&self) {
        let mut arrived = self.arrived.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *arrived += 1;
        self.all_in.notify_all();
        let (arrived, waited) = self
            .all_in
            .wait_timeout_while(arrived, std::time::Duration::from_secs(60), |n| *n < self.parties)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        assert!(!waited.timed_out(), "only {} of {} callers arrived", *arrived, self.parties);
    }
}
