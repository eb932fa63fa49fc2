//! Deny-overrides combination of the enforced policies' results.

use arbiter_types::{
    BreakerGuard, Charge, DecisionReason, EscalationOffer, Obligation, PolicyOutcome, PolicyResult, VerdictKind,
};

use crate::manifest::FailMode;

/// The reason codes a fault denies with (see [`arbiter_types::FaultKind::reason_code`]).
pub use arbiter_types::{POLICY_FAULT, STATE_UNAVAILABLE};

/// A policy's result together with how the bundle treats it.
pub(crate) struct Counted<'a> {
    pub(crate) result: &'a PolicyResult,
    pub(crate) fail: FailMode,
}

/// What the allowing policies asked for: applied when the decision is
/// allow, or when an approval turns an escalation into one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    pub(crate) obligations: Vec<Obligation>,
    pub(crate) charges: Vec<Charge>,
    pub(crate) breakers: Vec<BreakerGuard>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Combined {
    pub(crate) decision: VerdictKind,
    pub(crate) reasons: Vec<DecisionReason>,
    pub(crate) escalation: Option<EscalationOffer>,
    pub(crate) effects: Effects,
}

/// Any deny → deny; else any escalate → escalate (approvers merged, the
/// shortest validity wins); else allow with every obligation and charge.
/// Monitor-mode results never count; a fault counts as a deny with code
/// `policy_fault` unless its policy fails open.
pub(crate) fn combine<'a>(results: impl IntoIterator<Item = Counted<'a>>) -> Combined {
    let mut denies = Vec::new();
    let mut escalations = Vec::new();
    let mut approvers: Vec<String> = Vec::new();
    let mut valid_for: Option<u32> = None;
    let mut effects = Effects::default();
    for Counted { result, fail } in results {
        if !result.enforced {
            continue;
        }
        let reason = |code: &str, message: &str| DecisionReason {
            policy: result.name.clone(),
            code: code.to_owned(),
            message: message.to_owned(),
        };
        match &result.outcome {
            PolicyOutcome::Fault { kind, detail } => {
                if fail == FailMode::Closed {
                    denies.push(reason(
                        kind.reason_code(),
                        &format!("policy `{}` faulted ({kind}): {detail}", result.name),
                    ));
                }
            }
            PolicyOutcome::Verdict(verdict) => match verdict.kind {
                VerdictKind::Deny => denies.extend(verdict.reasons.iter().map(|r| reason(&r.code, &r.message))),
                VerdictKind::Escalate => {
                    escalations.extend(verdict.reasons.iter().map(|r| reason(&r.code, &r.message)));
                    if let Some(e) = &verdict.escalation {
                        approvers.extend(e.approvers.iter().cloned());
                        valid_for = Some(valid_for.map_or(e.valid_for_seconds, |v| v.min(e.valid_for_seconds)));
                    }
                }
                VerdictKind::Allow => {
                    effects.obligations.extend(verdict.obligations.iter().cloned());
                    effects.charges.extend(verdict.charges.iter().cloned());
                    effects.breakers.extend(verdict.breakers.iter().cloned());
                }
            },
        }
    }
    if !denies.is_empty() {
        return Combined { decision: VerdictKind::Deny, reasons: denies, escalation: None, effects };
    }
    if !escalations.is_empty() {
        approvers.sort();
        approvers.dedup();
        let offer =
            EscalationOffer { id: None, approvers, valid_for_seconds: valid_for.unwrap_or(0), expires_at: None };
        return Combined { decision: VerdictKind::Escalate, reasons: escalations, escalation: Some(offer), effects };
    }
    Combined { decision: VerdictKind::Allow, reasons: vec![], escalation: None, effects }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_types::{Escalation, FaultKind, Reason, Verdict};

    fn result(name: &str, enforced: bool, outcome: PolicyOutcome) -> PolicyResult {
        PolicyResult {
            name: name.into(),
            version: "1.0.0".into(),
            digest: "d".into(),
            enforced,
            outcome,
            elapsed_us: 1,
        }
    }

    fn verdict(kind: VerdictKind, code: &str) -> PolicyOutcome {
        let mut v = Verdict::allow();
        v.kind = kind;
        if kind != VerdictKind::Allow {
            v.reasons.push(Reason { code: code.into(), message: String::new() });
        }
        if kind == VerdictKind::Escalate {
            v.escalation = Some(Escalation { approvers: vec![format!("{code}-team")], valid_for_seconds: 60 });
        }
        PolicyOutcome::Verdict(v)
    }

    fn fault() -> PolicyOutcome {
        PolicyOutcome::Fault { kind: FaultKind::OutOfFuel, detail: "x".into() }
    }

    fn state_fault() -> PolicyOutcome {
        PolicyOutcome::Fault { kind: FaultKind::StateUnavailable, detail: "redis down".into() }
    }

    fn run(results: &[(PolicyResult, FailMode)]) -> Combined {
        combine(results.iter().map(|(result, fail)| Counted { result, fail: *fail }))
    }

    /// Table of (policy results, expected decision, expected codes).
    #[test]
    fn deny_overrides_escalate_overrides_allow() {
        use FailMode::{Closed, Open};
        use VerdictKind::{Allow, Deny, Escalate};
        type Case = (Vec<(PolicyResult, FailMode)>, VerdictKind, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            (vec![], Allow, vec![]),
            (vec![(result("a", true, verdict(Allow, "")), Closed)], Allow, vec![]),
            (
                vec![
                    (result("a", true, verdict(Escalate, "e")), Closed),
                    (result("b", true, verdict(Deny, "d")), Closed),
                ],
                Deny,
                vec!["d"],
            ),
            (
                vec![
                    (result("a", true, verdict(Escalate, "e1")), Closed),
                    (result("b", true, verdict(Escalate, "e2")), Closed),
                ],
                Escalate,
                vec!["e1", "e2"],
            ),
            (vec![(result("m", false, verdict(Deny, "d")), Closed)], Allow, vec![]),
            (vec![(result("f", true, fault()), Closed)], Deny, vec![POLICY_FAULT]),
            (vec![(result("f", true, fault()), Open)], Allow, vec![]),
            (vec![(result("s", true, state_fault()), Closed)], Deny, vec![STATE_UNAVAILABLE]),
            (vec![(result("s", true, state_fault()), Open)], Allow, vec![]),
            (vec![(result("f", false, fault()), Closed)], Allow, vec![]),
        ];
        for (results, decision, codes) in cases {
            let combined = run(&results);
            assert_eq!(combined.decision, decision, "{results:?}");
            let got: Vec<&str> = combined.reasons.iter().map(|r| r.code.as_str()).collect();
            assert_eq!(got, codes, "{results:?}");
        }
    }

    #[test]
    fn escalations_merge_approvers_and_take_the_shortest_validity() {
        let mut short = Verdict::allow();
        short.kind = VerdictKind::Escalate;
        short.reasons.push(Reason { code: "a".into(), message: String::new() });
        short.escalation = Some(Escalation { approvers: vec!["oncall".into(), "lead".into()], valid_for_seconds: 30 });
        let results = vec![
            (result("x", true, PolicyOutcome::Verdict(short)), FailMode::Closed),
            (result("y", true, verdict(VerdictKind::Escalate, "oncall")), FailMode::Closed),
        ];
        let offer = run(&results).escalation.unwrap();
        assert_eq!(offer.approvers, vec!["lead", "oncall", "oncall-team"]);
        assert_eq!(offer.valid_for_seconds, 30);
    }
}
