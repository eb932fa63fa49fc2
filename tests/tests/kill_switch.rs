//! The kill switch on every backend: a halt denies matching decisions
//! (`halted`, with its reason and who set it) before any policy runs, and
//! only those; a resume lifts exactly the scope it names; halts survive a
//! restart of the journal store and hold across replicas sharing Redis;
//! budget-alert claims are taken once.

use std::sync::Arc;

use arbiter_engine::{Bundle, Decider, HALTED};
use arbiter_state::{Halt, HaltScope, InMemoryStore, JournalStore, RedisConfig, RedisStore, StateStore, StoreConfig};
use arbiter_tests::{RedisServer, engine, orders_daily_bundle, tool_call};
use arbiter_types::{Decision, VerdictKind};
use serde_json::json;

const T0: i64 = 1_795_658_400_000;

/// Loaded once: compiling the bundle is most of each test's time.
fn bundle() -> Arc<Bundle> {
    static BUNDLE: std::sync::OnceLock<Arc<Bundle>> = std::sync::OnceLock::new();
    Arc::clone(
        BUNDLE.get_or_init(|| {
            Arc::new(Bundle::load(&engine(), &orders_daily_bundle()).unwrap_or_else(|e| panic!("{e}")))
        }),
    )
}

fn query(id: &str) -> arbiter_types::Request {
    tool_call(id, "warehouse.query", json!({"sql": "select 1"}))
}

fn halt(scope: &str) -> Halt {
    Halt { scope: HaltScope::parse(scope).unwrap(), reason: "runaway".into(), by: "oncall-alice".into(), at_ms: T0 }
}

fn kind(decision: &Decision) -> (VerdictKind, &str) {
    (decision.decision, decision.reasons.first().map_or("", |r| r.code.as_str()))
}

/// The same story on one store: halted, odd resumes refused, resumed.
fn halting_and_resuming(state: Arc<dyn StateStore>) {
    let decider = Decider::new(bundle(), Arc::clone(&state));
    assert_eq!(decider.decide(&query("q0"), T0).decision, VerdictKind::Allow);
    state.halt(halt("pipeline:orders_daily")).unwrap();
    let denied = decider.decide(&query("q1"), T0 + 1);
    assert_eq!(kind(&denied), (VerdictKind::Deny, HALTED));
    let message = &denied.reasons[0].message;
    assert!(message.contains("oncall-alice") && message.contains("runaway"), "{message}");
    assert!(denied.policies.is_empty(), "no policy ran: {:?}", denied.policies);
    // Another pipeline's scope, and resumes that only look alike, change nothing.
    state.halt(halt("pipeline:finance_daily")).unwrap();
    for alike in ["pipeline:Orders_Daily", "pipeline:orders%5Fdaily", "pipeline:orders_daily ", "team:orders_daily"] {
        assert!(!state.resume(&HaltScope::parse(alike).unwrap()).unwrap(), "{alike} lifted nothing");
    }
    assert_eq!(kind(&decider.decide(&query("q2"), T0 + 2)).1, HALTED);
    assert!(state.resume(&HaltScope::parse("pipeline:orders_daily").unwrap()).unwrap());
    assert_eq!(decider.decide(&query("q3"), T0 + 3).decision, VerdictKind::Allow);
    // Everything, then the agent alone.
    for scope in ["all", "agent:monitor", "team:data-platform"] {
        state.halt(halt(scope)).unwrap();
        assert_eq!(kind(&decider.decide(&query(&format!("h-{scope}")), T0 + 4)).1, HALTED, "{scope}");
        assert!(state.resume(&HaltScope::parse(scope).unwrap()).unwrap());
    }
    assert_eq!(state.halts().unwrap(), vec![halt("pipeline:finance_daily")]);
    // A budget alert claim is taken once per window.
    assert!(state.claim("team:t|day|0|80", T0 + 1000, T0).unwrap());
    assert!(!state.claim("team:t|day|0|80", T0 + 1000, T0 + 10).unwrap());
    assert!(state.claim("team:t|day|0|100", T0 + 1000, T0 + 10).unwrap());
}

#[test]
fn a_halt_denies_before_any_policy_in_memory() {
    halting_and_resuming(Arc::new(InMemoryStore::in_memory(StoreConfig::default())));
}

#[test]
fn a_halt_denies_before_any_policy_in_the_journal_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { snapshot_every: 3, ..StoreConfig::default() };
    halting_and_resuming(Arc::new(JournalStore::open(dir.path(), config).unwrap()));
    let state: Arc<dyn StateStore> = Arc::new(JournalStore::open(dir.path(), config).unwrap());
    state.halt(halt("run:r-restart")).unwrap();
    drop(state);
    let reopened: Arc<dyn StateStore> = Arc::new(JournalStore::open(dir.path(), config).unwrap());
    assert_eq!(reopened.halts().unwrap(), vec![halt("pipeline:finance_daily"), halt("run:r-restart")]);
    assert!(!reopened.claim("team:t|day|0|80", T0 + 1000, T0 + 20).unwrap(), "the alert claim survived too");
}

#[test]
fn a_halt_on_one_replica_holds_on_another_sharing_redis() {
    let redis = RedisServer::start();
    let config = RedisConfig::new(redis.url());
    halting_and_resuming(Arc::new(RedisStore::connect(&config, StoreConfig::default()).unwrap()));
    let replicas: Vec<Arc<dyn StateStore>> = (0..2)
        .map(|_| Arc::new(RedisStore::connect(&config, StoreConfig::default()).unwrap()) as Arc<dyn StateStore>)
        .collect();
    let other = Decider::new(bundle(), Arc::clone(&replicas[1]));
    replicas[0].halt(halt("agent:monitor")).unwrap();
    assert_eq!(kind(&other.decide(&query("r1"), T0)).1, HALTED);
    assert!(replicas[1].resume(&HaltScope::parse("agent:monitor").unwrap()).unwrap());
    assert_eq!(other.decide(&query("r2"), T0 + 1).decision, VerdictKind::Allow);
    assert!(!replicas[0].claim("team:t|day|0|80", T0 + 1000, T0 + 20).unwrap(), "claimed on the first store");
}

#[test]
fn a_store_that_cannot_say_fails_closed() {
    let redis = RedisServer::start();
    let state: Arc<dyn StateStore> =
        Arc::new(RedisStore::connect(&RedisConfig::new(redis.url()), StoreConfig::default()).unwrap());
    let decider = Decider::new(bundle(), state);
    drop(redis);
    assert_eq!(kind(&decider.decide(&query("down"), T0)), (VerdictKind::Deny, "state_unavailable"));
}
