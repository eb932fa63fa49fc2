//! What scanning one 64 KB tool result costs (the issue's budget), clean
//! and with a key in it, natively.

use arbiter_sdk::Policy;
use arbiter_sdk::testing::{RequestBuilder, policy_from_json};
use criterion::{Criterion, criterion_group, criterion_main};
use secret_scan::SecretScan;
use serde_json::json;

/// 64 KB of log-like text: words, numbers, punctuation, near-misses.
fn text_64k(with_key: bool) -> String {
    let line = "2026-11-26T02:00:01Z INFO task-runner risk-check ok rows=4711 bearer of news sk-x AKIA ghp \n";
    let mut text = line.repeat(64 * 1024 / line.len() + 1);
    text.truncate(64 * 1024);
    if with_key {
        text.replace_range(32_000..32_020, "AKIAIOSFODNN7EXAMPLE");
    }
    text
}

fn bench(c: &mut Criterion) {
    let policy: SecretScan = policy_from_json(r#"{"markers": ["patient-id:"]}"#).unwrap();
    for (name, with_key) in [("scan_64k_result_clean", false), ("scan_64k_result_one_key", true)] {
        let request = RequestBuilder::tool_call("docs.fetch")
            .server("docs")
            .result(json!({"content": [{"type": "text", "text": text_64k(with_key)}], "isError": false}))
            .build();
        c.bench_function(name, |b| b.iter(|| policy.evaluate(std::hint::black_box(&request))));
    }
    // A result of many small strings: 4000 content blocks, a key split
    // across each pair.
    let chunks: Vec<_> = (0..4000)
        .map(|i| json!({"type": "text", "text": if i % 2 == 0 { "AKIAIOSF" } else { "ODNN7EXAMPLE" }}))
        .collect();
    let request = RequestBuilder::tool_call("docs.fetch").server("docs").result(json!({"content": chunks})).build();
    c.bench_function("scan_4000_blocks", |b| b.iter(|| policy.evaluate(std::hint::black_box(&request))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
