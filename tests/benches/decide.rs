//! Cost of one decision through the orders_daily reference bundle,
//! in-process (`cargo bench -p arbiter-tests --bench decide`).

use std::hint::black_box;

use arbiter_engine::{Bundle, Decider};
use arbiter_tests::{engine, orders_daily_bundle, tool_call};
use arbiter_types::Request;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

/// A warehouse query with about 1 KB of JSON arguments.
fn tool_call_1kb() -> Request {
    let sql = format!(
        "select order_id, customer_id, amount, currency, created_at from analytics.orders_daily where {}",
        (0..40).map(|i| format!("col_{i} is not null")).collect::<Vec<_>>().join(" and ")
    );
    let request = tool_call(
        "bench-1",
        "warehouse.query",
        json!({"sql": sql, "limit": 100, "region": "eu-west-1",
        "labels": {"ticket": "DQ-1234", "requested_by": "monitor"}}),
    );
    let size = request.to_json()["action"]["arguments"].to_string().len();
    assert!((900..1400).contains(&size), "arguments are {size} bytes");
    request
}

fn llm_request() -> Request {
    Request::from_json_value(&json!({
        "id": "bench-2",
        "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                      "environment": "prod", "run": "run-1"},
        "action": {"kind": "llm_request", "model": "claude-sonnet-4-5-20250929",
                   "prompt_tokens": 5200, "max_output_tokens": 1024},
        "timestamp": "2026-11-26T02:00:00Z"
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn decide(c: &mut Criterion) {
    let engine = engine();
    let decider = Decider::in_memory(Bundle::load(&engine, &orders_daily_bundle()).unwrap_or_else(|e| panic!("{e}")));
    let tool = tool_call_1kb();
    let body = tool.to_json().to_string();
    let llm = llm_request();
    let mut group = c.benchmark_group("orders_daily");
    group.bench_function("tool_call_1kb", |b| b.iter(|| decider.decide(black_box(&tool), 0)));
    group.bench_function("tool_call_1kb_with_parse", |b| {
        b.iter(|| {
            let request = Request::from_json_slice(black_box(body.as_bytes())).unwrap_or_else(|e| panic!("{e}"));
            decider.decide(&request, 0)
        })
    });
    group.bench_function("llm_request", |b| b.iter(|| decider.decide(black_box(&llm), 0)));
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
