//! Escalation and approval: an escalated request gets an escalation id; an
//! approved escalation lets the same request through exactly once before it
//! expires; anything else is refused with a code that says why.

use std::sync::Arc;

use arbiter_engine::{Bundle, Decider};
use arbiter_state::{EscalationStatus, InMemoryStore, StoreConfig};
use arbiter_tests::{engine, orders_daily_bundle, tool_call};
use arbiter_types::{Decision, Request, VerdictKind};
use serde_json::json;

fn decider() -> Decider {
    let bundle = Bundle::load(&engine(), &orders_daily_bundle()).unwrap_or_else(|e| panic!("{e}"));
    Decider::new(Arc::new(bundle), Arc::new(InMemoryStore::in_memory(StoreConfig::default())))
}

fn drop_table(id: &str, table: &str, escalation: Option<&str>) -> Request {
    let mut request = tool_call(id, "warehouse.drop_table", json!({"table": table}));
    request.escalation_id = escalation.map(str::to_owned);
    request
}

fn kind_and_codes(d: &Decision) -> (VerdictKind, Vec<&str>) {
    (d.decision, d.codes())
}

/// 2026-11-26T02:00:00Z, the requests' own timestamp.
const T: i64 = 1_795_658_400_000;

#[test]
fn approve_then_retry_passes_exactly_once() {
    let decider = decider();
    let first = decider.decide(&drop_table("r1", "tmp", None), T);
    assert_eq!(kind_and_codes(&first), (VerdictKind::Escalate, vec!["needs_approval"]));
    let offer = first.escalation.clone().unwrap();
    let id = offer.id.clone().expect("an escalation id");
    assert_eq!(offer.approvers, ["data-platform-oncall"]);
    assert!(offer.expires_at.unwrap().starts_with("2026-11-26T03:00:00"));

    // Retried before approval: still escalated, same escalation.
    let waiting = decider.decide(&drop_table("r2", "tmp", Some(&id)), T);
    assert_eq!(waiting.decision, VerdictKind::Escalate);
    assert_eq!(waiting.escalation.unwrap().id.as_deref(), Some(id.as_str()));
    assert_eq!(decider.state().escalations().unwrap().len(), 1, "no second escalation");

    let now = arbiter_types::parse_rfc3339_ms("2026-11-26T02:10:00Z").unwrap();
    decider.resolve_escalation(&id, true, "alice", now).unwrap();
    let retried = decider.decide(&drop_table("r3", "tmp", Some(&id)), now);
    assert_eq!(kind_and_codes(&retried), (VerdictKind::Allow, vec![]));
    assert_eq!(retried.approved_by.as_deref(), Some("alice"));
    assert!(!retried.breakers.is_empty(), "the allowing policies' effects apply");

    let again = decider.decide(&drop_table("r4", "tmp", Some(&id)), now);
    assert_eq!(kind_and_codes(&again), (VerdictKind::Deny, vec!["escalation_used"]));
}

#[test]
fn approvals_do_not_transfer_and_refusals_say_why() {
    let decider = decider();
    let id = decider.decide(&drop_table("r1", "tmp", None), T).escalation.unwrap().id.unwrap();
    decider.resolve_escalation(&id, true, "alice", T).unwrap();
    let other = decider.decide(&drop_table("r2", "orders_daily", Some(&id)), T);
    assert_eq!(kind_and_codes(&other), (VerdictKind::Deny, vec!["escalation_mismatch"]));
    let unknown = decider.decide(&drop_table("r3", "tmp", Some("esc-nope")), T);
    assert_eq!(kind_and_codes(&unknown), (VerdictKind::Deny, vec!["escalation_unknown"]));

    let rejected_id = decider.decide(&drop_table("r4", "x", None), T).escalation.unwrap().id.unwrap();
    decider.resolve_escalation(&rejected_id, false, "bob", T).unwrap();
    let rejected = decider.decide(&drop_table("r5", "x", Some(&rejected_id)), T);
    assert_eq!(kind_and_codes(&rejected), (VerdictKind::Deny, vec!["escalation_rejected"]));
    assert!(decider.resolve_escalation(&rejected_id, true, "alice", T).is_err(), "decided once");
}

#[test]
fn an_unapproved_escalation_expires_into_a_deny() {
    let decider = decider();
    let id = decider.decide(&drop_table("r1", "tmp", None), T).escalation.unwrap().id.unwrap();
    let later = arbiter_types::parse_rfc3339_ms("2026-11-26T03:00:01Z").unwrap();
    // The retry still claims to be at 02:00: the decision's clock, not the
    // request's, says the escalation has expired.
    let backdated = drop_table("r2", "tmp", Some(&id));
    assert_eq!(backdated.timestamp_ms, Some(T));
    assert_eq!(kind_and_codes(&decider.decide(&backdated, later)), (VerdictKind::Deny, vec!["escalation_expired"]));
    assert!(decider.resolve_escalation(&id, true, "alice", later).is_err(), "too late to approve");
}

#[test]
fn an_approval_that_expired_is_not_revived_by_a_backdated_retry() {
    let decider = decider();
    let id = decider.decide(&drop_table("r1", "tmp", None), T).escalation.unwrap().id.unwrap();
    decider.resolve_escalation(&id, true, "alice", T + 1).unwrap();
    let later = arbiter_types::parse_rfc3339_ms("2026-11-26T03:00:01Z").unwrap();
    let mut backdated = drop_table("r2", "tmp", Some(&id));
    backdated.timestamp_ms = Some(T + 2);
    assert_eq!(kind_and_codes(&decider.decide(&backdated, later)), (VerdictKind::Deny, vec!["escalation_expired"]));
}

#[test]
fn owners_keep_their_requests_apart() {
    let decider = decider();
    let query = tool_call("q1", "warehouse.query", json!({"sql": "select 1"}));
    assert_eq!(decider.decide_as("monitor", &query, T).decision, VerdictKind::Allow);
    let foreign = decider.report_outcome_as("finance", "q1", arbiter_state::OutcomeStatus::Failure, None, T);
    assert!(foreign.is_err(), "another owner's request is unknown to it");
    decider.report_outcome_as("monitor", "q1", arbiter_state::OutcomeStatus::Success, None, T).unwrap();
    assert!(
        decider.report_outcome_as("monitor", "q1", arbiter_state::OutcomeStatus::Success, None, T).is_err(),
        "once"
    );
}

#[test]
fn a_claim_on_an_allowed_request_changes_nothing() {
    let decider = decider();
    let mut query = tool_call("q1", "warehouse.query", json!({"sql": "select 1"}));
    query.escalation_id = Some("esc-whatever".into());
    assert_eq!(decider.decide(&query, T).decision, VerdictKind::Allow);
}

#[test]
fn a_resent_escalated_request_never_reopens_its_escalation() {
    let decider = decider();
    let first = decider.decide(&drop_table("r1", "tmp", None), T);
    let id = first.escalation.unwrap().id.unwrap();
    decider.resolve_escalation(&id, true, "alice", T).unwrap();
    assert_eq!(decider.decide(&drop_table("r2", "tmp", Some(&id)), T).decision, VerdictKind::Allow);
    // The same request sent again (same id and time: the same escalation id)
    // must not turn the used approval back into a pending one.
    let resent = decider.decide(&drop_table("r1", "tmp", None), T);
    assert_eq!(resent.escalation.unwrap().id.as_deref(), Some(id.as_str()));
    assert!(matches!(decider.state().escalation(&id).unwrap().unwrap().status, EscalationStatus::Used { .. }));
    let again = decider.decide(&drop_table("r3", "tmp", Some(&id)), T);
    assert_eq!(kind_and_codes(&again), (VerdictKind::Deny, vec!["escalation_used"]));
}

#[test]
fn a_principal_cannot_flood_approvers_with_escalations() {
    let decider = decider();
    for i in 0..100 {
        let escalated = decider.decide(&drop_table(&format!("r{i}"), &format!("t{i}"), None), T);
        assert_eq!(escalated.decision, VerdictKind::Escalate, "{i}");
    }
    let refused = decider.decide(&drop_table("r100", "t100", None), T);
    assert_eq!(kind_and_codes(&refused), (VerdictKind::Deny, vec!["too_many_escalations"]));
    assert!(refused.reasons[0].message.contains("orders_daily/monitor"), "{:?}", refused.reasons);
    assert_eq!(decider.state().escalations().unwrap().len(), 100);
}
