//! Hostile and broken policies: the host stays up, the verdict is the
//! documented fail-closed one (or a clear load error), and healthy policies
//! in the same engine keep working. Also the sandbox's bounds around them:
//! the deadline on the guest's own time, the bounded instance pool, and the
//! authenticated compilation cache.

use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arbiter_engine::{Bundle, Capability, EngineConfig, FailMode, PolicyEngine};
use arbiter_tests::{
    Gate, component_from_core_wat, hooked_store, hostile_component, reference_component, scratch_dir,
    single_policy_bundle, tool_call,
};
use arbiter_types::{Decision, PolicyOutcome, VerdictKind};
use serde_json::json;

const ALL_CAPABILITIES: [Capability; 4] =
    [Capability::Log, Capability::Clock, Capability::Budgets, Capability::History];

fn hostile(engine: &PolicyEngine, behaviour: &str, fail: FailMode) -> Bundle {
    single_policy_bundle(engine, &hostile_component(), json!({"behaviour": behaviour}), ALL_CAPABILITIES.to_vec(), fail)
        .unwrap_or_else(|e| panic!("loading `{behaviour}`: {e}"))
}

/// Decides one request and returns the decision and the fault kind.
fn fault_of(bundle: &Bundle) -> (VerdictKind, Vec<String>, Option<String>) {
    let decision = arbiter_tests::decide(bundle, &tool_call("r-1", "warehouse.query", json!({"sql": "select 1"})), 0);
    outcome_of(&decision)
}

fn outcome_of(decision: &Decision) -> (VerdictKind, Vec<String>, Option<String>) {
    let fault = decision.policies.iter().find_map(|p| match &p.outcome {
        PolicyOutcome::Fault { kind, .. } => Some(kind.code().to_owned()),
        PolicyOutcome::Verdict(_) => None,
    });
    let codes = decision.codes().into_iter().map(str::to_owned).collect();
    (decision.decision, codes, fault)
}

fn assert_healthy_still_works(engine: &PolicyEngine) {
    let healthy = hostile(engine, "allow", FailMode::Closed);
    let (decision, codes, fault) = fault_of(&healthy);
    assert_eq!((decision, fault), (VerdictKind::Allow, None), "healthy policy after a hostile one: {codes:?}");
}

#[test]
fn misbehaving_policies_fail_closed_with_the_fault_named() {
    let engine = arbiter_tests::engine();
    let cases = [
        ("loop_forever", &["out_of_fuel", "deadline_exceeded"][..]),
        ("memory_bomb", &["memory_limit"][..]),
        // Rust guests overflow their shadow stack into linear memory before
        // wasm's own stack, which shows as an out-of-bounds trap.
        ("deep_recursion", &["stack_overflow", "trap"][..]),
        ("panic", &["panic"][..]),
        ("huge_reason", &["invalid_verdict"][..]),
        // Obligations must fit the request they answer (0.2.0).
        ("hide_unlisted", &["invalid_verdict"][..]),
        ("redact_out_of_bounds", &["invalid_verdict"][..]),
        ("redact_missing", &["invalid_verdict"][..]),
        // A history question the host cannot answer traps the policy (0.3.0).
        ("nan_similarity", &["capability_refused"][..]),
        ("oversized_question", &["capability_refused"][..]),
        ("oversized_text", &["capability_refused"][..]),
    ];
    for (behaviour, kinds) in cases {
        let bundle = hostile(&engine, behaviour, FailMode::Closed);
        // Twice: the faulted instance is replaced, and faults again the same way.
        for attempt in 0..2 {
            let (decision, codes, fault) = fault_of(&bundle);
            assert_eq!(decision, VerdictKind::Deny, "{behaviour} attempt {attempt}");
            assert_eq!(codes, ["policy_fault"], "{behaviour}");
            let fault = fault.unwrap_or_else(|| panic!("{behaviour}: no fault recorded"));
            assert!(kinds.contains(&fault.as_str()), "{behaviour}: fault kind {fault}, expected one of {kinds:?}");
        }
        assert_healthy_still_works(&engine);
    }
}

#[test]
fn an_endless_loop_is_stopped_by_the_wall_clock_without_fuel() {
    let mut config = arbiter_engine::EngineConfig::default();
    config.limits.fuel = None;
    config.limits.deadline = std::time::Duration::from_millis(20);
    let engine = PolicyEngine::new(config).unwrap();
    let (decision, _, fault) = fault_of(&hostile(&engine, "loop_forever", FailMode::Closed));
    assert_eq!((decision, fault.as_deref()), (VerdictKind::Deny, Some("deadline_exceeded")));
}

#[test]
fn fail_open_policies_fault_without_denying() {
    let engine = arbiter_tests::engine();
    let (decision, codes, fault) = fault_of(&hostile(&engine, "panic", FailMode::Open));
    assert_eq!(decision, VerdictKind::Allow);
    assert!(codes.is_empty());
    assert_eq!(fault.as_deref(), Some("panic"), "the fault is still recorded");
}

#[test]
fn a_loop_in_init_rejects_the_bundle_at_load() {
    let engine = arbiter_tests::engine();
    let err = single_policy_bundle(
        &engine,
        &hostile_component(),
        json!({"behaviour": "loop_in_init"}),
        ALL_CAPABILITIES.to_vec(),
        FailMode::Closed,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("out_of_fuel") || err.contains("deadline_exceeded"), "{err}");
    assert_healthy_still_works(&engine);
}

#[test]
fn invalid_settings_reject_the_bundle_naming_the_field() {
    let engine = arbiter_tests::engine();
    let err = single_policy_bundle(
        &engine,
        &hostile_component(),
        json!({"behavior": "allow"}),
        ALL_CAPABILITIES.to_vec(),
        FailMode::Closed,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("rejected its settings") && err.contains("behavior"), "{err}");
}

#[test]
fn ungranted_capabilities_are_refused_by_name() {
    let engine = arbiter_tests::engine();
    let err = single_policy_bundle(
        &engine,
        &hostile_component(),
        json!({"behaviour": "allow"}),
        vec![Capability::Log, Capability::Budgets],
        FailMode::Closed,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("capability `clock`") && err.contains("arbiter:policy/clock@0.3.0"), "{err}");
    assert!(err.contains("capability `history`") && err.contains("arbiter:policy/history@0.3.0"), "{err}");
}

#[test]
fn policies_read_the_decision_clock() {
    let engine = arbiter_tests::engine();
    let bundle = hostile(&engine, "echo_clock", FailMode::Closed);
    let request = tool_call("r-1", "x", json!({}));
    // The request's own timestamp is not the decision's time.
    let now = request.timestamp_ms.unwrap() + 86_400_000;
    let decision = arbiter_tests::decide(&bundle, &request, now);
    assert_eq!(decision.reasons[0].message, now.to_string());
}

/// Writes `bytes` as a component file and tries to load it.
fn load_bytes(engine: &PolicyEngine, name: &str, bytes: &[u8]) -> String {
    let path = scratch_dir().join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    single_policy_bundle(engine, &path, json!({}), vec![], FailMode::Closed).unwrap_err().to_string()
}

#[test]
fn malformed_components_are_refused_at_load_with_a_clear_error() {
    let engine = arbiter_tests::engine();
    // Deterministic pseudo-random bytes.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let core = wat::parse_str("(module (func (export \"evaluate\")))").unwrap();
    let wasi = wat::parse_str(
        r#"(component
            (@custom "arbiter-policy" "{\"name\":\"unnamed\",\"version\":\"0.0.0\"}")
            (import "wasi:filesystem/types@0.2.0" (instance))
            (instance $e)
            (export "arbiter:policy/evaluator@0.2.0" (instance $e)))"#,
    )
    .unwrap();
    let future =
        wat::parse_str(r#"(component (instance $e) (export "arbiter:policy/evaluator@9.0.0" (instance $e)))"#).unwrap();
    let cases: [(&str, &[u8], &str); 5] = [
        ("random", &random, "not a WebAssembly binary"),
        ("empty", b"", "not a WebAssembly binary"),
        ("core-module", &core, "core WebAssembly module, not a component"),
        ("wasi-import", &wasi, "imports `wasi:filesystem/types@0.2.0`, which arbiter never provides"),
        ("future-contract", &future, "targets contract arbiter:policy@9.0.0"),
    ];
    for (name, bytes, needle) in cases {
        let err = load_bytes(&engine, name, bytes);
        assert!(err.contains(needle), "{name}: expected `{needle}` in: {err}");
    }
    assert_healthy_still_works(&engine);
}

/// A hand-written policy whose `evaluate` returns a verdict with an
/// impossible decision discriminant: the canonical ABI refuses to lift it.
const GARBAGE_VERDICT: &str = r#"
(module
  (@custom "arbiter-policy" "{\"name\":\"garbage-verdict\",\"version\":\"0.0.1\"}")
  (memory (export "memory") 1)
  ;; init's result<_, string> at 1024: all zero means ok.
  ;; evaluate's verdict at 2048: decision discriminant 9 does not exist.
  (data (i32.const 2048) "\09")
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get 3)))
    (local.get $p))
  (func (export "arbiter:policy/evaluator@0.3.0#init") (param i32 i32) (result i32)
    (i32.const 1024))
  (func (export "arbiter:policy/evaluator@0.3.0#evaluate") (param i32) (result i32)
    (i32.const 2048)))
"#;

#[test]
fn a_verdict_that_cannot_be_lifted_is_a_policy_fault() {
    let engine = arbiter_tests::engine();
    let component = component_from_core_wat(GARBAGE_VERDICT);
    let path = scratch_dir().join("garbage-verdict.wasm");
    std::fs::write(&path, component).unwrap();
    let bundle = single_policy_bundle(&engine, &path, json!({}), vec![], FailMode::Closed).unwrap();
    let (decision, codes, fault) = fault_of(&bundle);
    assert_eq!((decision, codes), (VerdictKind::Deny, vec!["policy_fault".to_owned()]));
    assert_eq!(fault.as_deref(), Some("invalid_return"));
    assert_healthy_still_works(&engine);
}

// --- The deadline bounds the guest's own work, not waiting in host calls ---

/// Engine settings for the sandbox-bound tests, caching where the other
/// tests do.
fn config() -> EngineConfig {
    EngineConfig { cache_dir: Some(scratch_dir().join("cache")), ..EngineConfig::default() }
}

const HOST_CALL: Duration = Duration::from_millis(15);

/// The token-budget reference policy with four budgets it reads one host
/// call each, all too small for the request: it denies `budget_exhausted`.
fn four_budgets(engine: &PolicyEngine) -> Bundle {
    let budgets: Vec<_> = ["run", "pipeline", "agent", "team"]
        .iter()
        .map(|per| json!({"per": per, "window": "day", "limit": 500}))
        .collect();
    single_policy_bundle(
        engine,
        &reference_component("token-budget"),
        json!({"budgets": budgets}),
        vec![Capability::Budgets],
        FailMode::Closed,
    )
    .unwrap_or_else(|e| panic!("token-budget: {e}"))
}

/// Decides the LLM request on a store whose every read takes `HOST_CALL`;
/// returns the outcome and how many reads the policy made.
fn decide_with_slow_reads(bundle: &Bundle) -> ((VerdictKind, Vec<String>, Option<String>), usize) {
    let reads = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&reads);
    let state = hooked_store(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(HOST_CALL);
    });
    let decision = bundle.evaluate(&arbiter_tests::llm_request("r-llm", 900, 100), 0, &state);
    (outcome_of(&decision), reads.load(Ordering::Relaxed))
}

#[test]
fn slow_host_calls_do_not_count_against_the_deadline() {
    // Four 15 ms reads: 60 ms in host calls, more than twice the deadline.
    let engine = PolicyEngine::new(EngineConfig {
        limits: arbiter_engine::SandboxLimits { deadline: Duration::from_millis(25), ..Default::default() },
        ..config()
    })
    .unwrap();
    let (outcome, reads) = decide_with_slow_reads(&four_budgets(&engine));
    assert_eq!(reads, 4, "one read per budget");
    assert_eq!(outcome, (VerdictKind::Deny, vec!["budget_exhausted".to_owned()], None));
}

#[test]
fn waiting_beyond_the_host_wait_allowance_counts_against_the_deadline() {
    // Only 5 ms of the 60 ms waited are forgiven: a policy cannot hold a
    // request indefinitely by calling the host in a loop.
    let engine = PolicyEngine::new(EngineConfig {
        limits: arbiter_engine::SandboxLimits { deadline: Duration::from_millis(25), ..Default::default() },
        host_wait_allowance: Duration::from_millis(5),
        ..config()
    })
    .unwrap();
    let ((decision, codes, fault), _) = decide_with_slow_reads(&four_budgets(&engine));
    assert_eq!(
        (decision, codes, fault.as_deref()),
        (VerdictKind::Deny, vec!["policy_fault".to_owned()], Some("deadline_exceeded"))
    );
}

#[test]
fn a_spinning_guest_is_stopped_even_with_a_generous_host_allowance() {
    let engine = PolicyEngine::new(EngineConfig {
        limits: arbiter_engine::SandboxLimits { fuel: None, deadline: Duration::from_millis(20), ..Default::default() },
        host_wait_allowance: Duration::from_secs(3600),
        ..config()
    })
    .unwrap();
    let bundle = hostile(&engine, "loop_forever", FailMode::Closed);
    for attempt in 0..2 {
        let (decision, _, fault) = fault_of(&bundle);
        assert_eq!((decision, fault.as_deref()), (VerdictKind::Deny, Some("deadline_exceeded")), "attempt {attempt}");
    }
}

// --- Bounded instance pools with a reuse cap ---

/// The count the `count_calls` guest returns: which evaluation of its
/// instance this was.
fn count_of(decision: &Decision) -> u32 {
    assert_eq!(decision.codes(), ["count"], "{decision:?}");
    decision.reasons[0].message.parse().unwrap_or_else(|e| panic!("count: {e}"))
}

#[test]
fn an_instance_is_replaced_after_its_reuse_limit() {
    let engine =
        PolicyEngine::new(EngineConfig { instance_reuse_limit: NonZeroU64::new(3).unwrap(), ..config() }).unwrap();
    let bundle = hostile(&engine, "count_calls", FailMode::Closed);
    let counts: Vec<u32> = (0..7)
        .map(|i| count_of(&arbiter_tests::decide(&bundle, &tool_call(&format!("r-{i}"), "x", json!({})), 0)))
        .collect();
    // The global restarts with each fresh instance.
    assert_eq!(counts, [1, 2, 3, 1, 2, 3, 1]);
}

/// Evaluates `parties` requests at once: each waits in its host call until
/// all are in flight, so each holds its own instance. Returns the counts.
fn evaluate_together(bundle: &Arc<Bundle>, parties: usize) -> Vec<u32> {
    let gate = Arc::new(Gate::new(parties));
    let state = hooked_store(move || gate.wait());
    let threads: Vec<_> = (0..parties)
        .map(|i| {
            let (bundle, state) = (Arc::clone(bundle), Arc::clone(&state));
            std::thread::spawn(move || {
                count_of(&bundle.evaluate(&tool_call(&format!("r-{i}"), "x", json!({})), 0, &state))
            })
        })
        .collect();
    let mut counts: Vec<u32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    counts.sort_unstable();
    counts
}

#[test]
fn the_idle_pool_never_holds_more_than_its_cap() {
    let engine = PolicyEngine::new(EngineConfig {
        max_idle_instances: NonZeroUsize::new(2).unwrap(),
        // The evaluations wait for each other in a host call.
        host_wait_allowance: Duration::from_secs(3600),
        ..config()
    })
    .unwrap();
    let bundle = Arc::new(hostile(&engine, "count_calls", FailMode::Closed));
    // Six instances at once, each on its first evaluation...
    assert_eq!(evaluate_together(&bundle, 6), [1; 6]);
    // ...of which only two were kept: the other four are new.
    assert_eq!(evaluate_together(&bundle, 6), [1, 1, 1, 1, 2, 2]);
}

// --- The compilation cache is verified before it is loaded ---

fn cache_entry(dir: &Path, component: &[u8]) -> PathBuf {
    let digest = arbiter_engine::digest_of(component);
    let hex = digest.trim_start_matches("sha256:");
    let names: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().filter_map(|e| e.ok().map(|e| e.path())).collect();
    names
        .iter()
        .find(|p| p.extension().is_some_and(|x| x == "cwasm") && p.to_string_lossy().contains(hex))
        .unwrap_or_else(|| panic!("no cache entry for {digest} in {names:?}"))
        .clone()
}

#[test]
fn a_tampered_cache_entry_is_recompiled_never_loaded() {
    let cache = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let engine_with_key = |key: Option<PathBuf>| {
        PolicyEngine::new(EngineConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            cache_key_file: key,
            ..EngineConfig::default()
        })
        .unwrap()
    };
    let garbage = elsewhere.path().join("garbage-verdict.wasm");
    std::fs::write(&garbage, component_from_core_wat(GARBAGE_VERDICT)).unwrap();
    let engine = engine_with_key(None);
    hostile(&engine, "allow", FailMode::Closed);
    single_policy_bundle(&engine, &garbage, json!({}), vec![], FailMode::Closed).unwrap();
    let entry = cache_entry(cache.path(), &std::fs::read(hostile_component()).unwrap());
    let valid = std::fs::read(&entry).unwrap();
    // A valid entry of the same engine, for a component that faults.
    let other_component = std::fs::read(cache_entry(cache.path(), &std::fs::read(&garbage).unwrap())).unwrap();
    let mut flipped = valid.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;

    type Tamper<'a> = (&'static str, Box<dyn Fn() + 'a>);
    let tampers: [Tamper; 4] = [
        ("a flipped byte", Box::new(|| std::fs::write(&entry, &flipped).unwrap())),
        ("truncated", Box::new(|| std::fs::write(&entry, &valid[..valid.len() * 3 / 4]).unwrap())),
        ("another component's entry", Box::new(|| std::fs::write(&entry, &other_component).unwrap())),
        (
            "written under another key",
            Box::new(|| {
                let foreign = engine_with_key(Some(elsewhere.path().join("foreign.key")));
                hostile(&foreign, "allow", FailMode::Closed);
            }),
        ),
    ];
    for (what, tamper) in tampers {
        tamper();
        assert_ne!(std::fs::read(&entry).unwrap(), valid, "{what}: the entry changed");
        let engine = engine_with_key(None);
        let (decision, codes, fault) = fault_of(&hostile(&engine, "allow", FailMode::Closed));
        assert_eq!((decision, fault), (VerdictKind::Allow, None), "{what}: decided by the wrong code: {codes:?}");
        assert_eq!(std::fs::read(&entry).unwrap(), valid, "{what}: the entry was not rewritten");
    }
}
