//! The Redis store against the in-memory one, operation by operation, on a
//! real `redis-server`: the same answers for rolling, calendar and run
//! windows, reconciliation, spend, breakers and history; and breaker
//! outcomes reported by two replicas at once are never lost.

use std::sync::Arc;

use arbiter_state::{
    Commit, InMemoryStore, LlmUsage, OutcomeReport, OutcomeStatus, RedisConfig, RedisStore, RunKey, StateStore,
    StoreConfig, UsageReport,
};
use arbiter_tests::RedisServer;
use arbiter_types::{BreakerConfig, BreakerGuard, BreakerWindow, CalendarUnit, Charge, ChargeUnit, Window};
use serde_json::json;

const T0: i64 = 1_795_658_400_000; // 2026-11-26T00:00:00Z
const DAY: Window = Window::Calendar(CalendarUnit::Day);
const ROLLING: Window = Window::RollingSeconds(10);

fn charge(scope: &str, window: Window, unit: ChargeUnit, amount: u64, limit: u64) -> Charge {
    Charge { scope: scope.into(), window, unit, amount, limit }
}

fn breaker(minimum_calls: u32) -> BreakerConfig {
    BreakerConfig {
        window: BreakerWindow::Count(100),
        minimum_calls,
        failure_rate_percent: 100,
        slow_call_ms: None,
        slow_call_rate_percent: None,
        open_seconds: 60,
        half_open_calls: 1,
        max_half_open_seconds: None,
    }
}

fn commit(id: &str, now_ms: i64, charges: Vec<Charge>, llm: Option<(u64, u64)>, guard: Option<u32>) -> Commit {
    Commit {
        request_id: id.into(),
        now_ms,
        run: RunKey { pipeline: "p".into(), run: "r".into() },
        agent: "a".into(),
        team: "t".into(),
        charges,
        breakers: guard.map(|min| BreakerGuard { key: "p/tool".into(), config: breaker(min) }).into_iter().collect(),
        tool_call: llm
            .is_none()
            .then(|| ("tool".to_owned(), json!({"n": id}).as_object().cloned().unwrap_or_default())),
        llm: llm.map(|(prompt, output)| LlmUsage { model: "m".into(), prompt_tokens: prompt, output_tokens: output }),
        approval: None,
    }
}

/// Runs one script of operations and records every answer.
fn script(store: &dyn StateStore) -> Vec<String> {
    let mut out = Vec::new();
    let mut record = |what: &str, answer: String| out.push(format!("{what}: {answer}"));
    let tokens = ChargeUnit::Tokens;
    let usd = ChargeUnit::MicroUsd;
    for (i, at) in [0, 3_000, 6_000, 9_999, 10_000, 16_001].into_iter().enumerate() {
        let charges = vec![charge("s", ROLLING, tokens, 4, 10), charge("team", DAY, usd, 7, 1_000)];
        record(
            "rolling commit",
            format!("{:?}", store.commit(commit(&format!("roll{i}"), T0 + at, charges, None, None))),
        );
        record("rolling used", format!("{:?}", store.used("s", ROLLING, tokens, T0 + at)));
    }
    let llm = |id: &str, at: i64| {
        let charges = vec![charge("run:r", Window::Run, tokens, 1_500, 4_000), charge("team", DAY, usd, 300, 1_000)];
        commit(id, T0 + at, charges, Some((1_000, 500)), None)
    };
    for (id, at) in [("l1", 20_000), ("l2", 21_000), ("l3", 22_000)] {
        record("llm commit", format!("{:?}", store.commit(llm(id, at))));
    }
    let usage = |id: &str, at: i64| UsageReport {
        request_id: id.into(),
        now_ms: T0 + at,
        prompt_tokens: 1_000,
        output_tokens: 100,
    };
    record("usage", format!("{:?}", store.reconcile(usage("l1", 23_000))));
    record("usage again", format!("{:?}", store.reconcile(usage("l1", 23_500))));
    record("run used", format!("{:?}", store.used("run:r", Window::Run, tokens, T0 + 24_000)));
    record("team usd", format!("{:?}", store.used("team", DAY, usd, T0 + 24_000)));
    record("llm after reconcile", format!("{:?}", store.commit(llm("l3", 25_000))));
    record("next day", format!("{:?}", store.used("team", DAY, usd, T0 + 86_400_000)));
    for i in 0..3 {
        record("guarded", format!("{:?}", store.commit(commit(&format!("g{i}"), T0 + 30_000, vec![], None, Some(3)))));
        let outcome = OutcomeReport {
            request_id: format!("g{i}"),
            now_ms: T0 + 30_500,
            status: OutcomeStatus::Failure,
            latency_ms: Some(5),
        };
        record("outcome", format!("{:?}", store.record_outcome(outcome)));
    }
    record("breaker", format!("{:?}", store.breaker_state("p/tool", &breaker(3), T0 + 31_000)));
    record("after open", format!("{:?}", store.commit(commit("g9", T0 + 31_000, vec![], None, Some(3)))));
    record("half open", format!("{:?}", store.breaker_state("p/tool", &breaker(3), T0 + 91_000)));
    let run = RunKey { pipeline: "p".into(), run: "r".into() };
    record("history", format!("{:?}", store.tool_calls(&run, Some("tool"), T0 + 9_000)));
    record("count", format!("{:?}", store.count_tool_calls(&run, T0)));
    record("spend", format!("{:?}", store.spend(T0, T0 + 86_400_000)));
    record("gauges", format!("{:?}", store.gauges(T0 + 95_000)));
    out
}

#[test]
fn redis_answers_as_the_in_memory_store_does() {
    let redis = RedisServer::start();
    let in_memory = script(&InMemoryStore::in_memory(StoreConfig::default()));
    let on_redis = script(&RedisStore::connect(&RedisConfig::new(redis.url()), StoreConfig::default()).unwrap());
    for (memory, redis) in in_memory.iter().zip(&on_redis) {
        assert_eq!(memory, redis);
    }
    assert_eq!(in_memory.len(), on_redis.len());
    assert!(in_memory.iter().any(|line| line.contains("BudgetExhausted")), "the script reaches a limit");
    assert!(in_memory.iter().any(|line| line.contains("CircuitOpen")), "the script opens the breaker");
}

#[test]
fn breaker_outcomes_from_two_replicas_at_once_are_all_counted() {
    const CALLS: u32 = 40;
    let redis = RedisServer::start();
    let config = RedisConfig::new(redis.url());
    let replicas: Vec<Arc<RedisStore>> =
        (0..2).map(|_| Arc::new(RedisStore::connect(&config, StoreConfig::default()).unwrap())).collect();
    for i in 0..CALLS {
        // Opens only when all CALLS failures are in its window.
        replicas[0].commit(commit(&format!("c{i}"), T0, vec![], None, Some(CALLS))).unwrap().unwrap();
    }
    let reporters: Vec<_> = (0..8)
        .map(|t| {
            let replica = Arc::clone(&replicas[t % 2]);
            std::thread::spawn(move || {
                for i in (t as u32..CALLS).step_by(8) {
                    let outcome = OutcomeReport {
                        request_id: format!("c{i}"),
                        now_ms: T0 + 1,
                        status: OutcomeStatus::Failure,
                        latency_ms: None,
                    };
                    replica.record_outcome(outcome).unwrap().unwrap();
                }
            })
        })
        .collect();
    for reporter in reporters {
        reporter.join().unwrap();
    }
    let state = replicas[1].breaker_state("p/tool", &breaker(CALLS), T0 + 2).unwrap();
    assert_eq!(state, arbiter_state::BreakerState::Open { until_ms: T0 + 1 + 60_000 }, "an outcome was lost");
}
