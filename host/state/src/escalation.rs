//! Escalations: requests waiting for a human. An approved escalation lets
//! the same request (same fingerprint) through once, before it expires.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Escalations are forgotten this long after they expired.
const RETENTION_MS: i64 = 7 * 86_400_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum EscalationStatus {
    Pending,
    Approved {
        by: String,
        at_ms: i64,
    },
    Rejected {
        by: String,
        at_ms: i64,
    },
    /// Approved, and the retried request went through.
    Used {
        by: String,
        at_ms: i64,
        request_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub id: String,
    /// The request that was escalated.
    pub request_id: String,
    /// Identifies "the same request" (principal and action, not id or time).
    pub fingerprint: String,
    pub approvers: Vec<String>,
    /// What the request does, for the approver.
    pub summary: String,
    /// Why it was escalated (`policy: code: message`).
    pub reasons: Vec<String>,
    pub created_ms: i64,
    pub expires_ms: i64,
    pub status: EscalationStatus,
}

/// Why an escalation could not be used or resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum EscalationRefused {
    #[error("no escalation `{0}`")]
    Unknown(String),
    #[error("escalation `{0}` expired")]
    Expired(String),
    #[error("escalation `{0}` is still waiting for approval")]
    Pending(String),
    #[error("escalation `{id}` was rejected by {by}")]
    Rejected { id: String, by: String },
    #[error("escalation `{0}` was already used")]
    Used(String),
    #[error("escalation `{0}` was granted for a different request")]
    DifferentRequest(String),
    #[error("escalation `{0}` was already decided")]
    AlreadyDecided(String),
}

impl EscalationRefused {
    /// Reason code of a decision refused because of it.
    pub fn code(&self) -> &'static str {
        match self {
            EscalationRefused::Unknown(_) => "escalation_unknown",
            EscalationRefused::Expired(_) => "escalation_expired",
            EscalationRefused::Pending(_) => "needs_approval",
            EscalationRefused::Rejected { .. } => "escalation_rejected",
            EscalationRefused::Used(_) => "escalation_used",
            EscalationRefused::DifferentRequest(_) => "escalation_mismatch",
            EscalationRefused::AlreadyDecided(_) => "escalation_decided",
        }
    }
}

/// An approver's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub escalation_id: String,
    pub approve: bool,
    pub by: String,
    pub now_ms: i64,
}

/// A retried request that claims an approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalClaim {
    pub escalation_id: String,
    pub fingerprint: String,
    pub request_id: String,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Escalations {
    by_id: HashMap<String, Escalation>,
}

impl Escalation {
    /// Approves or rejects it, if still pending and not expired.
    pub(crate) fn resolve(&mut self, r: &Resolution) -> Result<(), EscalationRefused> {
        if r.now_ms >= self.expires_ms {
            return Err(EscalationRefused::Expired(self.id.clone()));
        }
        if self.status != EscalationStatus::Pending {
            return Err(EscalationRefused::AlreadyDecided(self.id.clone()));
        }
        self.status = if r.approve {
            EscalationStatus::Approved { by: r.by.clone(), at_ms: r.now_ms }
        } else {
            EscalationStatus::Rejected { by: r.by.clone(), at_ms: r.now_ms }
        };
        Ok(())
    }

    /// Checks a claim without using it up.
    pub(crate) fn check(&self, claim: &ApprovalClaim, now_ms: i64) -> Result<(), EscalationRefused> {
        let id = &self.id;
        if self.fingerprint != claim.fingerprint {
            return Err(EscalationRefused::DifferentRequest(id.clone()));
        }
        match &self.status {
            EscalationStatus::Used { .. } => Err(EscalationRefused::Used(id.clone())),
            EscalationStatus::Rejected { by, .. } => {
                Err(EscalationRefused::Rejected { id: id.clone(), by: by.clone() })
            }
            _ if now_ms >= self.expires_ms => Err(EscalationRefused::Expired(id.clone())),
            EscalationStatus::Pending => Err(EscalationRefused::Pending(id.clone())),
            EscalationStatus::Approved { .. } => Ok(()),
        }
    }

    /// Uses up a checked claim.
    pub(crate) fn consume(&mut self, claim: &ApprovalClaim, now_ms: i64) {
        if let EscalationStatus::Approved { by, .. } = &self.status {
            self.status =
                EscalationStatus::Used { by: by.clone(), at_ms: now_ms, request_id: claim.request_id.clone() };
        }
    }

    /// How long it is kept after it was created.
    pub(crate) fn retention_ms(&self) -> i64 {
        (self.expires_ms - self.created_ms).max(0) + RETENTION_MS
    }
}

impl Escalations {
    pub(crate) fn open(&mut self, escalation: Escalation) {
        self.by_id.insert(escalation.id.clone(), escalation);
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Escalation> {
        self.by_id.get(id)
    }

    pub(crate) fn all(&self) -> Vec<Escalation> {
        let mut all: Vec<Escalation> = self.by_id.values().cloned().collect();
        sort_oldest_first(&mut all);
        all
    }

    pub(crate) fn resolve(&mut self, r: &Resolution) -> Result<Escalation, EscalationRefused> {
        let e =
            self.by_id.get_mut(&r.escalation_id).ok_or_else(|| EscalationRefused::Unknown(r.escalation_id.clone()))?;
        e.resolve(r)?;
        Ok(e.clone())
    }

    /// Checks a claim without using it up.
    pub(crate) fn check(&self, claim: &ApprovalClaim, now_ms: i64) -> Result<(), EscalationRefused> {
        let id = &claim.escalation_id;
        self.by_id.get(id).ok_or_else(|| EscalationRefused::Unknown(id.clone()))?.check(claim, now_ms)
    }

    /// Uses up a checked claim.
    pub(crate) fn consume(&mut self, claim: &ApprovalClaim, now_ms: i64) {
        if let Some(e) = self.by_id.get_mut(&claim.escalation_id) {
            e.consume(claim, now_ms);
        }
    }

    pub(crate) fn expire(&mut self, now_ms: i64) {
        self.by_id.retain(|_, e| e.expires_ms + RETENTION_MS >= now_ms);
    }
}

pub(crate) fn sort_oldest_first(escalations: &mut [Escalation]) {
    escalations.sort_by(|a, b| (a.created_ms, &a.id).cmp(&(b.created_ms, &b.id)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(id: &str) -> Escalation {
        Escalation {
            id: id.into(),
            request_id: "r1".into(),
            fingerprint: "fp".into(),
            approvers: vec!["oncall".into()],
            summary: "drop table".into(),
            reasons: vec![],
            created_ms: 0,
            expires_ms: 3_600_000,
            status: EscalationStatus::Pending,
        }
    }

    fn claim(id: &str, fingerprint: &str) -> ApprovalClaim {
        ApprovalClaim { escalation_id: id.into(), fingerprint: fingerprint.into(), request_id: "r2".into() }
    }

    fn resolve(id: &str, approve: bool, now_ms: i64) -> Resolution {
        Resolution { escalation_id: id.into(), approve, by: "alice".into(), now_ms }
    }

    #[test]
    fn approve_then_use_once() {
        let mut e = Escalations::default();
        e.open(pending("e1"));
        assert_eq!(e.check(&claim("e1", "fp"), 1), Err(EscalationRefused::Pending("e1".into())));
        e.resolve(&resolve("e1", true, 10)).unwrap();
        assert_eq!(e.check(&claim("e1", "other"), 11), Err(EscalationRefused::DifferentRequest("e1".into())));
        assert_eq!(e.check(&claim("e1", "fp"), 11), Ok(()));
        e.consume(&claim("e1", "fp"), 11);
        assert_eq!(e.check(&claim("e1", "fp"), 12), Err(EscalationRefused::Used("e1".into())));
        assert_eq!(e.resolve(&resolve("e1", false, 13)).unwrap_err(), EscalationRefused::AlreadyDecided("e1".into()));
    }

    #[test]
    fn rejection_expiry_and_unknown_ids() {
        let mut e = Escalations::default();
        e.open(pending("e1"));
        e.open(pending("e2"));
        e.resolve(&resolve("e1", false, 1)).unwrap();
        assert!(matches!(e.check(&claim("e1", "fp"), 2), Err(EscalationRefused::Rejected { .. })));
        e.resolve(&resolve("e2", true, 1)).unwrap();
        assert_eq!(e.check(&claim("e2", "fp"), 3_600_000), Err(EscalationRefused::Expired("e2".into())));
        assert_eq!(e.resolve(&resolve("e3", true, 1)).unwrap_err(), EscalationRefused::Unknown("e3".into()));
        e.open(pending("e4"));
        assert_eq!(e.resolve(&resolve("e4", true, 3_600_000)).unwrap_err(), EscalationRefused::Expired("e4".into()));
    }
}
