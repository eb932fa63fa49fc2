//! 64 threads race LLM requests against one small budget through the real
//! host, on the embedded journal store and on two replicas sharing a real
//! Redis: committed reservations never exceed the limit, and exactly what
//! fits is allowed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};

use arbiter_engine::{Bundle, Decider};
use arbiter_state::{JournalStore, RedisConfig, RedisStore, StateStore, StoreConfig};
use arbiter_tests::{RedisServer, engine, orders_daily_bundle};
use arbiter_types::{ChargeUnit, Request, VerdictKind, Window};
use serde_json::json;

const THREADS: usize = 64;
const PER_THREAD: usize = 4;
/// The reference bundle's run budget.
const RUN_LIMIT: u64 = 60_000;
const RUN_SCOPE: &str = "run:orders_daily/race";
const PROMPT: u64 = 900;
const MAX_OUTPUT: u64 = 100;
const NOW: i64 = 1_795_658_400_000;

fn request(thread: usize, i: usize) -> Request {
    Request::from_json_value(&json!({
        "id": format!("t{thread}-{i}"),
        "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                      "environment": "prod", "run": "race"},
        "action": {"kind": "llm_request", "model": "claude-sonnet-4-5-20250929",
                   "prompt_tokens": PROMPT, "max_output_tokens": MAX_OUTPUT}
    }))
    .unwrap()
}

/// Runs the race, threads spread over one decider per store (replicas);
/// returns (allowed, final run usage, the most ever seen).
fn race(replicas: &[Arc<dyn StateStore>], reconcile_output: Option<u64>) -> (u64, u64, u64) {
    let bundle = Arc::new(Bundle::load(&engine(), &orders_daily_bundle()).unwrap_or_else(|e| panic!("{e}")));
    let deciders: Vec<Arc<Decider>> =
        replicas.iter().map(|state| Arc::new(Decider::new(Arc::clone(&bundle), Arc::clone(state)))).collect();
    let state = Arc::clone(&replicas[0]);
    let allowed = Arc::new(AtomicU64::new(0));
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(THREADS));
    let sampler = {
        let (state, peak, done) = (Arc::clone(&state), Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let used = state.used(RUN_SCOPE, Window::Run, ChargeUnit::Tokens, NOW).unwrap();
                peak.fetch_max(used, Ordering::Relaxed);
            }
        })
    };
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let decider = Arc::clone(&deciders[t % deciders.len()]);
            let (allowed, start) = (Arc::clone(&allowed), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                for i in 0..PER_THREAD {
                    let request = request(t, i);
                    let decision = decider.decide(&request, NOW);
                    match decision.decision {
                        VerdictKind::Allow => {
                            allowed.fetch_add(1, Ordering::Relaxed);
                            assert!(decision.clamp_max_output_tokens().is_none(), "no clamp can fit below 256 tokens");
                            if let Some(output) = reconcile_output {
                                decider.report_usage(&request.id, PROMPT, output, NOW).unwrap();
                            }
                        }
                        VerdictKind::Deny => assert_eq!(decision.codes(), ["budget_exhausted"]),
                        VerdictKind::Escalate => panic!("unexpected escalation"),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let used = state.used(RUN_SCOPE, Window::Run, ChargeUnit::Tokens, NOW).unwrap();
    (allowed.load(Ordering::Relaxed), used, peak.load(Ordering::Relaxed).max(used))
}

fn journal() -> (tempfile::TempDir, Vec<Arc<dyn StateStore>>) {
    let dir = tempfile::tempdir().unwrap();
    let state: Arc<dyn StateStore> = Arc::new(JournalStore::open(dir.path(), StoreConfig::default()).unwrap());
    (dir, vec![state])
}

/// Two stores on one Redis: two replicas, as far as state goes.
fn redis_replicas(redis: &RedisServer) -> Vec<Arc<dyn StateStore>> {
    let config = RedisConfig::new(redis.url());
    (0..2)
        .map(|_| Arc::new(RedisStore::connect(&config, StoreConfig::default()).unwrap()) as Arc<dyn StateStore>)
        .collect()
}

fn assert_exactly_what_fits(replicas: &[Arc<dyn StateStore>]) {
    let (allowed, used, peak) = race(replicas, None);
    println!("{} attempts, {allowed} allowed, {used} of {RUN_LIMIT} used", THREADS * PER_THREAD);
    assert_eq!(allowed, RUN_LIMIT / (PROMPT + MAX_OUTPUT), "exactly the requests that fit are allowed");
    assert_eq!(used, RUN_LIMIT);
    assert!(peak <= RUN_LIMIT);
}

fn assert_reconciliation_frees_room(replicas: &[Arc<dyn StateStore>]) {
    let actual_output = 50;
    let (allowed, used, peak) = race(replicas, Some(actual_output));
    println!("{} attempts, {allowed} allowed, {used} of {RUN_LIMIT} used, peak {peak}", THREADS * PER_THREAD);
    assert!(peak <= RUN_LIMIT, "a reservation overshot: {peak}");
    assert_eq!(used, allowed * (PROMPT + actual_output), "every allowed request was reconciled");
    // Exactly what fits: no room is left for one more worst case.
    assert!(used + PROMPT + MAX_OUTPUT > RUN_LIMIT, "{used} used: another request would have fit");
    assert!(allowed > RUN_LIMIT / (PROMPT + MAX_OUTPUT), "reconciliation freed room for more");
}

#[test]
fn concurrent_reservations_never_overshoot() {
    assert_exactly_what_fits(&journal().1);
}

#[test]
fn concurrent_reservations_with_reconciliation_interleaved() {
    assert_reconciliation_frees_room(&journal().1);
}

#[test]
fn two_replicas_on_redis_never_overshoot() {
    assert_exactly_what_fits(&redis_replicas(&RedisServer::start()));
}

#[test]
fn two_replicas_on_redis_with_reconciliation_interleaved() {
    assert_reconciliation_frees_room(&redis_replicas(&RedisServer::start()));
}
