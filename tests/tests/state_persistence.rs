//! The embedded journal store survives restarts (budgets, breakers,
//! history, escalations, the tool registry) and stops mid-snapshot, loses
//! nothing acknowledged to snapshots taken while writers commit, and
//! refuses damaged or foreign files with a clear error rather than
//! starting empty.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arbiter_engine::{Bundle, Decider};
use arbiter_state::{
    Escalation, EscalationRefused, EscalationStatus, JournalStore, ListedToolInput, ListingRefused, OutcomeStatus,
    Resolution, StateError, StateStore, StoreConfig,
};
use arbiter_tests::{charge_commit, engine, orders_daily_bundle, tool_call};
use arbiter_types::{Charge, ChargeUnit, Request, VerdictKind, Window};
use serde_json::json;

const T0: i64 = 1_795_658_400_000;

fn config() -> StoreConfig {
    // Snapshot every few operations, so reopening reads a snapshot and a journal.
    StoreConfig { snapshot_every: 4, ..StoreConfig::default() }
}

fn decider(dir: &Path) -> Decider {
    let bundle = Bundle::load(&engine(), &orders_daily_bundle()).unwrap_or_else(|e| panic!("{e}"));
    let state: Arc<dyn StateStore> = Arc::new(JournalStore::open(dir, config()).unwrap_or_else(|e| panic!("{e}")));
    Decider::new(Arc::new(bundle), state)
}

fn llm(id: &str, prompt: u64) -> Request {
    Request::from_json_value(&json!({
        "id": id,
        "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform",
                      "environment": "prod", "run": "r1"},
        "action": {"kind": "llm_request", "model": "claude-sonnet-4-5-20250929",
                   "prompt_tokens": prompt, "max_output_tokens": 1000},
        "timestamp": "2026-11-26T02:00:00Z"
    }))
    .unwrap()
}

fn used(decider: &Decider) -> u64 {
    decider.state().used("run:orders_daily/r1", Window::Run, ChargeUnit::Tokens, T0 + 10_000).unwrap()
}

/// Allowed LLM requests, a breaker opened by failures, and tool calls in
/// the run's history, written by one host.
fn populate(dir: &Path) {
    let decider = decider(dir);
    assert_eq!(decider.decide(&llm("l1", 20_000), T0).decision, VerdictKind::Allow);
    decider.report_usage("l1", 20_000, 500, T0 + 1).unwrap();
    assert_eq!(decider.decide(&llm("l2", 10_000), T0 + 2).decision, VerdictKind::Allow);
    for i in 0..5 {
        let call = tool_call(&format!("q{i}"), "warehouse.query", json!({"sql": "select 1"}));
        assert_eq!(decider.decide(&call, T0).decision, VerdictKind::Allow);
        decider.report_outcome(&format!("q{i}"), OutcomeStatus::Failure, None, T0 + 100).unwrap();
    }
    assert_eq!(used(&decider), 20_500 + 11_000);
}

#[test]
fn a_restarted_host_continues_where_it_was() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let decider = decider(dir.path());
    assert_eq!(used(&decider), 31_500, "budgets kept");
    // The unreconciled reservation is still open for its usage report.
    decider.report_usage("l2", 10_000, 200, T0 + 3).unwrap();
    assert_eq!(used(&decider), 20_500 + 10_200);
    assert!(decider.report_usage("l1", 1, 1, T0 + 4).is_err(), "an already reconciled request stays reconciled");
    // The breaker opened by the failures is still open.
    let call = tool_call("q9", "warehouse.query", json!({"sql": "select 2"}));
    let denied = decider.decide(&call, T0);
    assert_eq!(denied.codes(), ["circuit_open"]);
    // History kept: 5 tool calls already in the run; 3 more make a burst of 8.
    for i in 0..3 {
        let docs = tool_call(&format!("d{i}"), "docs.search", json!({"query": format!("topic {i}")}));
        assert_eq!(decider.decide(&docs, T0).decision, VerdictKind::Allow, "d{i}");
    }
    let storm = tool_call("d9", "docs.search", json!({"query": "another"}));
    assert_eq!(decider.decide(&storm, T0).codes(), ["tool_storm"]);
}

#[test]
fn a_torn_last_line_is_dropped_and_the_rest_kept() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let mut journal = std::fs::OpenOptions::new().append(true).open(dir.path().join("journal.log")).unwrap();
    journal.write_all(b"99 0123456789abcdef {\"op\":\"usa").unwrap();
    drop(journal);
    assert_eq!(used(&decider(dir.path())), 31_500);
}

fn open_err(dir: &Path) -> String {
    match JournalStore::open(dir, config()) {
        Ok(_) => panic!("a damaged store opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn corrupt_or_foreign_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path());
    let journal = dir.path().join("journal.log");
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.lines().count() >= 2, "{text}");

    // One flipped character inside an operation.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[1] = lines[1].replacen("\"now_ms\":", "\"now_ms\":1", 1);
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    let err = open_err(dir.path());
    assert!(err.contains("corrupt at line 2") && err.contains("checksum"), "{err}");

    // A file from another format version.
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[0] = lines[0].replace("\"version\":1", "\"version\":9");
    std::fs::write(&journal, lines.join("\n") + "\n").unwrap();
    let err = open_err(dir.path());
    assert!(err.contains("arbiter-state v9") && err.contains("reads format arbiter-state v1"), "{err}");

    // A damaged snapshot.
    std::fs::write(&journal, &text).unwrap();
    let snapshot = dir.path().join("snapshot.json");
    let snap = std::fs::read_to_string(&snapshot).unwrap();
    std::fs::write(&snapshot, snap.replacen("{\"seq\"", "{\"seq\"x", 1)).unwrap();
    let err = open_err(dir.path());
    assert!(err.contains("snapshot.json is corrupt at line 2"), "{err}");
    std::fs::write(&snapshot, snap).unwrap();
    JournalStore::open(dir.path(), config()).unwrap();

    // Something that is not a state file at all.
    std::fs::write(&journal, "hello\n").unwrap();
    let err = open_err(dir.path());
    assert!(err.contains("not an arbiter state header"), "{err}");
    assert!(matches!(JournalStore::open(dir.path(), config()), Err(StateError::Corrupt { .. })));
}

fn pending(id: &str) -> Escalation {
    Escalation {
        id: id.into(),
        principal: "p/a".into(),
        request_id: format!("req-{id}"),
        fingerprint: "fp".into(),
        approvers: vec!["oncall".into()],
        summary: "drop table tmp".into(),
        reasons: vec![],
        created_ms: T0,
        expires_ms: T0 + 3_600_000,
        status: EscalationStatus::Pending,
    }
}

#[test]
fn escalations_keep_their_bounds_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let store = JournalStore::open(dir.path(), config()).unwrap();
    for i in 0..5 {
        store.open_escalation(pending(&format!("e{i}"))).unwrap().unwrap();
    }
    let approve = Resolution { escalation_id: "e0".into(), approve: true, by: "alice".into(), now_ms: T0 + 1 };
    store.resolve_escalation(approve).unwrap().unwrap();
    drop(store);

    // A limit lowered since the opens were journaled: the journal still
    // replays (they were accepted then), and the new limit holds for new ones.
    let lowered = StoreConfig { max_pending_per_principal: 3, ..config() };
    let store = JournalStore::open(dir.path(), lowered).unwrap();
    assert_eq!(store.escalations().unwrap().len(), 5);
    let refused = store.open_escalation(pending("e5")).unwrap();
    assert_eq!(refused, Err(EscalationRefused::TooManyPending { principal: "p/a".into(), limit: 3 }));
    // Re-sent after the restart, the approved one stays approved.
    store.open_escalation(pending("e0")).unwrap().unwrap();
    assert!(matches!(store.escalation("e0").unwrap().unwrap().status, EscalationStatus::Approved { .. }));
}

fn tool(name: &str, digest: &str) -> ListedToolInput {
    ListedToolInput { name: name.into(), digest: digest.into(), definition: json!({"name": name}).to_string() }
}

#[test]
fn the_tool_registry_survives_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = ["a", "b", "c"].map(str::to_owned).to_vec();
    let store = JournalStore::open(dir.path(), config()).unwrap();
    // More listings than snapshot_every: the reopened store reads a
    // snapshot, then replays the journal after it.
    let listings: [(&str, Vec<ListedToolInput>); 6] = [
        ("s1", vec![tool("a", "d1"), tool("b", "d1")]),
        ("s2", vec![tool("a", "x1")]),
        ("s1", vec![tool("a", "d2"), tool("b", "d1")]),
        ("s1", vec![tool("b", "d1")]),
        ("s2", vec![tool("a", "x1"), tool("c", "x1")]),
        ("s1", vec![tool("a", "d3"), tool("b", "d1"), tool("c", "d1")]),
    ];
    for (i, (server, tools)) in listings.iter().enumerate() {
        store.record_listing(server, tools, T0 + i as i64).unwrap().unwrap();
    }
    let before = [store.tool_views("s1", &names).unwrap(), store.tool_views("s2", &names).unwrap()];
    assert_eq!(before[0][0].first.as_ref().map(|f| f.digest.as_str()), Some("d1"));
    assert_eq!(before[0][0].listed_by, ["s1", "s2"]);
    drop(store);
    assert!(dir.path().join("snapshot.json").exists());

    // Lower limits since: what was accepted still replays, and the new
    // bound holds for new listings.
    let lowered = StoreConfig { max_tools_per_server: 2, max_tool_servers: 1, ..config() };
    let store = JournalStore::open(dir.path(), lowered).unwrap();
    let after = [store.tool_views("s1", &names).unwrap(), store.tool_views("s2", &names).unwrap()];
    assert_eq!(after, before, "the registry is the same after a restart");
    assert_eq!(
        store.record_listing("s3", &[tool("a", "y")], T0 + 9).unwrap(),
        Err(ListingRefused::TooManyServers { limit: 1 })
    );
    // Re-listed unchanged after the restart: still nothing to write.
    let journal = dir.path().join("journal.log");
    let length = std::fs::metadata(&journal).unwrap().len();
    store.record_listing("s2", &listings[4].1, T0 + 10).unwrap().unwrap();
    assert_eq!(std::fs::metadata(&journal).unwrap().len(), length);
}

#[test]
fn a_server_changing_its_listing_on_every_request_keeps_the_journal_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let flapping = |i: i64| {
        let definition = json!({"name": "big", "description": "x".repeat(1_000_000)}).to_string();
        [ListedToolInput { name: "big".into(), digest: format!("d{}", i % 2), definition }]
    };
    let store = JournalStore::open(dir.path(), StoreConfig::default()).unwrap();
    for i in 0..100 {
        store.record_listing("flapping", &flapping(i), T0 + i).unwrap().unwrap();
    }
    // 100 MB journaled, far fewer operations than snapshot_every: the
    // journal is cut at 64 MiB all the same.
    let journal = std::fs::metadata(dir.path().join("journal.log")).unwrap().len();
    assert!(journal < 65 << 20, "the journal holds {journal} bytes");
    let names = ["big".to_owned()];
    let before = store.tool_views("flapping", &names).unwrap();
    drop(store);
    let after = JournalStore::open(dir.path(), StoreConfig::default()).unwrap().tool_views("flapping", &names).unwrap();
    assert_eq!(after, before);
    assert_eq!(after[0].current.as_ref().map(|c| c.digest.as_str()), Some("d1"));
    assert_eq!(after[0].first.as_ref().map(|f| (f.digest.as_str(), f.at_ms)), Some(("d0", T0)));
}

/// One token on the run budget these tests read.
fn one_token() -> Charge {
    Charge { scope: "run:p/r".into(), window: Window::Run, unit: ChargeUnit::Tokens, amount: 1, limit: u64::MAX }
}

/// `n` one-token charges on one run budget, each its own request.
fn charge_tokens(store: &dyn StateStore, ids: std::ops::Range<usize>) {
    for n in ids {
        store.commit(charge_commit(format!("c{n}"), T0, one_token())).unwrap().unwrap();
    }
}

fn tokens_charged(dir: &Path, config: StoreConfig) -> u64 {
    let store = JournalStore::open(dir, config).unwrap_or_else(|e| panic!("{e}"));
    store.used("run:p/r", Window::Run, ChargeUnit::Tokens, T0).unwrap()
}

#[test]
fn snapshots_taken_while_writers_commit_lose_no_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { snapshot_every: 16, ..StoreConfig::default() };
    let store = JournalStore::open(dir.path(), config).unwrap();
    std::thread::scope(|scope| {
        for writer in 0..4 {
            let store = &store;
            scope.spawn(move || charge_tokens(store, writer * 250..(writer + 1) * 250));
        }
    });
    assert_eq!(store.used("run:p/r", Window::Run, ChargeUnit::Tokens, T0).unwrap(), 1_000);
    drop(store);
    assert!(!dir.path().join("journal.next.log").exists(), "every snapshot was put in place");
    let journal = std::fs::read_to_string(dir.path().join("journal.log")).unwrap();
    assert!(journal.lines().next().is_some_and(|header| header.contains(r#""follows":"#)), "a snapshot's journal");
    assert_eq!(tokens_charged(dir.path(), config), 1_000);
}

/// The lines of a journal written by one store: its header, then one line
/// per operation.
fn journal_lines(ops: usize) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    charge_tokens(&JournalStore::open(dir.path(), StoreConfig::default()).unwrap(), 0..ops);
    let text = std::fs::read_to_string(dir.path().join("journal.log")).unwrap();
    text.lines().map(|line| format!("{line}\n")).collect()
}

/// A state directory as a stop between a snapshot's start and its end
/// leaves it: the journal before (`first`) and the one after (`next`).
fn interrupted(first: &[String], next: &[String]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("journal.log"), first.concat()).unwrap();
    std::fs::write(dir.path().join("journal.next.log"), next.concat()).unwrap();
    dir
}

#[test]
fn a_stop_before_a_snapshot_was_in_place_keeps_both_journals() {
    let lines = journal_lines(10);
    let ops = &lines[1..];
    // The header a snapshot at operation 5 gives the journal it starts.
    let follows_5 = [lines[0].replacen('}', r#","follows":5}"#, 1)];
    let config = StoreConfig::default();
    let dir = interrupted(&lines[..6], &[&follows_5[..], &ops[5..]].concat());
    assert_eq!(tokens_charged(dir.path(), config), 10, "both journals read, one after the other");
    assert!(!dir.path().join("journal.next.log").exists(), "turned back into one journal");
    assert_eq!(tokens_charged(dir.path(), config), 10, "and kept");

    // The first journal's tail never reached the disk (torn): nothing after
    // it was acknowledged, so the next journal is skipped, not an error,
    // whatever it holds.
    let mut torn = lines[..5].to_vec();
    torn.push(lines[5][..20].to_owned());
    let garbage = ["999 0000000000000000 {}\n".to_owned()];
    let dir = interrupted(&torn, &[&follows_5[..], &ops[5..], &garbage[..]].concat());
    assert_eq!(tokens_charged(dir.path(), config), 4);

    // A gap inside the next journal is damage, named.
    let skipping = [&follows_5[..], &ops[5..6], &ops[7..]].concat();
    let dir = interrupted(&lines[..6], &skipping);
    let err = JournalStore::open(dir.path(), config).map(|_| ()).unwrap_err().to_string();
    assert!(
        err.contains("journal.next.log is corrupt at line 3") && err.contains("sequence jumps from 6 to 8"),
        "{err}"
    );
}

#[test]
fn a_snapshot_that_cannot_be_put_in_place_stops_the_store_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { snapshot_every: 4, ..StoreConfig::default() };
    let store = JournalStore::open(dir.path(), config).unwrap();
    // A directory in the snapshot's place: its rename is refused.
    std::fs::create_dir_all(dir.path().join("snapshot.json").join("in-the-way")).unwrap();
    charge_tokens(&store, 0..3);
    let commit =
        |n: usize| store.commit(charge_commit(format!("c{n}"), T0, one_token())).map(|_| ()).unwrap_err().to_string();
    let failed = commit(3);
    assert!(failed.contains("cannot rename state file") && failed.contains("snapshot.json"), "{failed}");
    let after = commit(4);
    assert!(after.contains("state store stopped") && after.contains("snapshot.json"), "{after}");
    let read = store.used("run:p/r", Window::Run, ChargeUnit::Tokens, T0).map(|_| ()).unwrap_err();
    assert!(matches!(read, StateError::Stopped(_)), "reads stop too: {read}");
    drop(store);

    // Restarted once the cause is gone: every acknowledged change is there,
    // and the one whose snapshot failed, written before it, once.
    std::fs::remove_dir_all(dir.path().join("snapshot.json")).unwrap();
    assert_eq!(tokens_charged(dir.path(), config), 4);
    assert!(!dir.path().join("journal.next.log").exists());
    assert_eq!(tokens_charged(dir.path(), config), 4);
}
