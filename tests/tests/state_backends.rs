//! The three backends against each other, operation by operation, with
//! Redis on a real `redis-server`: the same answers for rolling, calendar
//! and run windows, reconciliation, spend, breakers and history; the same
//! bounds (an escalation never reopened, pending escalations capped, a
//! report taken once); the tool registry alike (first digests kept,
//! shadowing, every bound all or nothing, hostile names and sizes, an
//! unchanged listing written nowhere); and what two replicas do at once on
//! Redis is never lost or over the limit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use arbiter_state::{
    ApprovalClaim, Commit, CommitRefused, Escalation, EscalationRefused, EscalationStatus, InMemoryStore, JournalStore,
    ListedToolInput, ListingRefused, LlmUsage, Mention, MentionQuery, Named, OutcomeRejected, OutcomeReport,
    OutcomeStatus, RedisConfig, RedisStore, Resolution, RunKey, SimilarQuery, StateStore, StoreConfig, UsageRejected,
    UsageReport,
};
use arbiter_tests::RedisServer;
use arbiter_text::TokenSet;
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

/// Runs `script` on a fresh store of every backend with `config`, checks
/// they answer alike, and returns the answers.
fn on_every_backend(config: StoreConfig, script: impl Fn(&dyn StateStore) -> Vec<String>) -> Vec<String> {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let in_memory = script(&InMemoryStore::in_memory(config));
    let backends: [(&str, Box<dyn StateStore>); 2] = [
        ("journal", Box::new(JournalStore::open(dir.path(), config).unwrap())),
        ("redis", Box::new(RedisStore::connect(&RedisConfig::new(redis.url()), config).unwrap())),
    ];
    for (name, store) in backends {
        let answers = script(store.as_ref());
        for (memory, other) in in_memory.iter().zip(&answers) {
            assert_eq!(memory, other, "{name} answers otherwise than memory");
        }
        assert_eq!(in_memory.len(), answers.len(), "{name}");
    }
    in_memory
}

/// The answer recorded as `what` (the first, if several).
fn answer<'a>(answers: &'a [String], what: &str) -> &'a str {
    let prefix = format!("{what}: ");
    answers.iter().find_map(|line| line.strip_prefix(&prefix)).unwrap_or_else(|| panic!("no `{what}` in {answers:#?}"))
}

#[test]
fn every_backend_answers_as_the_in_memory_store_does() {
    let answers = on_every_backend(StoreConfig::default(), script);
    assert!(answers.iter().any(|line| line.contains("BudgetExhausted")), "the script reaches a limit");
    assert!(answers.iter().any(|line| line.contains("CircuitOpen")), "the script opens the breaker");
    assert_eq!(answer(&answers, "usage again"), format!("{:?}", Ok::<_, ()>(Err::<(), _>(already_reported("l1")))));
}

const MINUTE: Window = Window::RollingSeconds(60);

/// Two rolling windows on one series (limits on the same tokens looking
/// back 10 s and 60 s), bookings forward and back in time, usage reports
/// rescaling bookings in and out of each window, reads between bookings.
fn rolling(store: &dyn StateStore) -> Vec<String> {
    let mut out = Vec::new();
    let tokens = ChargeUnit::Tokens;
    let on = |window, amount| vec![charge("s", window, tokens, amount, if window == ROLLING { 1_000 } else { 5_000 })];
    let read = |what: &str, at: i64, out: &mut Vec<String>| {
        for (name, window) in [("10 s", ROLLING), ("60 s", MINUTE)] {
            out.push(format!("{what} {name}: {:?}", store.used("s", window, tokens, T0 + at)));
        }
    };
    let bookings =
        [(0, MINUTE), (1_000, ROLLING), (2_000, MINUTE), (9_000, ROLLING), (12_000, ROLLING), (30_000, MINUTE)];
    for (i, (at, window)) in bookings.into_iter().enumerate() {
        let booked = store.commit(commit(&format!("b{i}"), T0 + at, on(window, 100), Some((50, 50)), None));
        out.push(format!("book at {at}: {booked:?}"));
        read(&format!("after {at}"), at, &mut out);
    }
    read("between", 31_000, &mut out);
    // Reports for bookings the 10 s window has passed (b4 at 12 s, b0 at
    // 0 s): only the minute's total changes.
    let usage = |id: &str, at: i64, prompt_tokens| UsageReport {
        request_id: id.into(),
        now_ms: T0 + at,
        prompt_tokens,
        output_tokens: 0,
    };
    out.push(format!("usage b4: {:?}", store.reconcile(usage("b4", 32_000, 25))));
    out.push(format!("usage b0: {:?}", store.reconcile(usage("b0", 32_000, 300))));
    read("reported", 32_000, &mut out);
    // The clock set back: a booking between earlier ones.
    out.push(format!("back to 5000: {:?}", store.commit(commit("back", T0 + 5_000, on(ROLLING, 7), None, None))));
    read("set back", 13_000, &mut out);
    read("forward again", 33_000, &mut out);
    out.push(format!(
        "over the 10 s limit: {:?}",
        store.commit(commit("big", T0 + 33_000, on(ROLLING, 901), None, None))
    ));
    read("refused", 33_000, &mut out);
    read("aged out", 100_000, &mut out);
    out.push(format!("after aging: {:?}", store.commit(commit("late", T0 + 100_000, on(MINUTE, 1), None, None))));
    read("late", 100_000, &mut out);
    out
}

#[test]
fn rolling_windows_answer_alike_on_every_backend() {
    let answers = on_every_backend(StoreConfig::default(), rolling);
    let expected = [
        ("after 9000 10 s", 400),
        ("after 12000 10 s", 200),
        ("after 12000 60 s", 500),
        ("between 10 s", 100),
        ("between 60 s", 600),
        // b4 (12 s) scaled to 25 of 100, b0 (0 s) to 300.
        ("reported 10 s", 100),
        ("reported 60 s", 725),
        // At 13 s the 10 s window holds 9 s, 12 s and the 7 booked at 5 s.
        ("set back 10 s", 132),
        ("set back 60 s", 632),
        ("forward again 60 s", 732),
        ("refused 10 s", 100),
        ("aged out 60 s", 0),
        ("late 60 s", 1),
    ];
    for (what, total) in expected {
        assert_eq!(answer(&answers, what), format!("{:?}", Ok::<u64, ()>(total)), "{what}: {answers:#?}");
    }
    assert!(answer(&answers, "over the 10 s limit").contains("BudgetExhausted"), "{answers:#?}");
}

#[test]
fn a_rolling_series_written_before_its_stamps_is_read_and_booked_whole() {
    let redis = RedisServer::start();
    let (key, stamps) = ("{arbiter}:rolling:tokens|s", "{arbiter}:rolling_stamps:tokens|s");
    // Written by a host before the stamps: two bookings, and the longest
    // window asked of the series then (a minute; a 10 s one shares it).
    let old = [T0.to_string(), (T0 + 4_000).to_string()];
    assert_eq!(redis_command(&redis, &["HSET", key, &old[0], "30", &old[1], "40", "window_ms", "60000"]), "3");
    assert_eq!(redis_command(&redis, &["PEXPIRE", key, "120000"]), "1");
    let store = RedisStore::connect(&RedisConfig::new(redis.url()), StoreConfig::default()).unwrap();
    let tokens = ChargeUnit::Tokens;
    let used = |window, at| store.used("s", window, tokens, T0 + at).unwrap();
    assert_eq!(used(ROLLING, 5_000), 70, "read by a scan");
    let over = store.commit(commit("c1", T0 + 5_000, vec![charge("s", ROLLING, tokens, 31, 100)], None, None));
    assert!(matches!(over, Ok(Err(CommitRefused::BudgetExhausted { used: 70, .. }))), "{over:?}");
    store.commit(commit("c2", T0 + 5_000, vec![charge("s", ROLLING, tokens, 30, 100)], None, None)).unwrap().unwrap();
    assert_eq!(redis_command(&redis, &["ZCARD", stamps]), "3", "stamped");
    assert_eq!(used(ROLLING, 5_000), 100);
    assert_eq!(used(ROLLING, 12_000), 70, "the first booking aged out of 10 s");
    // A 10 s booking later must not drop what the minute still reads.
    let llm = Some((1, 0));
    store.commit(commit("c3", T0 + 20_000, vec![charge("s", ROLLING, tokens, 1, 100)], llm, None)).unwrap().unwrap();
    assert_eq!(used(MINUTE, 20_000), 101, "the minute keeps the old bookings");
    // A usage report on a series whose stamps are gone stamps it again,
    // expiring with it.
    assert_eq!(redis_command(&redis, &["DEL", stamps]), "1");
    let report = UsageReport { request_id: "c3".into(), now_ms: T0 + 21_000, prompt_tokens: 0, output_tokens: 0 };
    store.reconcile(report).unwrap().unwrap();
    assert_eq!(used(MINUTE, 21_000), 100, "rescaled to nothing");
    let ttl: i64 = redis_command(&redis, &["PTTL", stamps]).parse().unwrap();
    assert!(ttl > 0, "the stamps expire: {ttl}");
    // A sum no host of this version could leave below zero reads as none.
    assert_eq!(redis_command(&redis, &["HSET", key, "sum:60000", "-500"]), "0");
    assert_eq!(used(MINUTE, 21_000), 0);
}

fn already_reported(id: &str) -> UsageRejected {
    UsageRejected::AlreadyReported(id.into())
}

const HOUR: i64 = 3_600_000;

fn escalation(id: &str, principal: &str, at: i64) -> Escalation {
    Escalation {
        id: id.into(),
        principal: principal.into(),
        request_id: format!("req-{id}"),
        fingerprint: format!("fp-{id}"),
        approvers: vec!["oncall".into()],
        summary: "drop table tmp".into(),
        reasons: vec![],
        created_ms: T0 + at,
        expires_ms: T0 + at + HOUR,
        status: EscalationStatus::Pending,
    }
}

fn resolve(store: &dyn StateStore, id: &str, approve: bool, at: i64) -> String {
    let resolution = Resolution { escalation_id: id.into(), approve, by: "alice".into(), now_ms: T0 + at };
    format!("{:?}", store.resolve_escalation(resolution).map(|r| r.map(|e| e.status)))
}

fn status(store: &dyn StateStore, id: &str) -> String {
    format!("{:?}", store.escalation(id).unwrap().map(|e| e.status))
}

/// A commit claiming the approval of escalation `id`.
fn claiming(id: &str, request_id: &str, at: i64) -> Commit {
    let claim =
        ApprovalClaim { escalation_id: id.into(), fingerprint: format!("fp-{id}"), request_id: request_id.into() };
    Commit { approval: Some(claim), ..commit(request_id, T0 + at, vec![], None, None) }
}

/// Opening an id again (a re-sent escalated request) keeps whatever was
/// decided: approved stays approved, used stays used, rejected stays
/// rejected, and a pending one keeps its first record.
fn reopening(store: &dyn StateStore) -> Vec<String> {
    let mut out = Vec::new();
    let mut record = |what: &str, answer: String| out.push(format!("{what}: {answer}"));
    let open = |id: &str, at: i64| format!("{:?}", store.open_escalation(escalation(id, "p/a", at)));
    record("open", open("e1", 0));
    record("approve", resolve(store, "e1", true, 1_000));
    record("reopen approved", open("e1", 2_000));
    record("approved", status(store, "e1"));
    record("use", format!("{:?}", store.commit(claiming("e1", "retry-1", 3_000))));
    record("reopen used", open("e1", 4_000));
    record("used", status(store, "e1"));
    record("use again", format!("{:?}", store.commit(claiming("e1", "retry-2", 5_000))));
    record("open e2", open("e2", 0));
    record("reject", resolve(store, "e2", false, 1_000));
    record("reopen rejected", open("e2", 2_000));
    record("rejected", status(store, "e2"));
    record("open e3", open("e3", 0));
    let resent = Escalation { summary: "something else".into(), ..escalation("e3", "p/a", 10_000) };
    record("reopen pending", format!("{:?}", store.open_escalation(resent)));
    record("first record kept", format!("{:?}", store.escalation("e3").unwrap().map(|e| (e.summary, e.created_ms))));
    record("listed", format!("{:?}", store.escalations().map(|all| all.len())));
    out
}

#[test]
fn an_escalation_is_never_reopened() {
    let answers = on_every_backend(StoreConfig::default(), reopening);
    assert_eq!(answer(&answers, "reopen approved"), "Ok(Ok(()))");
    assert!(answer(&answers, "approved").starts_with("Some(Approved"), "{answers:#?}");
    assert_eq!(answer(&answers, "use"), "Ok(Ok(()))");
    assert!(answer(&answers, "used").starts_with("Some(Used"), "{answers:#?}");
    assert!(answer(&answers, "use again").contains("Used(\"e1\")"), "{answers:#?}");
    assert!(answer(&answers, "rejected").starts_with("Some(Rejected"), "{answers:#?}");
    assert_eq!(answer(&answers, "first record kept"), format!("Some((\"drop table tmp\", {T0}))"));
    assert_eq!(answer(&answers, "listed"), "Ok(3)");
}

/// One principal fills its quota; another is served until the store is
/// full; resolving (approve or reject) and expiring free slots.
fn flooding(store: &dyn StateStore) -> Vec<String> {
    let mut out = Vec::new();
    let mut record = |what: &str, answer: String| out.push(format!("{what}: {answer}"));
    let open =
        |id: String, principal: &str, at: i64| format!("{:?}", store.open_escalation(escalation(&id, principal, at)));
    let opened = |answers: Vec<String>| answers.iter().filter(|a| *a == "Ok(Ok(()))").count().to_string();
    record("flood a", opened((0..100).map(|i| open(format!("a{i}"), "p/a", i)).collect()));
    record("a 101st", open("a100".into(), "p/a", 100));
    record("a resent", open("a7".into(), "p/a", 100));
    record("b", opened((0..50).map(|i| open(format!("b{i}"), "p/b", i)).collect()));
    record("b 51st", open("b50".into(), "p/b", 100));
    record("approve a0", resolve(store, "a0", true, 200));
    record("a after approval", open("a100".into(), "p/a", 300));
    record("a after that", open("a101".into(), "p/a", 300));
    record("reject a1", resolve(store, "a1", false, 400));
    record("a after rejection", open("a101".into(), "p/a", 500));
    // a2 expires an hour after it was opened: its slot is free then.
    record("a at a2's expiry", open("a102".into(), "p/a", HOUR + 2));
    record("a again", open("a103".into(), "p/a", HOUR + 2));
    record("all expired", opened((0..150).map(|i| open(format!("late{i}"), "p/c", 2 * HOUR + i)).collect()));
    out
}

#[test]
fn pending_escalations_are_bounded_per_principal_and_overall() {
    let config = StoreConfig { max_pending: 150, ..StoreConfig::default() };
    let answers = on_every_backend(config, flooding);
    let per_principal = |p: &str| {
        format!(
            "{:?}",
            Ok::<_, ()>(Err::<(), _>(EscalationRefused::TooManyPending { principal: p.into(), limit: 100 }))
        )
    };
    let overall = format!("{:?}", Ok::<_, ()>(Err::<(), _>(EscalationRefused::TooManyPendingOverall { limit: 150 })));
    assert_eq!(answer(&answers, "flood a"), "100");
    assert_eq!(answer(&answers, "a 101st"), per_principal("p/a"), "the 101st pending of one principal is refused");
    assert_eq!(answer(&answers, "a resent"), "Ok(Ok(()))", "one already kept is no new one");
    assert_eq!(answer(&answers, "b"), "50", "another principal is served");
    assert_eq!(answer(&answers, "b 51st"), overall, "until the store holds max_pending");
    assert_eq!(answer(&answers, "a after approval"), "Ok(Ok(()))", "an approval frees a slot");
    assert_eq!(answer(&answers, "a after that"), per_principal("p/a"));
    assert_eq!(answer(&answers, "a after rejection"), "Ok(Ok(()))", "a rejection frees a slot");
    assert_eq!(answer(&answers, "a at a2's expiry"), "Ok(Ok(()))", "an expiry frees a slot");
    assert_eq!(answer(&answers, "a again"), per_principal("p/a"));
    assert_eq!(answer(&answers, "all expired"), "100", "every earlier one expired; the quota holds again");
    assert_eq!(
        EscalationRefused::TooManyPending { principal: "p/a".into(), limit: 100 }.code(),
        "too_many_escalations"
    );
}

/// A second usage or outcome report of one request changes nothing.
fn reporting_twice(store: &dyn StateStore) -> Vec<String> {
    let mut out = Vec::new();
    let mut record = |what: &str, answer: String| out.push(format!("{what}: {answer}"));
    let tokens = ChargeUnit::Tokens;
    let charges =
        vec![charge("run:r", Window::Run, tokens, 1_500, 4_000), charge("team", DAY, ChargeUnit::MicroUsd, 300, 1_000)];
    record("llm", format!("{:?}", store.commit(commit("l1", T0, charges, Some((1_000, 500)), None))));
    let usage = |output: u64, at: i64| UsageReport {
        request_id: "l1".into(),
        now_ms: T0 + at,
        prompt_tokens: 1_000,
        output_tokens: output,
    };
    let state = || {
        format!(
            "{:?} {:?} {:?}",
            store.used("run:r", Window::Run, tokens, T0 + 10),
            store.used("team", DAY, ChargeUnit::MicroUsd, T0 + 10),
            store.spend(T0, T0 + 86_400_000)
        )
    };
    // The same id again while its reservation is open: refused, so that
    // settling one can never release the other's tokens.
    let again = vec![charge("run:r", Window::Run, tokens, 2_000, 4_000)];
    record("same id again", format!("{:?}", store.commit(commit("l1", T0, again, Some((1_000, 1_000)), None))));
    record("used after the duplicate", format!("{:?}", store.used("run:r", Window::Run, tokens, T0 + 1)));
    record("usage", format!("{:?}", store.reconcile(usage(100, 1))));
    let after_first = state();
    for (output, at) in [(0, 2), (499, 3), (5_000, 4)] {
        record("usage again", format!("{:?}", store.reconcile(usage(output, at))));
    }
    record("unchanged by the second", (state() == after_first).to_string());
    record("usage after its mark expired", format!("{:?}", store.reconcile(usage(0, 3_600_000 + 2_000))));
    record(
        "usage of an unknown request",
        format!("{:?}", store.reconcile(UsageReport { request_id: "nope".into(), ..usage(1, 5) })),
    );

    // A charged tool call: a usage report cannot refund or multiply it.
    let per_call = vec![charge("tools", DAY, ChargeUnit::MicroUsd, 100, 1_000)];
    record("charged tool call", format!("{:?}", store.commit(commit("t1", T0 + 6, per_call, None, None))));
    let zero = UsageReport { request_id: "t1".into(), now_ms: T0 + 7, prompt_tokens: 0, output_tokens: 0 };
    record("usage of a tool call", format!("{:?}", store.reconcile(zero)));
    record("tool charge kept", format!("{:?}", store.used("tools", DAY, ChargeUnit::MicroUsd, T0 + 8)));

    // Two failures in a window of two would open the breaker.
    record("guarded", format!("{:?}", store.commit(commit("g1", T0 + 10, vec![], None, Some(2)))));
    let outcome = |at: i64| OutcomeReport {
        request_id: "g1".into(),
        now_ms: T0 + at,
        status: OutcomeStatus::Failure,
        latency_ms: None,
    };
    record("outcome", format!("{:?}", store.record_outcome(outcome(11))));
    record("outcome again", format!("{:?}", store.record_outcome(outcome(12))));
    record("breaker", format!("{:?}", store.breaker_state("p/tool", &breaker(2), T0 + 13)));
    record(
        "outcome of an unknown request",
        format!("{:?}", store.record_outcome(OutcomeReport { request_id: "nope".into(), ..outcome(14) })),
    );
    out
}

#[test]
fn a_report_is_taken_once() {
    let answers = on_every_backend(StoreConfig::default(), reporting_twice);
    let rejected = |r: UsageRejected| format!("{:?}", Ok::<_, ()>(Err::<(), _>(r)));
    assert_eq!(
        answer(&answers, "same id again"),
        format!("{:?}", Ok::<_, ()>(Err::<(), _>(CommitRefused::DuplicateRequest { request_id: "l1".into() })))
    );
    assert_eq!(answer(&answers, "used after the duplicate"), "Ok(1500)", "the first reservation alone");
    assert_eq!(answer(&answers, "usage"), "Ok(Ok(()))");
    assert!(
        answers.iter().filter(|l| l.starts_with("usage again")).all(|l| l.ends_with(&rejected(already_reported("l1")))),
        "{answers:#?}"
    );
    assert_eq!(answer(&answers, "unchanged by the second"), "true");
    assert_eq!(answer(&answers, "usage after its mark expired"), rejected(UsageRejected::NoReservation("l1".into())));
    assert_eq!(answer(&answers, "usage of an unknown request"), rejected(UsageRejected::NoReservation("nope".into())));
    assert_eq!(answer(&answers, "tool charge kept"), "Ok(100)", "not refunded by a usage report");
    assert_eq!(answer(&answers, "outcome"), "Ok(Ok(()))");
    let outcome_rejected = |r: OutcomeRejected| format!("{:?}", Ok::<_, ()>(Err::<(), _>(r)));
    assert_eq!(answer(&answers, "outcome again"), outcome_rejected(OutcomeRejected::AlreadyReported("g1".into())));
    assert_eq!(answer(&answers, "breaker"), "Ok(Closed)", "the second failure was not counted");
    assert_eq!(
        answer(&answers, "outcome of an unknown request"),
        outcome_rejected(OutcomeRejected::UnknownRequest("nope".into()))
    );
}

#[test]
fn run_history_is_bounded_in_memory_and_in_the_journal() {
    let config = StoreConfig { history_runs: 100, ..StoreConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let run = |n: usize| RunKey { pipeline: "p".into(), run: format!("run-{n}") };
    let one_call = |n: usize| Commit {
        run: run(n),
        tool_call: Some((
            "tool".into(),
            json!({"n": n, "pad": "x".repeat(8_192)}).as_object().cloned().unwrap_or_default(),
        )),
        ..commit(&format!("c{n}"), T0 + n as i64, vec![], None, None)
    };
    let kept = |store: &dyn StateStore| -> Vec<usize> {
        (0..1_000).filter(|n| !store.tool_calls(&run(*n), None, i64::MIN).unwrap().is_empty()).collect()
    };
    let journal = JournalStore::open(dir.path(), config).unwrap();
    for (name, store) in [("memory", &InMemoryStore::in_memory(config) as &dyn StateStore), ("journal", &journal)] {
        for n in 0..1_000 {
            store.commit(one_call(n)).unwrap().unwrap();
        }
        let kept = kept(store);
        assert!((100..=110).contains(&kept.len()), "{name}: {} runs kept", kept.len());
        assert!(kept.iter().all(|n| *n >= 1_000 - kept.len()), "{name}: the most recently active are kept: {kept:?}");
        let latest = store.tool_calls(&run(999), None, i64::MIN).unwrap();
        assert_eq!(latest.len(), 1, "{name}");
        assert_eq!(
            latest[0].arguments,
            one_call(999).tool_call.unwrap().1,
            "{name}: the latest run's history is intact"
        );
    }
    let before = kept(&journal);
    drop(journal);
    assert_eq!(kept(&JournalStore::open(dir.path(), config).unwrap()), before, "replay forgets the same runs");
}

/// Searches of a run, some near-duplicates, some not strings, some of
/// another tool, with the oldest past the per-run cap of 6.
fn near_duplicates(store: &dyn StateStore) -> Vec<String> {
    let searches = [
        ("docs.search", json!("orders daily schema change")),
        ("docs.search", json!("orders_daily schema changed")),
        ("docs.search", json!({"text": "orders daily schema change"})),
        ("docs.search", json!("ORDERS, daily: schema change!")),
        ("web.search", json!("orders daily schema change")),
        ("docs.search", json!("")),
        ("docs.search", json!("page the oncall")),
        ("docs.search", json!("orders daily schema change")),
    ];
    let run = RunKey { pipeline: "p".into(), run: "r".into() };
    for (n, (tool, query)) in searches.iter().enumerate() {
        let call = Commit {
            tool_call: Some((tool.to_string(), json!({ "query": query }).as_object().cloned().unwrap_or_default())),
            ..commit(&format!("s{n}"), T0 + n as i64 * 1_000, vec![], None, None)
        };
        store.commit(call).unwrap().unwrap();
    }
    let mut out = Vec::new();
    let questions = [
        ("docs.search", "query", "orders daily schema change", 0.6, i64::MIN),
        ("docs.search", "query", "orders daily schema change", 1.0, i64::MIN),
        ("docs.search", "query", "orders daily schema change", 0.0, i64::MIN),
        ("docs.search", "query", "orders daily schema change", 0.6, T0 + 7_000),
        ("docs.search", "query", "", 1.0, i64::MIN),
        ("docs.search", "missing", "orders daily schema change", 0.0, i64::MIN),
        ("web.search", "query", "schema change orders daily", 1.0, i64::MIN),
        ("nothing", "query", "orders", 0.0, i64::MIN),
    ];
    // Twice: the second answer comes from the token sets the first kept.
    for round in 0..2 {
        for (tool, argument, text, min_similarity, since_ms) in questions {
            let text = TokenSet::of(text);
            let query = SimilarQuery { tool, argument, text: &text, min_similarity, since_ms };
            out.push(format!(
                "{round} {tool} {argument} {min_similarity} {since_ms}: {:?}",
                store.count_similar(&run, &query)
            ));
        }
    }
    out
}

#[test]
fn near_duplicate_questions_are_answered_alike_on_every_backend() {
    let config = StoreConfig { history_per_run: 6, ..StoreConfig::default() };
    let answers = on_every_backend(config, near_duplicates);
    let counts: Vec<&str> = answers[..8].iter().map(|line| line.rsplit(": ").next().unwrap()).collect();
    // Kept: s2 (an object), s3, s4 (web), s5 (empty), s6, s7.
    assert_eq!(counts, ["Ok(2)", "Ok(2)", "Ok(4)", "Ok(1)", "Ok(1)", "Ok(0)", "Ok(1)", "Ok(0)"], "{answers:#?}");
    assert_eq!(
        answers[..8].iter().map(|l| &l[2..]).collect::<Vec<_>>(),
        answers[8..].iter().map(|l| &l[2..]).collect::<Vec<_>>()
    );
}

/// Reads of a run, one of them of sensitive data, asked which call first
/// mentioned a marker: by tool glob, argument, marker order and time.
fn earlier_mentions(store: &dyn StateStore) -> Vec<String> {
    let reads = [
        ("warehouse.query", json!({"sql": "select 1 from nopii.x", "table": "pii.y"})),
        ("docs.search", json!({"sql": "select * from pii.customers"})),
        ("warehouse.query", json!({"sql": "SELECT * FROM Restricted.ledger JOIN pii.customers"})),
        ("warehouse.query", json!({"sql": {"nested": "pii.z"}})),
        ("warehouse.describe", json!({"table": "pii.customers"})),
    ];
    let run = RunKey { pipeline: "p".into(), run: "r".into() };
    for (n, (tool, arguments)) in reads.iter().enumerate() {
        let call = Commit {
            tool_call: Some((tool.to_string(), arguments.as_object().cloned().unwrap_or_default())),
            ..commit(&format!("m{n}"), T0 + n as i64 * 1_000, vec![], None, None)
        };
        store.commit(call).unwrap().unwrap();
    }
    let strings = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let questions = [
        (strings(&["warehouse.*"]), strings(&["sql"]), strings(&["pii.", "restricted."]), i64::MIN),
        (strings(&["warehouse.*"]), strings(&["sql", "table"]), strings(&["pii."]), i64::MIN),
        (strings(&["warehouse.*"]), strings(&["sql"]), strings(&["pii."]), T0 + 3_000),
        (strings(&["warehouse.describe"]), strings(&["table"]), strings(&["PII."]), i64::MIN),
        (strings(&["*"]), strings(&["sql"]), strings(&["ledger"]), i64::MIN),
        (strings(&[]), strings(&["sql"]), strings(&["pii."]), i64::MIN),
    ];
    let mut out = Vec::new();
    for round in 0..2 {
        for (tools, arguments, markers, since_ms) in &questions {
            let query = MentionQuery { tools, arguments, markers, since_ms: *since_ms };
            out.push(format!("{round} {tools:?} {arguments:?} {markers:?}: {:?}", store.first_mention(&run, &query)));
        }
    }
    out
}

#[test]
fn earlier_mention_questions_are_answered_alike_on_every_backend() {
    let answers = on_every_backend(StoreConfig::default(), earlier_mentions);
    let found: Vec<&str> = answers[..6].iter().map(|line| line.split_once("]: ").unwrap().1).collect();
    let mention = |id: &str, marker: &str| {
        format!("{:?}", Ok::<_, ()>(Some(Mention { request_id: id.into(), marker: marker.into() })))
    };
    // m2 mentions both markers: the first in the question's order wins.
    // `ledger` follows a `.`, a word start. No tool pattern, no tool.
    let none = String::from("Ok(None)");
    let expected = [
        mention("m2", "pii."),
        mention("m0", "pii."),
        none.clone(),
        mention("m4", "PII."),
        mention("m2", "ledger"),
        none,
    ];
    assert_eq!(found, expected.iter().map(String::as_str).collect::<Vec<_>>(), "{answers:#?}");
    assert_eq!(
        answers[..6].iter().map(|l| &l[2..]).collect::<Vec<_>>(),
        answers[6..].iter().map(|l| &l[2..]).collect::<Vec<_>>()
    );
}

#[test]
fn near_duplicate_answers_survive_a_journal_reopen_and_the_per_run_cap() {
    let config = StoreConfig { history_per_run: 6, ..StoreConfig::default() };
    let dir = tempfile::tempdir().unwrap();
    let before = near_duplicates(&JournalStore::open(dir.path(), config).unwrap());
    let reopened = JournalStore::open(dir.path(), config).unwrap();
    let run = RunKey { pipeline: "p".into(), run: "r".into() };
    let text = TokenSet::of("orders daily schema change");
    let ask = |store: &JournalStore| {
        let query = SimilarQuery {
            tool: "docs.search",
            argument: "query",
            text: &text,
            min_similarity: 0.6,
            since_ms: i64::MIN,
        };
        store.count_similar(&run, &query).unwrap()
    };
    assert_eq!(format!("0 docs.search query 0.6 {}: Ok({})", i64::MIN, ask(&reopened)), before[0], "replayed history");
    // Two more near-duplicates push s2 and s3 out: s3 was one.
    for n in 8..10 {
        let call = Commit {
            tool_call: Some((
                "docs.search".into(),
                json!({"query": "orders daily schema change"}).as_object().cloned().unwrap_or_default(),
            )),
            ..commit(&format!("s{n}"), T0 + n * 1_000, vec![], None, None)
        };
        reopened.commit(call).unwrap().unwrap();
    }
    assert_eq!(ask(&reopened), 3, "s7, s8, s9: what the cap keeps, slot for slot");
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

#[test]
fn pending_escalations_opened_on_two_replicas_at_once_stay_within_the_quota() {
    let redis = RedisServer::start();
    let config = RedisConfig::new(redis.url());
    let replicas: Vec<Arc<RedisStore>> =
        (0..2).map(|_| Arc::new(RedisStore::connect(&config, StoreConfig::default()).unwrap())).collect();
    let openers: Vec<_> = (0..8)
        .map(|t| {
            let replica = Arc::clone(&replicas[t % 2]);
            std::thread::spawn(move || {
                let mut opened = 0;
                for i in 0..25 {
                    // Every thread also opens one shared id: opened once, kept once.
                    for id in [format!("e{t}-{i}"), "shared".to_owned()] {
                        if replica.open_escalation(escalation(&id, "p/a", 0)).unwrap().is_ok() && id != "shared" {
                            opened += 1;
                        }
                    }
                }
                opened
            })
        })
        .collect();
    let opened: usize = openers.into_iter().map(|t| t.join().unwrap()).sum();
    let kept = replicas[1].escalations().unwrap();
    let shared = kept.iter().filter(|e| e.id == "shared").count();
    assert!(shared <= 1, "the shared id is kept once");
    assert_eq!(opened + shared, 100, "the quota of 100 holds exactly");
    assert_eq!(kept.len(), 100);
}

fn tool(name: &str, digest: &str) -> ListedToolInput {
    ListedToolInput {
        name: name.into(),
        digest: digest.into(),
        definition: json!({"name": name, "v": digest}).to_string(),
    }
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

/// What `server` sees of `tools`, as one answer line.
fn views(store: &dyn StateStore, server: &str, tools: &[&str]) -> String {
    format!("{:?}", store.tool_views(server, &names(tools)))
}

fn listed(store: &dyn StateStore, server: &str, tools: &[ListedToolInput], at: i64) -> String {
    format!("{:?}", store.record_listing(server, tools, T0 + at))
}

/// First use, a changed definition, delisting and re-listing, and one
/// name listed by two servers.
fn listing(store: &dyn StateStore) -> Vec<String> {
    let mut out = Vec::new();
    let mut record = |what: &str, answer: String| out.push(format!("{what}: {answer}"));
    record("first", listed(store, "s1", &[tool("a", "d1"), tool("b", "d1")], 0));
    record("changed", listed(store, "s1", &[tool("a", "d2"), tool("b", "d1")], 1));
    record("after change", views(store, "s1", &["a", "b"]));
    record("delisted", listed(store, "s1", &[tool("b", "d1")], 2));
    record("after delisting", views(store, "s1", &["a"]));
    record("relisted", listed(store, "s1", &[tool("a", "d3"), tool("b", "d1")], 3));
    record("after relisting", views(store, "s1", &["a"]));
    record("shadow", listed(store, "s2", &[tool("a", "x")], 4));
    record("shadowed from s1", views(store, "s1", &["a"]));
    record("shadowed from s2", views(store, "s2", &["a"]));
    record("from an unknown server", views(store, "nobody", &["a", "b", "c"]));
    record("reordered", listed(store, "s1", &[tool("b", "d1"), tool("a", "d3")], 5));
    record("s2 withdraws", listed(store, "s2", &[], 6));
    record("after withdrawal", views(store, "s2", &["a"]));
    record("s1 still lists", views(store, "s1", &["a"]));
    record("no names", views(store, "s1", &[]));
    out
}

#[test]
fn the_tool_registry_keeps_first_use_and_sees_shadowing() {
    let answers = on_every_backend(StoreConfig::default(), listing);
    let first = format!("Some(FirstListed {{ digest: \"d1\", at_ms: {T0} }})");
    for what in ["after change", "after delisting", "after relisting"] {
        assert!(answer(&answers, what).contains(&first), "{what}: the first digest stays: {answers:#?}");
    }
    assert!(answer(&answers, "after change").contains("digest: \"d2\""), "{answers:#?}");
    assert!(answer(&answers, "after delisting").starts_with("Ok([ToolView { current: None,"), "{answers:#?}");
    assert!(answer(&answers, "after delisting").ends_with("listed_by: [] }])"), "{answers:#?}");
    assert!(answer(&answers, "after relisting").contains("digest: \"d3\""), "{answers:#?}");
    for what in ["shadowed from s1", "shadowed from s2"] {
        assert!(answer(&answers, what).ends_with("listed_by: [\"s1\", \"s2\"] }])"), "{what}: {answers:#?}");
    }
    let unknown = answer(&answers, "from an unknown server");
    assert!(
        unknown.starts_with("Ok([ToolView { current: None, first: None, listed_by: [\"s1\", \"s2\"] }"),
        "{unknown}"
    );
    assert!(unknown.ends_with("ToolView { current: None, first: None, listed_by: [] }])"), "{unknown}");
    assert!(answer(&answers, "after withdrawal").contains("first: Some(FirstListed { digest: \"x\""), "{answers:#?}");
    assert!(answer(&answers, "s1 still lists").ends_with("listed_by: [\"s1\"] }])"), "{answers:#?}");
    assert_eq!(answer(&answers, "no names"), "Ok([])");
    let recorded: Vec<&String> = answers.iter().filter(|l| !l.contains(": Ok([")).collect();
    assert!(recorded.len() == 7 && recorded.iter().all(|l| l.ends_with("Ok(Ok(()))")), "{answers:#?}");
}

fn refused(refusal: ListingRefused) -> String {
    format!("{:?}", Ok::<_, ()>(Err::<(), _>(refusal)))
}

/// Every bound of the registry refuses a listing whole: the server keeps
/// its previous listing, nothing of the refused one is remembered.
fn listing_past_bounds(store: &dyn StateStore) -> Vec<String> {
    let mut out = Vec::new();
    let mut record = |what: &str, answer: String| out.push(format!("{what}: {answer}"));
    record("s1", listed(store, "s1", &[tool("a", "d"), tool("b", "d")], 0));
    record("s2", listed(store, "s2", &[tool("a", "d")], 0));
    let state = || views(store, "s1", &["a", "b", "c", "d", "e"]) + &views(store, "s3", &["a"]);
    let before = state();
    let big = ListedToolInput { definition: "x".repeat(1_000), ..tool("a", "d") };
    let refusals: [(&str, &str, Vec<ListedToolInput>); 6] = [
        ("a third server", "s3", vec![tool("a", "d")]),
        ("names past the bound", "s1", vec![tool("a", "e"), tool("c", "e"), tool("d", "e")]),
        ("more tools than the bound at once", "s1", (0..5).map(|i| tool(&format!("t{i}"), "e")).collect()),
        ("too large", "s1", vec![big, tool("c", "e")]),
        ("a duplicate", "s1", vec![tool("c", "e"), tool("c", "f")]),
        ("a bad name", "s1", vec![tool("c", "e"), tool(&"n".repeat(257), "e")]),
    ];
    for (what, server, tools) in refusals {
        record(what, listed(store, server, &tools, 1));
    }
    record("unchanged by refusals", (state() == before).to_string());
    // Delisted names still count: a fourth name is refused after dropping one.
    record("delist b", listed(store, "s1", &[tool("a", "d")], 2));
    record("third name", listed(store, "s1", &[tool("a", "d"), tool("c", "d")], 3));
    record("fourth name", listed(store, "s1", &[tool("d", "d")], 4));
    record("a server that withdrew all stays known", listed(store, "s2", &[], 5));
    record("still no third server", listed(store, "s3", &[tool("a", "d")], 6));
    record("an empty listing of a new server", listed(store, "s3", &[], 7));
    out
}

#[test]
fn every_registry_bound_refuses_a_listing_whole() {
    let config = StoreConfig {
        max_tool_servers: 2,
        max_tools_per_server: 3,
        max_listing_bytes: 1_000,
        ..StoreConfig::default()
    };
    let answers = on_every_backend(config, listing_past_bounds);
    let too_many_tools = refused(ListingRefused::TooManyTools { limit: 3 });
    let too_many_servers = refused(ListingRefused::TooManyServers { limit: 2 });
    assert_eq!(answer(&answers, "a third server"), too_many_servers);
    assert_eq!(answer(&answers, "names past the bound"), too_many_tools);
    assert_eq!(answer(&answers, "more tools than the bound at once"), too_many_tools);
    assert_eq!(answer(&answers, "too large"), refused(ListingRefused::TooLarge { limit_bytes: 1_000 }));
    assert_eq!(answer(&answers, "a duplicate"), refused(ListingRefused::DuplicateTool { name: "c".into() }));
    assert_eq!(answer(&answers, "a bad name"), refused(ListingRefused::NameLength { of: Named::Tool, bytes: 257 }));
    assert_eq!(answer(&answers, "unchanged by refusals"), "true");
    assert_eq!(answer(&answers, "third name"), "Ok(Ok(()))");
    assert_eq!(answer(&answers, "fourth name"), too_many_tools);
    assert_eq!(answer(&answers, "a server that withdrew all stays known"), "Ok(Ok(()))");
    assert_eq!(answer(&answers, "still no third server"), too_many_servers);
    assert_eq!(answer(&answers, "an empty listing of a new server"), "Ok(Ok(()))", "nothing to remember");
    let codes = [
        ListingRefused::TooManyServers { limit: 1 },
        ListingRefused::TooManyTools { limit: 1 },
        ListingRefused::TooLarge { limit_bytes: 1 },
    ]
    .map(|r| r.code());
    assert_eq!(codes, ["too_many_tool_servers", "too_many_tools", "tool_listing_too_large"]);
}

/// Names and definitions a hostile server (or client) may send: empty,
/// overlong, NUL, odd unicode, Redis key and hash-tag syntax, Lua table
/// keys; 10,000 tools; definitions of megabytes.
fn hostile_listing(store: &dyn StateStore) -> Vec<String> {
    let mut out = Vec::new();
    let mut record = |what: &str, answer: String| out.push(format!("{what}: {answer}"));
    record("empty server name", listed(store, "", &[tool("a", "d")], 0));
    record("empty tool name", listed(store, "s", &[tool("", "d")], 0));
    let longest = "é".repeat(128);
    record("257-byte server name", listed(store, &format!("{longest}x"), &[], 0));
    record("257-byte tool name", listed(store, "s", &[tool(&format!("x{longest}"), "d")], 0));
    record("256-byte names", listed(store, &longest, &[tool(&longest, "d")], 0));
    record("256-byte names read", views(store, &longest, &[&longest]));
    let odd_tools: Vec<ListedToolInput> = ODD
        .iter()
        .map(|name| ListedToolInput {
            name: (*name).to_owned(),
            digest: format!("digest of {name}"),
            definition: format!("not json \0 {name} \u{2028} \"\\ \u{10ffff}"),
        })
        .collect();
    for server in ODD {
        record(&format!("odd server {server:?}"), listed(store, server, &odd_tools, 1));
    }
    let mut sorted = ODD.map(str::to_owned).to_vec();
    sorted.sort();
    let kept_exactly = |server: &str, listers: &[String]| {
        let views = store.tool_views(server, &names(&ODD)).unwrap();
        views.len() == ODD.len()
            && views.iter().zip(&odd_tools).all(|(view, tool)| {
                view.current.as_ref().is_some_and(|c| c.digest == tool.digest && c.definition == tool.definition)
                    && view.first.as_ref().is_some_and(|f| f.digest == tool.digest && f.at_ms == T0 + 1)
                    && view.listed_by == listers
            })
    };
    for server in ODD {
        record("odd names kept exactly", kept_exactly(server, &sorted).to_string());
    }
    record("a server named like none of them", views(store, "a", &["a\0b"]));
    record("a delisting among odd names", listed(store, "x:y", &odd_tools[1..], 2));
    let without = |server: &str| sorted.iter().filter(|s| *s != server).cloned().collect::<Vec<_>>();
    let delisted = store.tool_views("x:y", &names(&["a\0b"])).unwrap();
    record("delisted there", format!("{:?}", delisted[0].current));
    record("listed by the others", (delisted[0].listed_by == without("x:y")).to_string());
    let ten_thousand: Vec<ListedToolInput> = (0..10_000).map(|i| tool(&format!("t{i}"), "d")).collect();
    record("10,000 tools", listed(store, "many", &ten_thousand, 3));
    let just_fits: Vec<ListedToolInput> = (0..1_024)
        .map(|i| ListedToolInput { definition: "x".repeat(960), ..tool(&format!("t{i}"), &format!("{i:064}")) })
        .collect();
    record("1,024 tools of 1 KB", listed(store, "many", &just_fits, 4));
    let all: Vec<String> = just_fits.iter().map(|t| t.name.clone()).collect();
    let read = store.tool_views("many", &all);
    record("1,024 tools read", format!("{:?}", read.map(|v| v.iter().filter(|v| v.current.is_some()).count())));
    let huge = ListedToolInput { definition: "x".repeat(2 << 20), ..tool("huge", "d") };
    record("2 MiB definition", listed(store, "many", &[huge], 5));
    record("many unchanged by it", views(store, "many", &["huge"]));
    out
}

const ODD: [&str; 14] = [
    "a\0b",
    "\0",
    "x:y",
    "{t}",
    "}{",
    "{arbiter}:tool-servers",
    "tools-current:s",
    "\u{202e}gnp.exe",
    "\u{feff}",
    "💥",
    "1",
    "__index",
    "\"quoted\\",
    "/",
];

#[test]
fn hostile_names_and_sizes_are_refused_or_kept_exactly() {
    let answers = on_every_backend(StoreConfig::default(), hostile_listing);
    let bad_name = |of: Named, bytes: usize| refused(ListingRefused::NameLength { of, bytes });
    assert_eq!(answer(&answers, "empty server name"), bad_name(Named::Server, 0));
    assert_eq!(answer(&answers, "empty tool name"), bad_name(Named::Tool, 0));
    assert_eq!(answer(&answers, "257-byte server name"), bad_name(Named::Server, 257));
    assert_eq!(answer(&answers, "257-byte tool name"), bad_name(Named::Tool, 257));
    assert_eq!(answer(&answers, "256-byte names"), "Ok(Ok(()))");
    assert!(answer(&answers, "256-byte names read").contains("current: Some"), "{answers:#?}");
    assert!(answers.iter().filter(|l| l.starts_with("odd server")).all(|l| l.ends_with("Ok(Ok(()))")), "{answers:#?}");
    assert!(answers.iter().filter(|l| l.starts_with("odd names kept exactly")).all(|l| l.ends_with("true")));
    assert!(
        answer(&answers, "a server named like none of them").starts_with("Ok([ToolView { current: None, first: None"),
        "{answers:#?}"
    );
    assert_eq!(answer(&answers, "a delisting among odd names"), "Ok(Ok(()))");
    assert_eq!(answer(&answers, "delisted there"), "None");
    assert_eq!(answer(&answers, "listed by the others"), "true");
    assert_eq!(answer(&answers, "10,000 tools"), refused(ListingRefused::TooManyTools { limit: 1_024 }));
    assert_eq!(answer(&answers, "1,024 tools of 1 KB"), "Ok(Ok(()))");
    assert_eq!(answer(&answers, "1,024 tools read"), "Ok(1024)");
    assert_eq!(answer(&answers, "2 MiB definition"), refused(ListingRefused::TooLarge { limit_bytes: 1 << 20 }));
    assert_eq!(
        answer(&answers, "many unchanged by it"),
        "Ok([ToolView { current: None, first: None, listed_by: [] }])"
    );
}

/// Sends one command to `redis` (RESP) and returns its reply: a bulk
/// string's text, or a status or integer line without its type byte.
fn redis_command(redis: &RedisServer, args: &[&str]) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header).unwrap();
    let Some(length) = header.strip_prefix('$') else { return header[1..].trim_end().to_owned() };
    let mut body = vec![0u8; length.trim_end().parse().unwrap()];
    reader.read_exact(&mut body).unwrap();
    String::from_utf8(body).unwrap()
}

/// Redis's count of changes since its last save.
fn redis_changes(redis: &RedisServer) -> u64 {
    let info = redis_command(redis, &["INFO", "persistence"]);
    let line = info.lines().find_map(|l| l.strip_prefix("rdb_changes_since_last_save:")).unwrap();
    line.parse().unwrap()
}

#[test]
fn an_unchanged_listing_writes_nothing() {
    let tools = [tool("a", "d1"), tool("b", "d1")];
    let reordered = [tool("b", "d1"), tool("a", "d1")];
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { snapshot_every: 1_000, ..StoreConfig::default() };
    let journal = JournalStore::open(dir.path(), config).unwrap();
    let journal_len = || std::fs::metadata(dir.path().join("journal.log")).unwrap().len();
    journal.record_listing("s", &tools, T0).unwrap().unwrap();
    let written = journal_len();
    journal.record_listing("s", &reordered, T0 + 1).unwrap().unwrap();
    journal.record_listing("empty", &[], T0 + 1).unwrap().unwrap();
    assert_eq!(journal_len(), written, "the journal grew");
    journal.record_listing("s", &[tool("a", "d2"), tool("b", "d1")], T0 + 2).unwrap().unwrap();
    assert!(journal_len() > written, "a change is journaled");

    let redis = RedisServer::start();
    let store = RedisStore::connect(&RedisConfig::new(redis.url()), StoreConfig::default()).unwrap();
    store.record_listing("s", &tools, T0).unwrap().unwrap();
    let changes = redis_changes(&redis);
    store.record_listing("s", &reordered, T0 + 1).unwrap().unwrap();
    store.record_listing("empty", &[], T0 + 1).unwrap().unwrap();
    assert_eq!(redis_changes(&redis), changes, "Redis was written");
    store.record_listing("s", &[tool("a", "d2"), tool("b", "d1")], T0 + 2).unwrap().unwrap();
    assert!(redis_changes(&redis) > changes, "a change is written");
}

#[test]
fn new_servers_listed_on_two_replicas_at_once_stay_within_the_bound() {
    let redis = RedisServer::start();
    let config = RedisConfig::new(redis.url());
    let bounds = StoreConfig { max_tool_servers: 20, ..StoreConfig::default() };
    let replicas: Vec<Arc<RedisStore>> =
        (0..2).map(|_| Arc::new(RedisStore::connect(&config, bounds).unwrap())).collect();
    let listers: Vec<_> = (0..8)
        .map(|t| {
            let replica = Arc::clone(&replicas[t % 2]);
            std::thread::spawn(move || {
                (0..10)
                    .filter(|i| {
                        let server = format!("s{t}-{i}");
                        replica.record_listing(&server, &[tool("shared", &server)], T0).unwrap().is_ok()
                    })
                    .count()
            })
        })
        .collect();
    let accepted: usize = listers.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(accepted, 20, "the bound of 20 servers holds exactly");
    let shared = replicas[1].tool_views("nobody", &names(&["shared"])).unwrap();
    assert_eq!(shared[0].listed_by.len(), 20, "every accepted server is among the listers, none lost");
}
