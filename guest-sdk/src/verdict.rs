//! Building verdicts.

use crate::{BreakerConfig, BreakerGuard, Charge, Decision, Escalation, Obligation, Reason, Verdict};

impl Verdict {
    pub fn allow() -> Self {
        Verdict {
            decision: Decision::Allow,
            reasons: Vec::new(),
            obligations: Vec::new(),
            charges: Vec::new(),
            breakers: Vec::new(),
        }
    }

    /// Deny with a machine-readable `code` (snake_case) and a message.
    pub fn deny(code: &str, message: impl Into<String>) -> Self {
        Verdict { decision: Decision::Deny, ..Verdict::allow() }.with_reason(code, message)
    }

    /// Escalate to `approvers`; an approval stays valid `valid_for_seconds`.
    pub fn escalate(approvers: Vec<String>, valid_for_seconds: u32, code: &str, message: impl Into<String>) -> Self {
        Verdict { decision: Decision::Escalate(Escalation { approvers, valid_for_seconds }), ..Verdict::allow() }
            .with_reason(code, message)
    }

    pub fn with_reason(mut self, code: &str, message: impl Into<String>) -> Self {
        self.reasons.push(Reason { code: code.to_owned(), message: message.into() });
        self
    }

    pub fn with_obligation(mut self, obligation: Obligation) -> Self {
        self.obligations.push(obligation);
        self
    }

    pub fn with_charge(mut self, charge: Charge) -> Self {
        self.charges.push(charge);
        self
    }

    /// On allow, the host admits the request through this breaker (or
    /// denies it with `circuit_open`) and feeds it the request's outcome.
    pub fn with_breaker(mut self, key: String, config: BreakerConfig) -> Self {
        self.breakers.push(BreakerGuard { key, config });
        self
    }

    pub fn is_allow(&self) -> bool {
        matches!(self.decision, Decision::Allow)
    }

    pub fn is_deny(&self) -> bool {
        matches!(self.decision, Decision::Deny)
    }

    pub fn is_escalate(&self) -> bool {
        matches!(self.decision, Decision::Escalate(_))
    }

    /// Reason codes, sorted.
    pub fn codes(&self) -> Vec<&str> {
        let mut codes: Vec<&str> = self.reasons.iter().map(|r| r.code.as_str()).collect();
        codes.sort_unstable();
        codes
    }
}
