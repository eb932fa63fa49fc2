//! Cost of one decision through the orders_daily reference bundle,
//! in-process (`cargo bench -p arbiter-tests --bench decide`), and how it
//! grows with a run's length (`-- run_length`), and on Redis against the
//! loopback round trip (`-- redis_round_trips`), and what a rolling-window
//! budget costs as its window fills (`-- rolling_window`).

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arbiter_engine::{Bundle, Capability, Decider, FailMode, Manifest, ManifestPolicy, Scope, digest_of};
use arbiter_state::{
    Commit, InMemoryStore, JournalStore, LlmUsage, OutcomeStatus, RedisConfig, RedisStore, RunKey, StateStore,
    StoreConfig, UsageReport,
};
use arbiter_tests::{
    RedisServer, charge_commit, engine, llm_request, orders_daily_bundle, reference_component, renamed_component, root,
    scratch_dir, single_policy_bundle, tool_call,
};
use arbiter_types::{ActionKind, Charge, ChargeUnit, Request, VerdictKind, Window};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

/// A read of the orders table with `conditions` conditions (40: ~1 KB).
fn query(conditions: usize) -> String {
    format!(
        "select order_id, customer_id, amount, currency, created_at from analytics.orders_daily where {}",
        (0..conditions).map(|i| format!("col_{i} is not null")).collect::<Vec<_>>().join(" and ")
    )
}

/// A warehouse query with about 1 KB of JSON arguments.
fn tool_call_1kb() -> Request {
    let sql = query(40);
    let request = tool_call(
        "bench-1",
        "warehouse.query",
        json!({"sql": sql, "limit": 100, "region": "eu-west-1", "labels": {"ticket": "DQ-1234", "requested_by": "monitor"}}),
    );
    let size = request.to_json()["action"]["arguments"].to_string().len();
    assert!((900..1400).contains(&size), "arguments are {size} bytes");
    request
}

/// Policy evaluation and combination only: nothing is committed.
fn evaluate(c: &mut Criterion) {
    let bundle = Bundle::load(&engine(), &orders_daily_bundle()).unwrap_or_else(|e| panic!("{e}"));
    let state: Arc<dyn StateStore> = Arc::new(InMemoryStore::in_memory(StoreConfig::default()));
    let tool = tool_call_1kb();
    let body = tool.to_json().to_string();
    let llm = llm_request("bench-2", 5200, 1024);
    let mut group = c.benchmark_group("evaluate");
    group.bench_function("tool_call_1kb", |b| b.iter(|| bundle.evaluate(black_box(&tool), 0, &state)));
    group.bench_function("tool_call_1kb_with_parse", |b| {
        b.iter(|| {
            let request = Request::from_json_slice(black_box(body.as_bytes())).unwrap_or_else(|e| panic!("{e}"));
            bundle.evaluate(&request, 0, &state)
        })
    });
    group.bench_function("llm_request", |b| b.iter(|| bundle.evaluate(black_box(&llm), 0, &state)));
    group.finish();
}

/// human-review alone, with the reference bundle's settings, reading
/// queries of three sizes (the largest just under the 4096 bytes it reads):
/// what parsing SQL in the guest costs.
fn read_sql(c: &mut Criterion) {
    let manifest_path = orders_daily_bundle();
    let manifest = Manifest::from_file(&manifest_path).unwrap_or_else(|e| panic!("{e}"));
    let policy =
        manifest.policies.iter().find(|p| p.name == "human-review").unwrap_or_else(|| panic!("no human-review"));
    let component = manifest_path.parent().unwrap_or_else(|| panic!("no parent")).join(&policy.component);
    let settings = serde_json::to_value(&policy.settings).unwrap_or_else(|e| panic!("{e}"));
    let bundle = single_policy_bundle(&engine(), &component, settings, Vec::new(), FailMode::Closed)
        .unwrap_or_else(|e| panic!("{e}"));
    let state: Arc<dyn StateStore> = Arc::new(InMemoryStore::in_memory(StoreConfig::default()));
    let mut group = c.benchmark_group("read_sql");
    for (name, sql) in
        [("44b", "select count(*) from analytics.orders_daily".to_owned()), ("1kb", query(40)), ("4kb", query(165))]
    {
        let request = tool_call("bench-sql", "warehouse.query", json!({ "sql": sql }));
        assert_eq!(bundle.evaluate(&request, 0, &state).decision, VerdictKind::Allow, "{name}");
        group.bench_function(name, |b| b.iter(|| bundle.evaluate(black_box(&request), 0, &state)));
    }
    group.finish();
}

/// Every backend: the journal fsyncs each change; Redis servers (started
/// here, on loopback) fsync their AOF on every write, or once a second.
struct Backends {
    stores: Vec<(&'static str, Arc<dyn StateStore>)>,
    _journal_dir: tempfile::TempDir,
    _redis: [RedisServer; 2],
}

fn backends() -> Backends {
    let journal_dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let redis = [RedisServer::start(), RedisServer::start_with_fsync("everysec")];
    let journal = JournalStore::open(journal_dir.path(), StoreConfig::default()).unwrap_or_else(|e| panic!("{e}"));
    let on_redis = |server: &RedisServer| -> Arc<dyn StateStore> {
        let store = RedisStore::connect(&RedisConfig::new(server.url()), StoreConfig::default());
        Arc::new(store.unwrap_or_else(|e| panic!("{e}")))
    };
    let stores: Vec<(&str, Arc<dyn StateStore>)> = vec![
        ("in_memory", Arc::new(InMemoryStore::in_memory(StoreConfig::default()))),
        ("journal_fsync", Arc::new(journal)),
        ("redis_aof_always", on_redis(&redis[0])),
        ("redis_aof_everysec", on_redis(&redis[1])),
    ];
    Backends { stores, _journal_dir: journal_dir, _redis: redis }
}

/// A tool call with ~1 KB of arguments decided and committed (breaker
/// admission, run history), then its outcome reported, on each backend.
fn decide_tool_call(c: &mut Criterion) {
    let backends = backends();
    let bundle = Arc::new(Bundle::load(&engine(), &orders_daily_bundle()).unwrap_or_else(|e| panic!("{e}")));
    let mut group = c.benchmark_group("decide_tool_call_1kb_with_outcome");
    let next = AtomicU64::new(0);
    let template = tool_call_1kb();
    for (name, state) in &backends.stores {
        let decider = Decider::new(Arc::clone(&bundle), Arc::clone(state));
        group.bench_function(*name, |b| {
            b.iter(|| {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let mut request = template.clone();
                // A run each: the bundle caps tool calls per run.
                (request.id, request.principal.run) = (format!("bench-tool-{n}"), format!("run-{n}"));
                let at = request.timestamp_ms.unwrap_or(0);
                let decision = decider.decide(&request, at);
                assert_eq!(decision.decision, VerdictKind::Allow, "{:?}", decision.reasons);
                decider
                    .report_outcome(&request.id, OutcomeStatus::Success, Some(3), at)
                    .unwrap_or_else(|e| panic!("{e}"));
            })
        });
    }
    group.finish();
}

/// A full decision with charges (reserved atomically on three budgets),
/// then its usage report, which frees the reservation again.
fn decide_with_charges(c: &mut Criterion) {
    let backends = backends();
    let bundle = Arc::new(Bundle::load(&engine(), &orders_daily_bundle()).unwrap_or_else(|e| panic!("{e}")));
    let mut group = c.benchmark_group("decide_llm_with_charges_and_usage");
    let next = AtomicU64::new(0);
    for (name, state) in &backends.stores {
        let (name, state) = (*name, Arc::clone(state));
        let decider = Decider::new(Arc::clone(&bundle), state);
        group.bench_function(name, |b| {
            b.iter(|| {
                let id = format!("bench-{}", next.fetch_add(1, Ordering::Relaxed));
                let decision = decider.decide(&llm_request(&id, 5200, 1024), 0);
                assert_eq!(decision.decision, VerdictKind::Allow);
                decider.report_usage(&id, 0, 0, 0).unwrap_or_else(|e| panic!("{e}"));
            })
        });
    }
    group.finish();
}

/// A `tools/list` answer of `n` tools, as an MCP server gives it.
fn listing(n: usize) -> Request {
    let tools: Vec<_> = (0..n)
        .map(|i| {
            json!({"name": format!("warehouse.tool_{i}"),
                   "description": format!("Tool {i} of the warehouse server: reads partitions, describes tables and reports freshness for the orders pipeline."),
                   "inputSchema": {"type": "object", "properties": {"table": {"type": "string"}, "limit": {"type": "integer"}},
                                   "required": ["table"]},
                   "annotations": {"readOnlyHint": true}})
        })
        .collect();
    let body = json!({"id": "bench-l", "action": {"kind": "tool_listing", "server": "warehouse", "tools": tools},
                      "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                                    "environment": "prod", "run": "run-1"}});
    Request::from_json_value(&body).unwrap_or_else(|e| panic!("{e}"))
}

/// A tool result of 64 KiB of text in 16 content blocks; `secret` puts an
/// AWS key in the middle of one.
fn result_64kb(secret: bool) -> Request {
    let block = |i: usize| {
        let mut text = "orders_daily partition 2026-11-26 arrived with 48211 rows; ".repeat(70);
        text.truncate(4096);
        if secret && i == 8 {
            text.replace_range(2000..2020, "AKIAIOSFODNN7EXAMPLE");
        }
        json!({"type": "text", "text": text})
    };
    let content: Vec<_> = (0..16).map(block).collect();
    let body = json!({"id": "bench-r", "action": {"kind": "tool_result", "tool": "docs.search", "server": "warehouse",
                      "arguments": {"query": "late partitions"}, "result": {"content": content, "isError": false}},
                      "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                                    "environment": "prod", "run": "run-1"}});
    Request::from_json_value(&body).unwrap_or_else(|e| panic!("{e}"))
}

/// The MCP answer side through the reference bundle: a 50-tool listing
/// (tool-scope and tool-pin) and a 64 KiB result (secret-scan). Under
/// `cargo bench`, also prints p50 / p99 of 2,000 evaluations of each.
fn mcp_answers(c: &mut Criterion) {
    let bundle = Bundle::load(&engine(), &orders_daily_bundle()).unwrap_or_else(|e| panic!("{e}"));
    let state: Arc<dyn StateStore> = Arc::new(InMemoryStore::in_memory(StoreConfig::default()));
    let cases = [
        ("listing_50_tools", listing(50)),
        ("result_64kb", result_64kb(false)),
        ("result_64kb_with_key", result_64kb(true)),
    ];
    for (name, request) in &cases {
        let decision = bundle.evaluate(request, 0, &state);
        assert_eq!(decision.decision, VerdictKind::Allow, "{name}: {:?}", decision.reasons);
    }
    let mut group = c.benchmark_group("mcp");
    for (name, request) in &cases {
        group.bench_function(*name, |b| b.iter(|| bundle.evaluate(black_box(request), 0, &state)));
    }
    group.finish();
    if std::env::args().any(|a| a == "--bench") {
        for (name, request) in &cases {
            let mut micros: Vec<u128> = (0..2000)
                .map(|_| {
                    let started = std::time::Instant::now();
                    black_box(bundle.evaluate(request, 0, &state));
                    started.elapsed().as_micros()
                })
                .collect();
            micros.sort_unstable();
            println!("mcp/{name}: p50 {} µs, p99 {} µs (2,000 evaluations)", micros[1000], micros[1980]);
        }
    }
}

/// `n` distinct searches: five of forty pipeline words and a number of
/// their own, as an agent's queries in a long run might read.
fn searches(n: usize) -> Vec<String> {
    const WORDS: [&str; 40] = [
        "orders",
        "daily",
        "schema",
        "change",
        "column",
        "missing",
        "partition",
        "late",
        "arrival",
        "freshness",
        "warehouse",
        "table",
        "rows",
        "count",
        "null",
        "duplicate",
        "key",
        "customer",
        "amount",
        "currency",
        "region",
        "eu",
        "backfill",
        "job",
        "failed",
        "retry",
        "timeout",
        "upstream",
        "source",
        "export",
        "runbook",
        "oncall",
        "alert",
        "threshold",
        "metric",
        "dashboard",
        "owner",
        "contract",
        "version",
        "drift",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    (0..n)
        .map(|i| {
            let words: Vec<&str> = (0..5)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                    WORDS[(seed >> 33) as usize % WORDS.len()]
                })
                .collect();
            format!("{} {i}", words.join(" "))
        })
        .collect()
}

/// A store whose run `run-1` already made `calls` allowed searches.
fn run_of(calls: usize) -> Arc<dyn StateStore> {
    let state = InMemoryStore::in_memory(StoreConfig::default());
    for (n, query) in searches(calls).into_iter().enumerate() {
        let commit = Commit {
            request_id: format!("earlier-{n}"),
            now_ms: n as i64,
            run: RunKey { pipeline: "orders_daily".into(), run: "run-1".into() },
            agent: "monitor".into(),
            team: "data-platform".into(),
            charges: Vec::new(),
            breakers: Vec::new(),
            tool_call: Some(("docs.search".into(), json!({ "query": query }).as_object().cloned().unwrap_or_default())),
            llm: None,
            approval: None,
        };
        state.commit(commit).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e:?}"));
    }
    Arc::new(state)
}

/// A run's next search after 0, 100 and 1,000 allowed ones (the history
/// cap is 1,024), through the whole bench bundle (every policy, limits
/// lifted), through retrieval-thrash alone, as released on contract
/// 0.2.0 (every earlier query copied into the sandbox and compared there)
/// and on 0.3.0 (the host answers `count-similar`), and through tool-storm
/// alone (two `count-tool-calls` a call). Under `cargo bench`,
/// also prints p50 of 2,000 evaluations of each and its ratio to the run's
/// first call.
fn run_length(c: &mut Criterion) {
    orders_daily_bundle();
    let bench = Bundle::load(&engine(), &root().join("examples/bench/bundle.toml")).unwrap_or_else(|e| panic!("{e}"));
    let thrash = |component: &std::path::Path| {
        let settings = json!({"tools": ["docs.search"], "similarity": 0.6, "max_near_duplicates": 2});
        single_policy_bundle(&engine(), component, settings, vec![Capability::History], FailMode::Closed)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let storm = {
        let settings = json!({"max_per_run": 1_000_000_000, "burst": {"calls": 1_000_000_000, "within_seconds": 10}});
        single_policy_bundle(
            &engine(),
            &reference_component("tool-storm"),
            settings,
            vec![Capability::History],
            FailMode::Closed,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let bundles = [
        ("bench_bundle", bench),
        ("thrash_0_2_0", thrash(&root().join("tests/fixtures/contract-0.2.0/retrieval-thrash-0.2.1.wasm"))),
        ("thrash_0_3_0", thrash(&reference_component("retrieval-thrash"))),
        ("tool_storm", storm),
    ];
    let next = tool_call("next", "docs.search", json!({"query": "orders daily partition late arrival runbook"}));
    let runs: Vec<(usize, Arc<dyn StateStore>)> = [0, 100, 1_000].into_iter().map(|n| (n, run_of(n))).collect();
    let mut group = c.benchmark_group("run_length");
    for (name, bundle) in &bundles {
        for (calls, state) in &runs {
            let decision = bundle.evaluate(&next, 2_000, state);
            assert_eq!(decision.decision, VerdictKind::Allow, "{name} after {calls}: {:?}", decision.reasons);
            group.bench_function(format!("{name}/after_{calls}"), |b| {
                b.iter(|| bundle.evaluate(black_box(&next), 2_000, state))
            });
        }
    }
    group.finish();
    if std::env::args().any(|a| a == "--bench") {
        for (name, bundle) in &bundles {
            let p50 = |state: &Arc<dyn StateStore>| {
                p50_micros(|| {
                    let started = Instant::now();
                    black_box(bundle.evaluate(&next, 2_000, state));
                    started.elapsed()
                })
            };
            let first = p50(&runs[0].1);
            for (calls, state) in &runs {
                let median = p50(state);
                println!("run_length/{name}/after_{calls}: p50 {median:.1} µs, {:.2}× the first call", median / first);
            }
        }
    }
}

/// The p50, in µs, of 2,000 runs of `timed` (each returns its own time).
fn p50_micros(mut timed: impl FnMut() -> Duration) -> f64 {
    let mut micros: Vec<f64> = (0..2000).map(|_| timed().as_secs_f64() * 1e6).collect();
    micros.sort_unstable_by(f64::total_cmp);
    micros[1000]
}

/// A decision on Redis against the loopback round trip it is made of: a
/// raw `PING` (the floor), an LLM request with three charges (once its
/// kind is known, and each of a new kind: every read as asked) and a 1 KB
/// tool call, each decided alone (its report made after the clock stops).
/// Under `cargo bench`, also prints each one's p50 of 2,000, the exchanges
/// it took and its ratio to the `PING`, and one replica's throughput
/// against two's.
fn redis_round_trips(c: &mut Criterion) {
    let server = RedisServer::start_with_fsync("everysec");
    let store = Arc::new(
        RedisStore::connect(&RedisConfig::new(server.url()), StoreConfig::default()).unwrap_or_else(|e| panic!("{e}")),
    );
    let bundle = Arc::new(Bundle::load(&engine(), &orders_daily_bundle()).unwrap_or_else(|e| panic!("{e}")));
    let decider = Decider::new(Arc::clone(&bundle), Arc::clone(&store) as Arc<dyn StateStore>);
    let mut ping = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap_or_else(|e| panic!("{e}"));
    ping.set_nodelay(true).unwrap_or_else(|e| panic!("{e}"));
    let mut pong = move || {
        let started = Instant::now();
        let mut answer = [0u8; 7];
        ping.write_all(b"PING\r\n").and_then(|()| ping.read_exact(&mut answer)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&answer, b"+PONG\r\n");
        started.elapsed()
    };
    let (next, decided_exchanges) = (AtomicU64::new(0), AtomicU64::new(0));
    // A decision alone: its time and, counted, its exchanges.
    let decide = |request: &Request| {
        let (exchanges, started) = (store.exchanges(), Instant::now());
        let decision = decider.decide(request, 0);
        let took = started.elapsed();
        decided_exchanges.fetch_add(store.exchanges() - exchanges, Ordering::Relaxed);
        assert_eq!(decision.decision, VerdictKind::Allow, "{:?}", decision.reasons);
        took
    };
    let template = tool_call_1kb();
    let mut llm = || {
        let id = format!("rtt-llm-{}", next.fetch_add(1, Ordering::Relaxed));
        let took = decide(&llm_request(&id, 5200, 1024));
        decider.report_usage(&id, 0, 0, 0).unwrap_or_else(|e| panic!("{e}"));
        took
    };
    // Each of a new kind (its own agent): nothing forecast, every read as
    // asked, as before decision 0019.
    let mut llm_unforecast = || {
        let id = format!("rtt-new-{}", next.fetch_add(1, Ordering::Relaxed));
        let mut request = llm_request(&id, 5200, 1024);
        request.principal.agent = format!("agent-{id}");
        let took = decide(&request);
        decider.report_usage(&id, 0, 0, 0).unwrap_or_else(|e| panic!("{e}"));
        took
    };
    let mut tool = || {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let mut request = template.clone();
        (request.id, request.principal.run) = (format!("rtt-tool-{n}"), format!("rtt-run-{n}"));
        let took = decide(&request);
        decider.report_outcome(&request.id, OutcomeStatus::Success, Some(3), 0).unwrap_or_else(|e| panic!("{e}"));
        took
    };
    // Each kind seen once: what follows is forecast.
    llm();
    tool();
    let mut group = c.benchmark_group("redis_round_trips");
    group.bench_function("ping", |b| b.iter_custom(|iters| (0..iters).map(|_| pong()).sum()));
    group.bench_function("llm_3_charges", |b| b.iter_custom(|iters| (0..iters).map(|_| llm()).sum()));
    group.bench_function("llm_3_charges_unforecast", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| llm_unforecast()).sum())
    });
    group.bench_function("tool_call_1kb", |b| b.iter_custom(|iters| (0..iters).map(|_| tool()).sum()));
    group.finish();
    if std::env::args().any(|a| a == "--bench") {
        let floor = p50_micros(&mut pong);
        println!("redis_round_trips/ping: p50 {floor:.1} µs");
        let cases: [(&str, &mut dyn FnMut() -> Duration); 3] = [
            ("llm_3_charges", &mut llm),
            ("llm_3_charges_unforecast", &mut llm_unforecast),
            ("tool_call_1kb", &mut tool),
        ];
        for (name, case) in cases {
            let before = decided_exchanges.load(Ordering::Relaxed);
            let median = p50_micros(&mut *case);
            let per_decision = (decided_exchanges.load(Ordering::Relaxed) - before) as f64 / 2000.0;
            println!(
                "redis_round_trips/{name}: p50 {median:.1} µs, {per_decision:.2} exchanges, {:.2}× the ping",
                median / floor
            );
        }
        replicas_on_one_redis(&server, &bundle);
    }
}

/// Decisions a second (LLM requests with three charges, each with its
/// usage report) by one replica and by two, each a thread with its own
/// store on the same Redis, for two seconds each (printed: a scaling row).
fn replicas_on_one_redis(server: &RedisServer, bundle: &Arc<Bundle>) {
    let mut rates = Vec::new();
    for replicas in [1, 2] {
        let deadline = Instant::now() + Duration::from_secs(2);
        let decided: u64 = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..replicas)
                .map(|replica| {
                    scope.spawn(move || {
                        let config =
                            RedisConfig { namespace: format!("replicas-{replicas}"), ..RedisConfig::new(server.url()) };
                        let store =
                            RedisStore::connect(&config, StoreConfig::default()).unwrap_or_else(|e| panic!("{e}"));
                        let decider = Decider::new(Arc::clone(bundle), Arc::new(store));
                        let mut n = 0;
                        while Instant::now() < deadline {
                            let id = format!("replica-{replica}-{n}");
                            let decision = decider.decide(&llm_request(&id, 5200, 1024), 0);
                            assert_eq!(decision.decision, VerdictKind::Allow, "{:?}", decision.reasons);
                            decider.report_usage(&id, 0, 0, 0).unwrap_or_else(|e| panic!("{e}"));
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            workers.into_iter().map(|worker| worker.join().unwrap_or_else(|_| panic!("a replica failed"))).sum()
        });
        let rate = decided as f64 / 2.0;
        rates.push(rate);
        println!("redis_round_trips/replicas_{replicas}: {rate:.0} decisions/s, {:.2}× one replica", rate / rates[0]);
    }
}

/// A Slack message of `bytes` bytes of text from the monitor.
fn message_of(bytes: usize) -> Request {
    let mut text =
        "orders_daily freshness check: partition 2026-11-26 arrived late, 48211 rows. ".repeat(bytes / 70 + 1);
    text.truncate(bytes);
    tool_call("bench-m", "slack.post_message", json!({"channel": "#data-alerts", "text": text}))
}

/// A store holding `open` unreconciled reservations (on a budget of their
/// own, so the decision's budgets stay clear).
fn with_open_reservations(open: usize) -> Arc<dyn StateStore> {
    let state = InMemoryStore::in_memory(StoreConfig::default());
    for n in 0..open {
        let charge = Charge {
            scope: "load:held".into(),
            window: Window::Run,
            unit: ChargeUnit::Tokens,
            amount: 1,
            limit: u64::MAX,
        };
        let commit = Commit {
            run: RunKey { pipeline: "load".into(), run: format!("run-{n}") },
            agent: "load".into(),
            team: "load".into(),
            ..charge_commit(format!("held-{n}"), 0, charge)
        };
        state.commit(commit).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e:?}"));
    }
    Arc::new(state)
}

/// The reference bundle's tool-scope `copies` times, each a component of
/// its own name (`tool-sco01`…, as long as `tool-scope`); the first
/// `judging` copies judge tool calls, the others only LLM requests (so a
/// tool call passes them by: scope selection).
fn tool_scope_copies(copies: usize, judging: usize) -> Bundle {
    let path = orders_daily_bundle();
    let manifest = Manifest::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let original = manifest.policies.iter().find(|p| p.name == "tool-scope").cloned().expect("tool-scope");
    let base = path.parent().expect("the manifest's folder");
    let bytes = std::fs::read(base.join(&original.component)).unwrap_or_else(|e| panic!("tool-scope: {e}"));
    let dir = scratch_dir().join("policy-count");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let policies = (1..=copies)
        .map(|n| {
            let name = format!("tool-sco{n:02}");
            let renamed = renamed_component(&bytes, "tool-scope", &name);
            let component = dir.join(format!("{name}.wasm"));
            std::fs::write(&component, &renamed).unwrap_or_else(|e| panic!("{}: {e}", component.display()));
            let kind = if n <= judging { ActionKind::ToolCall } else { ActionKind::LlmRequest };
            let scope = Scope { actions: Some(vec![kind]), ..original.scope.clone() };
            let sha256 = digest_of(&renamed).trim_start_matches("sha256:").to_owned();
            ManifestPolicy { name, component, sha256, scope, ..original.clone() }
        })
        .collect();
    let manifest = Manifest { policies, ..manifest };
    Bundle::from_manifest(&engine(), manifest, &dir, &path).unwrap_or_else(|e| panic!("{e}"))
}

/// Scaling rows (docs/benchmarks.md): a decision's cost against the size
/// of a free-text argument (100 B … 64 KiB, evaluated through the
/// reference bundle) and against the unreconciled reservations the store
/// holds (0 … 100k; an LLM request decided and its usage reported), and
/// against the number of policies (1, 9, 50 copies of tool-scope judging
/// the 1 KB tool call; and 50 of which one judges it). Under `cargo
/// bench`, also prints each one's p50 of 2,000 and its ratio to the
/// smallest case.
fn scaling(c: &mut Criterion) {
    let bundle = Arc::new(Bundle::load(&engine(), &orders_daily_bundle()).unwrap_or_else(|e| panic!("{e}")));
    let counted: Vec<(String, Bundle)> = [(1, 1), (9, 9), (50, 50), (50, 1)]
        .into_iter()
        .map(|(copies, judging)| (format!("policies_{copies}_judging_{judging}"), tool_scope_copies(copies, judging)))
        .collect();
    let tool = tool_call_1kb();
    let state: Arc<dyn StateStore> = Arc::new(InMemoryStore::in_memory(StoreConfig::default()));
    let messages: Vec<(usize, Request)> =
        [100, 1 << 10, 8 << 10, 64 << 10].into_iter().map(|n| (n, message_of(n))).collect();
    let held: Vec<(usize, Decider)> = [0, 1_000, 100_000]
        .into_iter()
        .map(|n| (n, Decider::new(Arc::clone(&bundle), with_open_reservations(n))))
        .collect();
    let next = AtomicU64::new(0);
    let llm = |decider: &Decider| {
        let id = format!("scale-{}", next.fetch_add(1, Ordering::Relaxed));
        let started = Instant::now();
        let decision = decider.decide(&llm_request(&id, 5200, 1024), 0);
        decider.report_usage(&id, 0, 0, 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decision.decision, VerdictKind::Allow, "{:?}", decision.reasons);
        started.elapsed()
    };
    let evaluate_by = |bundle: &Bundle, request: &Request| {
        let started = Instant::now();
        let decision = bundle.evaluate(request, 0, &state);
        assert_eq!(decision.decision, VerdictKind::Allow, "{:?}", decision.reasons);
        started.elapsed()
    };
    let evaluate = |request: &Request| evaluate_by(&bundle, request);
    let mut group = c.benchmark_group("scaling");
    for (bytes, request) in &messages {
        group.bench_function(format!("argument_{bytes}_bytes"), |b| b.iter(|| evaluate(black_box(request))));
    }
    for (open, decider) in &held {
        group.bench_function(format!("open_reservations_{open}"), |b| b.iter(|| llm(decider)));
    }
    for (name, counted) in &counted {
        group.bench_function(name, |b| b.iter(|| evaluate_by(counted, black_box(&tool))));
    }
    group.finish();
    if std::env::args().any(|a| a == "--bench") {
        let first = p50_micros(|| evaluate(&messages[0].1));
        for (bytes, request) in &messages {
            let median = p50_micros(|| evaluate(request));
            println!("scaling/argument_{bytes}_bytes: p50 {median:.1} µs, {:.2}× 100 B", median / first);
        }
        let first = p50_micros(|| llm(&held[0].1));
        for (open, decider) in &held {
            let median = p50_micros(|| llm(decider));
            println!("scaling/open_reservations_{open}: p50 {median:.1} µs, {:.2}× none", median / first);
        }
        let first = p50_micros(|| evaluate_by(&counted[0].1, &tool));
        for (name, counted) in &counted {
            let median = p50_micros(|| evaluate_by(counted, &tool));
            println!("scaling/{name}: p50 {median:.1} µs, {:.2}× one policy", median / first);
        }
    }
}

/// A rolling-window budget holding `held` bookings when a decision reads
/// and books it: a series of bookings `window / held` apart, so each one
/// booked pushes one out and the window stays at `held` (one budget check
/// and one booking a step: what a decision's budget costs the store). Each
/// is an LLM request's, reconciled by its usage report after the clock
/// stops, as token-budget's are: no reservation is left open.
struct RollingWindow {
    store: Arc<dyn StateStore>,
    spacing_ms: i64,
    now_ms: i64,
}

const ROLLING_BENCH_SECS: u32 = 100;
const ROLLING_BENCH_WINDOW: Window = Window::RollingSeconds(ROLLING_BENCH_SECS);

impl RollingWindow {
    fn holding(store: Arc<dyn StateStore>, held: usize) -> Self {
        let spacing_ms = i64::from(ROLLING_BENCH_SECS) * 1000 / i64::try_from(held).unwrap_or(i64::MAX).max(1);
        let mut window = RollingWindow { store, spacing_ms, now_ms: 0 };
        for _ in 0..held {
            window.step();
        }
        window
    }

    /// Reads the window and books one token on it; its time.
    fn step(&mut self) -> Duration {
        self.now_ms += self.spacing_ms;
        let charge = Charge {
            scope: "team:t".into(),
            window: ROLLING_BENCH_WINDOW,
            unit: ChargeUnit::Tokens,
            amount: 1,
            limit: u64::MAX,
        };
        let commit = Commit {
            llm: Some(LlmUsage { model: "m".into(), prompt_tokens: 1, output_tokens: 0 }),
            ..charge_commit(format!("roll-{}", self.now_ms), self.now_ms, charge)
        };
        let request_id = commit.request_id.clone();
        let started = Instant::now();
        let used = self.store.used("team:t", ROLLING_BENCH_WINDOW, ChargeUnit::Tokens, self.now_ms);
        black_box(used.unwrap_or_else(|e| panic!("{e}")));
        self.store.commit(commit).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e:?}"));
        let took = started.elapsed();
        let usage = UsageReport { request_id, now_ms: self.now_ms, prompt_tokens: 1, output_tokens: 0 };
        self.store.reconcile(usage).unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("{e:?}"));
        took
    }
}

/// A rolling-window budget's cost against the bookings its window holds
/// (1 … 100k; in memory and on Redis). Under `cargo bench`, also prints
/// each one's p50 of 2,000 and its ratio to one booking; otherwise (a
/// smoke run) holds at most 100.
fn rolling_window(c: &mut Criterion) {
    let timed = std::env::args().any(|a| a == "--bench");
    let sizes: &[usize] = if timed { &[1, 1_000, 10_000, 100_000] } else { &[1, 100] };
    let server = RedisServer::start();
    let mut group = c.benchmark_group("rolling_window");
    for backend in ["memory", "redis"] {
        let mut windows: Vec<(usize, RollingWindow)> = sizes
            .iter()
            .map(|&held| {
                let store: Arc<dyn StateStore> = match backend {
                    "memory" => Arc::new(InMemoryStore::in_memory(StoreConfig::default())),
                    _ => {
                        let config =
                            RedisConfig { namespace: format!("rolling-{held}"), ..RedisConfig::new(server.url()) };
                        Arc::new(RedisStore::connect(&config, StoreConfig::default()).unwrap_or_else(|e| panic!("{e}")))
                    }
                };
                (held, RollingWindow::holding(store, held))
            })
            .collect();
        for (held, window) in &mut windows {
            group.bench_function(format!("{backend}_holding_{held}"), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| window.step()).sum())
            });
        }
        if timed {
            let first = p50_micros(|| windows[0].1.step());
            for (held, window) in &mut windows {
                let median = p50_micros(|| window.step());
                println!(
                    "rolling_window/{backend}_holding_{held}: p50 {median:.1} µs, {:.2}× one booking",
                    median / first
                );
            }
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    evaluate,
    read_sql,
    decide_with_charges,
    decide_tool_call,
    mcp_answers,
    run_length,
    redis_round_trips,
    scaling,
    rolling_window
);
criterion_main!(benches);
