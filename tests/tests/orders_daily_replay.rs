//! Every orders_daily trace replays green through the reference bundle, on
//! the trace clock, with fresh state per file: in memory, in the embedded
//! journal store and on a real Redis (which must all behave identically).

use std::sync::Arc;

use arbiter_engine::{Bundle, Decider, replay};
use arbiter_state::{InMemoryStore, JournalStore, RedisConfig, RedisStore, StateStore, StoreConfig};
use arbiter_tests::{RedisServer, engine, orders_daily_bundle, orders_daily_traces};

fn replay_all(make_state: &dyn Fn(&str) -> Arc<dyn StateStore>) -> Vec<serde_json::Value> {
    let bundle = Arc::new(Bundle::load(&engine(), &orders_daily_bundle()).unwrap_or_else(|e| panic!("{e}")));
    let (mut passed, mut failures, mut results) = (0, Vec::new(), Vec::new());
    for (file, events) in orders_daily_traces() {
        let decider = Decider::new(Arc::clone(&bundle), make_state(&file));
        let text: String = events.iter().map(|e| format!("{e}\n")).collect();
        for event in replay(&decider, &text).unwrap_or_else(|e| panic!("{file}: {e}")) {
            match event.passed {
                Some(true) => passed += 1,
                Some(false) => failures.push(format!("{file}:{} {}", event.line, event.result)),
                None => {}
            }
            results.push(event.result);
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    assert!(passed >= 120, "only {passed} expectations were checked");
    results
}

#[test]
fn every_trace_replays_green_in_memory() {
    replay_all(&|_| Arc::new(InMemoryStore::in_memory(StoreConfig::default())));
}

#[test]
fn the_journal_store_gives_the_same_results() {
    let dir = tempfile::tempdir().unwrap();
    let in_memory = replay_all(&|_| Arc::new(InMemoryStore::in_memory(StoreConfig::default())));
    let journaled = replay_all(&|file| {
        Arc::new(JournalStore::open(&dir.path().join(file), StoreConfig::default()).unwrap_or_else(|e| panic!("{e}")))
    });
    assert_eq!(in_memory, journaled);
}

#[test]
fn the_redis_store_gives_the_same_results() {
    let redis = RedisServer::start();
    let in_memory = replay_all(&|_| Arc::new(InMemoryStore::in_memory(StoreConfig::default())));
    let files = std::cell::Cell::new(0);
    let on_redis = replay_all(&|_| {
        // A namespace per trace file: fresh state, as for the others.
        files.set(files.get() + 1);
        let config = RedisConfig { namespace: format!("trace-{}", files.get()), ..RedisConfig::new(redis.url()) };
        Arc::new(RedisStore::connect(&config, StoreConfig::default()).unwrap_or_else(|e| panic!("{e}")))
    });
    assert_eq!(in_memory, on_redis);
}
