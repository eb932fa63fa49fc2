//! What it costs to get a bundle serving and to change it
//! (`cargo bench -p arbiter-tests --bench lifecycle`): one policy alone,
//! loading the reference bundle with its compiled components cached (a
//! restart) and from scratch (a first deploy), and swapping bundles under a
//! decider.

use std::hint::black_box;
use std::sync::Arc;

use arbiter_engine::{Bundle, Decider, EngineConfig, FailMode, PolicyEngine};
use arbiter_state::{InMemoryStore, StateStore, StoreConfig};
use arbiter_tests::{engine, orders_daily_bundle, root, single_policy_bundle, tool_call};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

/// One policy (tool-scope) deciding one tool call.
fn one_policy(c: &mut Criterion) {
    orders_daily_bundle(); // builds the components
    let component = root().join("examples/orders_daily/components/tool-scope.wasm");
    let settings = json!({"rules": [{"pipeline": "orders_daily", "agent": "monitor", "tools": ["warehouse.query"]}]});
    let bundle = single_policy_bundle(&engine(), &component, settings, vec![], FailMode::Closed)
        .unwrap_or_else(|e| panic!("{e}"));
    let state: Arc<dyn StateStore> = Arc::new(InMemoryStore::in_memory(StoreConfig::default()));
    let request = tool_call("one", "warehouse.query", json!({"sql": "select 1"}));
    c.bench_function("one_policy_tool_scope", |b| b.iter(|| bundle.evaluate(black_box(&request), 0, &state)));
}

fn bundle_load(c: &mut Criterion) {
    let manifest = orders_daily_bundle();
    let cached = engine();
    Bundle::load(&cached, &manifest).unwrap_or_else(|e| panic!("{e}")); // warms the cache
    let mut group = c.benchmark_group("load_reference_bundle_9_policies");
    group.sample_size(10);
    group.bench_function("compiled_components_cached", |b| {
        b.iter(|| Bundle::load(&cached, &manifest).unwrap_or_else(|e| panic!("{e}")))
    });
    let uncached = PolicyEngine::new(EngineConfig { cache_dir: None, ..EngineConfig::default() })
        .unwrap_or_else(|e| panic!("{e}"));
    group.bench_function("from_scratch", |b| {
        b.iter(|| Bundle::load(&uncached, &manifest).unwrap_or_else(|e| panic!("{e}")))
    });
    group.finish();
}

/// Activating a loaded bundle while the decider serves.
fn hot_swap(c: &mut Criterion) {
    let engine = engine();
    let manifest = orders_daily_bundle();
    let bundles = [(); 2].map(|()| Arc::new(Bundle::load(&engine, &manifest).unwrap_or_else(|e| panic!("{e}"))));
    let decider = Decider::new(Arc::clone(&bundles[0]), Arc::new(InMemoryStore::in_memory(StoreConfig::default())));
    let mut next = 1;
    c.bench_function("hot_swap", |b| {
        b.iter(|| {
            next ^= 1;
            decider.activate(Arc::clone(&bundles[next]))
        })
    });
}

criterion_group!(benches, one_policy, bundle_load, hot_swap);
criterion_main!(benches);
