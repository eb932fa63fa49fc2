//! The host's answer to a decide request: the combined verdict of a bundle.

use serde::{Deserialize, Serialize};

use crate::fault::FaultKind;
use crate::verdict::{BreakerGuard, Charge, Obligation, Verdict, VerdictKind};

/// Which bundle decided: its name and version, as its manifest states them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRef {
    /// The bundle's `name`.
    pub name: String,
    /// The bundle's semantic version.
    pub version: String,
}

/// A reason, attributed to the policy that gave it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionReason {
    /// The policy that gave it (`arbiter` for the host's own reasons).
    pub policy: String,
    /// A stable, machine-readable code (`needs_approval`, `policy_fault`).
    pub code: String,
    /// What a person reads.
    pub message: String,
}

/// Who may approve an escalated request, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationOffer {
    /// Set once the escalation is recorded: retry with it after approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Who may approve: the union of every escalating policy's approvers.
    pub approvers: Vec<String>,
    /// How long an approval is good for: the shortest any policy asked.
    pub valid_for_seconds: u32,
    /// When the recorded escalation expires (RFC 3339), once recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// How one policy's evaluation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum PolicyOutcome {
    /// The policy returned a verdict.
    Verdict(Verdict),
    /// The policy trapped, ran out of fuel, time or memory, or returned an
    /// invalid verdict.
    Fault {
        /// Which of those.
        kind: FaultKind,
        /// What the sandbox said, for the operator.
        detail: String,
    },
}

/// One evaluated policy, for the audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyResult {
    /// The policy's name in the bundle.
    pub name: String,
    /// Its version, as the manifest pins it.
    pub version: String,
    /// `sha256:` digest of its component.
    pub digest: String,
    /// Monitor-mode results are recorded but never enforced.
    pub enforced: bool,
    /// How its evaluation ended (flattened: `outcome`, then its fields).
    #[serde(flatten)]
    pub outcome: PolicyOutcome,
    /// Time spent in the policy, in microseconds.
    pub elapsed_us: u64,
}

/// The combined decision: deny overrides escalate overrides allow.
///
/// Other crates start one with [`Decision::bare`] and set the rest: fields
/// may be added, which a struct literal would not survive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Decision {
    /// The request's `id`.
    pub id: String,
    /// The combined verdict.
    pub decision: VerdictKind,
    /// Reasons of the winning kind only (all deny reasons for a deny, all
    /// escalate reasons for an escalate, none for an allow).
    pub reasons: Vec<DecisionReason>,
    /// Who may approve, when the decision is escalate.
    pub escalation: Option<EscalationOffer>,
    /// What the gateway must do to let the action through (allow only).
    pub obligations: Vec<Obligation>,
    /// Budget reservations the decision committed (allow only).
    pub charges: Vec<Charge>,
    /// Breakers the allowed request passed (its outcome feeds them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakers: Vec<BreakerGuard>,
    /// The bundle that decided.
    pub bundle: BundleRef,
    /// Every evaluated policy, in bundle order, enforced or not.
    pub policies: Vec<PolicyResult>,
    /// Set when an approved escalation let this request through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
}

impl Decision {
    /// A decision of `bundle` with nothing but its verdict and reasons: the
    /// host's own answers (wrong environment, overload), and the base of
    /// any other (set the fields it needs on it).
    pub fn bare(id: impl Into<String>, decision: VerdictKind, reasons: Vec<DecisionReason>, bundle: BundleRef) -> Self {
        Decision {
            id: id.into(),
            decision,
            reasons,
            escalation: None,
            obligations: vec![],
            charges: vec![],
            breakers: vec![],
            bundle,
            policies: vec![],
            approved_by: None,
        }
    }

    /// Reason codes of the decision, sorted, as the scenario traces state them.
    pub fn codes(&self) -> Vec<&str> {
        let mut codes: Vec<&str> = self.reasons.iter().map(|r| r.code.as_str()).collect();
        codes.sort_unstable();
        codes
    }

    /// The spans to mask before the action goes on (redact obligations).
    pub fn redactions(&self) -> Vec<crate::Redaction> {
        self.obligations
            .iter()
            .filter_map(|o| match o {
                Obligation::Redact(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    /// Every span any evaluated policy named, whatever its verdict: what a
    /// record of the request (the audit log, an escalation's summary) must
    /// not show, even when the action was refused rather than masked.
    pub fn masks(&self) -> Vec<crate::Redaction> {
        let verdicts = self.policies.iter().filter_map(|p| match &p.outcome {
            PolicyOutcome::Verdict(verdict) => Some(&verdict.obligations),
            PolicyOutcome::Fault { .. } => None,
        });
        let mut masks: Vec<crate::Redaction> = verdicts
            .flatten()
            .chain(&self.obligations)
            .filter_map(|o| match o {
                Obligation::Redact(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        masks.sort_by(|a, b| (&a.pointer, a.start, a.end).cmp(&(&b.pointer, b.start, b.end)));
        masks.dedup();
        masks
    }

    /// The tools to leave out of a listing (hide-tool obligations).
    pub fn hidden_tools(&self) -> Vec<&str> {
        self.obligations
            .iter()
            .filter_map(|o| match o {
                Obligation::HideTool(name) => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The clamp obligation, if any policy imposed one (the smallest wins).
    pub fn clamp_max_output_tokens(&self) -> Option<u64> {
        self.obligations
            .iter()
            .filter_map(|o| match o {
                Obligation::ClampMaxOutputTokens(n) => Some(*n),
                Obligation::SummarizeContext(_) | Obligation::HideTool(_) | Obligation::Redact(_) => None,
            })
            .min()
    }
}
