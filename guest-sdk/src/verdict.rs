//! Building verdicts.

use std::ops::Range;

use crate::{BreakerConfig, BreakerGuard, Charge, Decision, Escalation, Obligation, Reason, Redaction, Verdict};

/// The most redactions the host accepts in one verdict; a verdict with more
/// has faulted. A policy with more spans to mask must refuse instead.
pub const MAX_REDACTIONS: usize = 256;

impl Verdict {
    /// Allow, with nothing attached yet.
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

    /// Adds a reason (on an allow, it is kept in the audit record).
    pub fn with_reason(mut self, code: &str, message: impl Into<String>) -> Self {
        self.reasons.push(Reason { code: code.to_owned(), message: message.into() });
        self
    }

    /// Adds an obligation the host applies if the combined decision is allow.
    pub fn with_obligation(mut self, obligation: Obligation) -> Self {
        self.obligations.push(obligation);
        self
    }

    /// Adds a budget charge the host commits if the combined decision is allow.
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

    /// On a tool listing: leave `tool` out of what the agent is shown.
    pub fn hide_tool(self, tool: &str) -> Self {
        self.with_obligation(Obligation::HideTool(tool.to_owned()))
    }

    /// Mask bytes `span` of the string at `pointer` (of the tool call's
    /// arguments, or of the tool result) as `[redacted:<code>]`. The span
    /// must lie on character boundaries of that string, and a verdict holds
    /// at most [`MAX_REDACTIONS`]: the host counts anything else as the
    /// policy's fault.
    pub fn redact(self, pointer: &str, span: Range<usize>, code: &str) -> Self {
        // Guest strings are below 4 GiB; natively an out-of-range offset
        // saturates, which the host would refuse rather than mis-mask.
        let offset = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.with_obligation(Obligation::Redact(Redaction {
            pointer: pointer.to_owned(),
            start: offset(span.start),
            end: offset(span.end),
            code: code.to_owned(),
        }))
    }

    /// The tools this verdict hides, in order.
    pub fn hidden_tools(&self) -> Vec<&str> {
        self.obligations
            .iter()
            .filter_map(|o| match o {
                Obligation::HideTool(tool) => Some(tool.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The redactions this verdict asks for, in order.
    pub fn redactions(&self) -> Vec<&Redaction> {
        self.obligations
            .iter()
            .filter_map(|o| match o {
                Obligation::Redact(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// True when the decision is allow.
    pub fn is_allow(&self) -> bool {
        matches!(self.decision, Decision::Allow)
    }

    /// True when the decision is deny.
    pub fn is_deny(&self) -> bool {
        matches!(self.decision, Decision::Deny)
    }

    /// True when the decision is escalate.
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
