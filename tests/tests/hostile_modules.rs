//! Hostile and broken policies: the host stays up, the verdict is the
//! documented fail-closed one (or a clear load error), and healthy policies
//! in the same engine keep working.

use arbiter_engine::{Bundle, Capability, FailMode, PolicyEngine};
use arbiter_tests::{component_from_core_wat, hostile_component, scratch_dir, single_policy_bundle, tool_call};
use arbiter_types::{PolicyOutcome, VerdictKind};
use serde_json::json;

const ALL_CAPABILITIES: [Capability; 2] = [Capability::Log, Capability::Clock];

fn hostile(engine: &PolicyEngine, behaviour: &str, fail: FailMode) -> Bundle {
    single_policy_bundle(engine, &hostile_component(), json!({"behaviour": behaviour}), ALL_CAPABILITIES.to_vec(), fail)
        .unwrap_or_else(|e| panic!("loading `{behaviour}`: {e}"))
}

/// Decides one request and returns the decision and the fault kind.
fn fault_of(bundle: &Bundle) -> (VerdictKind, Vec<String>, Option<String>) {
    let decision = arbiter_tests::decide(bundle, &tool_call("r-1", "warehouse.query", json!({"sql": "select 1"})), 0);
    let fault = decision.policies.iter().find_map(|p| match &p.outcome {
        PolicyOutcome::Fault { kind, .. } => Some(kind.clone()),
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
        vec![Capability::Log],
        FailMode::Closed,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("capability `clock`") && err.contains("arbiter:policy/clock@0.1.0"), "{err}");
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
            (export "arbiter:policy/evaluator@0.1.0" (instance $e)))"#,
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
  (func (export "arbiter:policy/evaluator@0.1.0#init") (param i32 i32) (result i32)
    (i32.const 1024))
  (func (export "arbiter:policy/evaluator@0.1.0#evaluate") (param i32) (result i32)
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
