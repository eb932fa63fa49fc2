//! On Redis a decision costs its round trips: once a kind of decision has
//! been seen, the reference bundle's decisions take two (the forecast read
//! with the halts, then the commit script), and a wrong forecast costs
//! round trips, never an answer (docs/decisions/0019-one-read-one-commit.md).

use std::process::Command;
use std::sync::Arc;

use arbiter_engine::{Bundle, Decider};
use arbiter_state::{
    Commit, CommitRefused, InMemoryStore, OutcomeStatus, ReadSet, RedisConfig, RedisStore, RunKey, StateStore,
    StoreConfig,
};
use arbiter_tests::{RedisServer, engine, llm_request, orders_daily_bundle, tool_call};
use arbiter_types::{Decision, Request, VerdictKind};
use serde_json::json;

fn bundle() -> Arc<Bundle> {
    Arc::new(Bundle::load(&engine(), &orders_daily_bundle()).unwrap_or_else(|e| panic!("{e}")))
}

fn redis_store(server: &RedisServer, namespace: &str) -> Arc<RedisStore> {
    let config = RedisConfig { namespace: namespace.into(), ..RedisConfig::new(server.url()) };
    Arc::new(RedisStore::connect(&config, StoreConfig::default()).unwrap_or_else(|e| panic!("{e}")))
}

/// Deciders of one bundle on Redis and in memory, to hold one to the other.
fn on_redis_and_in_memory(server: &RedisServer, namespace: &str) -> (Decider, Decider) {
    let bundle = bundle();
    let on_redis = Decider::new(Arc::clone(&bundle), redis_store(server, namespace) as Arc<dyn StateStore>);
    (on_redis, Decider::new(bundle, Arc::new(InMemoryStore::in_memory(StoreConfig::default()))))
}

/// Two replicas sharing one namespace: the first's store (to count its
/// exchanges), then both deciders.
fn two_replicas(server: &RedisServer, namespace: &str) -> (Arc<RedisStore>, Decider, Decider) {
    let (store_a, store_b) = (redis_store(server, namespace), redis_store(server, namespace));
    let bundle = bundle();
    let a = Decider::new(Arc::clone(&bundle), Arc::clone(&store_a) as Arc<dyn StateStore>);
    (store_a, a, Decider::new(bundle, store_b as Arc<dyn StateStore>))
}

/// A decision and the exchanges it took.
fn decide_counted(decider: &Decider, store: &RedisStore, request: &Request) -> (Decision, u64) {
    let before = store.exchanges();
    let decision = decider.decide(request, at(request));
    (decision, store.exchanges() - before)
}

/// The request's own time, as the decisions here are taken at.
fn at(request: &Request) -> i64 {
    request.timestamp_ms.unwrap_or(0)
}

fn in_run(mut request: Request, run: &str) -> Request {
    request.principal.run = run.to_owned();
    request
}

/// A docs search unlike the others (retrieval-thrash counts near
/// duplicates): by the id's last digit.
fn search(id: &str) -> Request {
    const QUERIES: [&str; 5] = [
        "freshness of orders_daily",
        "late partitions in the warehouse",
        "how the churn metric is defined",
        "revenue dashboard owners",
        "pagerduty escalation policy",
    ];
    let n = id.bytes().last().map_or(0, |b| usize::from(b.wrapping_sub(b'0')) % QUERIES.len());
    tool_call(id, "docs.search", json!({"query": QUERIES[n]}))
}

fn warehouse_query(id: &str) -> Request {
    tool_call(id, "warehouse.query", json!({"sql": "select order_id from analytics.orders_daily limit 10"}))
}

/// A request of one kind, by id.
type MakeRequest = fn(&str) -> Request;

#[test]
fn a_known_kind_of_decision_takes_one_read_and_one_commit() {
    let server = RedisServer::start();
    let store = redis_store(&server, "round-trips");
    let decider = Decider::new(bundle(), Arc::clone(&store) as Arc<dyn StateStore>);
    let kinds: [(&str, MakeRequest); 3] = [
        // token-budget reads three budgets; circuit-breaker one breaker.
        ("llm", |id| llm_request(id, 900, 100)),
        // tool-storm, data-residency: history; circuit-breaker: a breaker.
        ("query", warehouse_query),
        // retrieval-thrash: near-duplicates in history.
        ("search", search),
    ];
    for (name, make) in kinds {
        let (first, unforecast) = decide_counted(&decider, &store, &make(&format!("{name}-0")));
        assert_eq!(first.decision, VerdictKind::Allow, "{name}: {:?}", first.reasons);
        for n in 1..4 {
            let (decision, exchanges) = decide_counted(&decider, &store, &make(&format!("{name}-{n}")));
            assert_eq!(decision.decision, VerdictKind::Allow, "{name}-{n}: {:?}", decision.reasons);
            assert_eq!(exchanges, 2, "{name}-{n}: first of its kind took {unforecast}");
        }
        // A new run: the run budget's scope follows the run.
        let (decision, exchanges) = decide_counted(&decider, &store, &in_run(make(&format!("{name}-4")), "run-2"));
        assert_eq!(decision.decision, VerdictKind::Allow, "{name} in run-2: {:?}", decision.reasons);
        assert_eq!(exchanges, 2, "{name} in a new run");
        println!("{name}: first of its kind {unforecast} exchanges, then 2");
    }
    // A deny commits nothing: the read alone.
    let (denied, exchanges) = decide_counted(&decider, &store, &tool_call("scope-1", "shell.exec", json!({})));
    assert_eq!(denied.decision, VerdictKind::Deny);
    let (_, again) = decide_counted(&decider, &store, &tool_call("scope-2", "shell.exec", json!({})));
    assert_eq!(again, 1, "a known deny (first took {exchanges})");
}

#[test]
fn a_replayed_request_id_is_still_refused_after_a_forecast_commit() {
    let server = RedisServer::start();
    let (decider, memory) = on_redis_and_in_memory(&server, "duplicates");
    for id in ["llm-1", "llm-2", "llm-2"] {
        let request = llm_request(id, 900, 100);
        let on_redis = decider.decide(&request, at(&request));
        let in_memory = memory.decide(&request, at(&request));
        assert_eq!(on_redis.decision, in_memory.decision, "{id}");
        assert_eq!(on_redis.reasons, in_memory.reasons, "{id}");
    }
    let request = llm_request("llm-2", 900, 100);
    let replayed = decider.decide(&request, at(&request));
    assert_eq!(replayed.decision, VerdictKind::Deny);
    assert!(replayed.reasons.iter().any(|r| r.code == "duplicate_request"), "{:?}", replayed.reasons);
}

/// Decides failing warehouse queries through `replica` until their breaker
/// opens.
fn trip_query_breaker(replica: &Decider) {
    for n in 0..200 {
        let id = format!("trip-{n}");
        let request = in_run(warehouse_query(&id), &format!("trip-run-{n}"));
        let decision = replica.decide(&request, at(&request));
        if decision.decision == VerdictKind::Deny {
            assert!(decision.reasons.iter().any(|r| r.code == "circuit_open"), "{:?}", decision.reasons);
            return;
        }
        replica.report_outcome(&id, OutcomeStatus::Failure, Some(5), at(&request)).unwrap_or_else(|e| panic!("{e}"));
    }
    panic!("the breaker never opened");
}

#[test]
fn a_breaker_opened_between_the_read_and_the_commit_is_not_passed() {
    let server = RedisServer::start();
    let (store_a, a, b) = two_replicas(&server, "race");
    let first = warehouse_query("a-0");
    let allowed = a.decide(&first, at(&first));
    let [guard] = allowed.breakers.as_slice() else { panic!("one breaker: {:?}", allowed.breakers) };
    // Replica A reads the closed breaker for its next decision...
    let run = RunKey { pipeline: "orders_daily".into(), run: "run-1".into() };
    let forecast = || ReadSet { breakers: vec![guard.key.clone()], ..ReadSet::default() };
    let read = store_a.prefetch(&forecast, &run, at(&first)).unwrap_or_else(|e| panic!("{e}"));
    let read = read.unwrap_or_else(|| panic!("Redis prefetches"));
    // ...replica B opens it...
    trip_query_breaker(&b);
    // ...and A's commit, expecting the closed record it read, is refused.
    let commit = Commit {
        request_id: "a-1".into(),
        now_ms: at(&first),
        run,
        agent: "monitor".into(),
        team: "data-platform".into(),
        charges: Vec::new(),
        breakers: vec![guard.clone()],
        tool_call: None,
        llm: None,
        approval: None,
    };
    let committed = store_a.commit_prefetched(commit, &read).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(committed, Err(CommitRefused::CircuitOpen { .. })), "{committed:?}");
}

#[test]
fn another_replica_tripping_a_breaker_is_seen_by_a_forecast_read() {
    let server = RedisServer::start();
    let (store_a, a, b) = two_replicas(&server, "replicas");
    // Replica A learns the kind: its next decision is forecast.
    for n in 0..2 {
        let request = warehouse_query(&format!("a-{n}"));
        assert_eq!(a.decide(&request, at(&request)).decision, VerdictKind::Allow);
    }
    trip_query_breaker(&b);
    let (seen, exchanges) = decide_counted(&a, &store_a, &warehouse_query("a-after"));
    // The policy saw the breaker open (its message), not only the
    // commit's own check (`circuit ... is open`).
    assert_eq!(seen.decision, VerdictKind::Deny, "{:?}", seen.reasons);
    assert!(
        seen.reasons.iter().any(|r| r.code == "circuit_open" && r.message.contains("failed too often")),
        "{:?}",
        seen.reasons
    );
    assert_eq!(exchanges, 1, "the forecast read answered it");
}

#[test]
fn an_unreadable_record_a_forecast_names_decides_as_reading_as_asked_would() {
    let server = RedisServer::start();
    let store = redis_store(&server, "corrupt");
    let bundle = bundle();
    let forecast = Decider::new(Arc::clone(&bundle), Arc::clone(&store) as Arc<dyn StateStore>);
    for n in 0..2 {
        let request = warehouse_query(&format!("q-{n}"));
        assert_eq!(forecast.decide(&request, at(&request)).decision, VerdictKind::Allow);
    }
    let corrupted = Command::new("redis-cli")
        .args(["-p", &server.port().to_string(), "SET", "{corrupt}:breaker:orders_daily/warehouse.query", "{not json"])
        .output()
        .unwrap_or_else(|e| panic!("redis-cli: {e}"));
    assert!(corrupted.status.success(), "{corrupted:?}");
    // A replica with nothing forecast reads as asked: only the policy that
    // reads the record meets the error, and its fail mode decides.
    let fresh = Decider::new(bundle, Arc::clone(&store) as Arc<dyn StateStore>);
    let judged = |decision: Decision| -> (VerdictKind, Vec<(String, String)>) {
        (decision.decision, decision.reasons.into_iter().map(|r| (r.policy, r.code)).collect())
    };
    for n in 0..3 {
        let (request, again) = (warehouse_query(&format!("f-{n}")), warehouse_query(&format!("g-{n}")));
        let expected = judged(fresh.decide(&again, at(&again)));
        assert_ne!(expected.1.first().map(|(policy, _)| policy.as_str()), Some("arbiter"), "{expected:?}");
        assert_eq!(judged(forecast.decide(&request, at(&request))), expected, "decision {n} after the corruption");
    }
}

#[test]
fn a_run_id_that_confuses_the_forecast_costs_round_trips_not_answers() {
    let server = RedisServer::start();
    let (decider, memory) = on_redis_and_in_memory(&server, "odd-runs");
    // "o" and "_" occur in the pipeline's name, so a learned scope splits
    // at them too; "" is no run at all.
    for (n, run) in ["o", "_", "o", "", "daily", "o"].iter().enumerate() {
        for request in [llm_request(&format!("llm-{n}"), 20_000, 8_000), warehouse_query(&format!("q-{n}"))] {
            let request = in_run(request, run);
            let (on_redis, in_memory) = (decider.decide(&request, at(&request)), memory.decide(&request, at(&request)));
            assert_eq!(
                (on_redis.decision, &on_redis.reasons),
                (in_memory.decision, &in_memory.reasons),
                "{} in run {run:?}",
                request.id
            );
        }
    }
}
