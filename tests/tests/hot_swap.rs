//! Swapping bundles under load: every decision is made by exactly one
//! bundle (its verdict matches the bundle it names), and none fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use arbiter_engine::{Bundle, Decider};
use arbiter_state::{InMemoryStore, StoreConfig};
use arbiter_tests::{bundle_version, engine, next_minor, orders_daily_bundle, with_bundle_version};
use arbiter_types::{Request, VerdictKind};
use serde_json::json;

/// The reference bundle's version and, at the next minor version, the
/// reference bundle with `gpt-4o-2024-08-06` no longer pinned.
fn stricter_bundle(dir: &std::path::Path) -> (String, String, std::path::PathBuf) {
    let reference = orders_daily_bundle();
    let components = reference.parent().unwrap().join("components");
    let text = std::fs::read_to_string(&reference).unwrap();
    let old_version = bundle_version(&text).to_owned();
    let new_version = next_minor(&old_version);
    let text =
        with_bundle_version(&text, &new_version).replace("components/", &format!("{}/", components.display())).replace(
            "pinned = [\"claude-sonnet-4-5-20250929\", \"gpt-4o-2024-08-06\"]",
            "pinned = [\"claude-sonnet-4-5-20250929\"]",
        );
    assert!(!text.contains("\"gpt-4o-2024-08-06\"]"));
    let path = dir.join("bundle.toml");
    std::fs::write(&path, text).unwrap();
    (old_version, new_version, path)
}

fn gpt4o(thread: usize, i: u64) -> Request {
    Request::from_json_value(&json!({
        "id": format!("t{thread}-{i}"),
        "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                      "environment": "prod", "run": format!("run-{thread}-{}", i / 1000)},
        "action": {"kind": "llm_request", "model": "gpt-4o-2024-08-06", "prompt_tokens": 1, "max_output_tokens": 1}
    }))
    .unwrap()
}

#[test]
fn swaps_and_rollbacks_under_load_never_mix_or_fail() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine();
    let old = Arc::new(Bundle::load(&engine, &orders_daily_bundle()).unwrap());
    let (old_version, new_version, stricter) = stricter_bundle(dir.path());
    let new = Arc::new(Bundle::load(&engine, &stricter).unwrap());
    let decider = Decider::new(Arc::clone(&old), Arc::new(InMemoryStore::in_memory(StoreConfig::default())));
    let stop = Arc::new(AtomicBool::new(false));
    let (decided, by_new) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|t| {
            let (decider, stop, decided, by_new) =
                (decider.clone(), Arc::clone(&stop), Arc::clone(&decided), Arc::clone(&by_new));
            let (old_version, new_version) = (old_version.clone(), new_version.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let d = decider.decide(&gpt4o(t, i), 1_795_658_400_000);
                    let expected = match d.bundle.version.as_str() {
                        v if v == old_version => (VerdictKind::Allow, vec![]),
                        v if v == new_version => {
                            by_new.fetch_add(1, Ordering::Relaxed);
                            (VerdictKind::Deny, vec!["model_not_pinned"])
                        }
                        other => panic!("unknown bundle version {other}"),
                    };
                    assert_eq!((d.decision, d.codes()), expected, "decision {i} mixes bundles: {d:?}");
                    assert!(d.policies.iter().all(|p| matches!(p.outcome, arbiter_types::PolicyOutcome::Verdict(_))));
                    decided.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    let mut slowest_swap = std::time::Duration::ZERO;
    for round in 0..200 {
        let next = if round % 2 == 0 { &new } else { &old };
        let started = Instant::now();
        decider.activate(Arc::clone(next));
        slowest_swap = slowest_swap.max(started.elapsed());
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.join().expect("a client thread failed");
    }
    let (decided, by_new) = (decided.load(Ordering::Relaxed), by_new.load(Ordering::Relaxed));
    println!("{decided} decisions across 200 swaps, {by_new} by the new bundle; slowest swap {slowest_swap:?}");
    assert!(by_new > 0 && by_new < decided, "both bundles decided");
}
