//! Escalations: requests waiting for a human. An approved escalation lets
//! the same request (same fingerprint) through once, before it expires.

use std::collections::{BTreeMap, HashMap};

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
    /// Who asked (`<pipeline>/<agent>`): pending escalations are capped per
    /// principal ([`crate::StoreConfig::max_pending_per_principal`]).
    #[serde(default)]
    pub principal: String,
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
    /// Not opened: the principal has `limit` escalations waiting already.
    #[error(
        "`{principal}` already has {limit} escalations waiting for approval; resolve some or let them expire first"
    )]
    TooManyPending { principal: String, limit: usize },
    /// Not opened: the store holds `limit` escalations waiting already.
    #[error("{limit} escalations are waiting for approval already; resolve some or let them expire first")]
    TooManyPendingOverall { limit: usize },
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
            EscalationRefused::TooManyPending { .. } | EscalationRefused::TooManyPendingOverall { .. } => {
                "too_many_escalations"
            }
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

/// How many escalations may wait for approval at once (pending and not
/// expired): anyone who gets a decision can open one, and each is kept
/// for days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingLimits {
    pub(crate) per_principal: usize,
    pub(crate) overall: usize,
}

impl PendingLimits {
    /// The refusal of one more escalation of `principal`, given how many are
    /// pending for it and overall.
    pub(crate) fn refusal(&self, principal: &str, of_principal: usize, overall: usize) -> Option<EscalationRefused> {
        if of_principal >= self.per_principal {
            Some(self.principal_full(principal))
        } else if overall >= self.overall {
            Some(self.overall_full())
        } else {
            None
        }
    }

    pub(crate) fn principal_full(&self, principal: &str) -> EscalationRefused {
        EscalationRefused::TooManyPending { principal: principal.to_owned(), limit: self.per_principal }
    }

    pub(crate) fn overall_full(&self) -> EscalationRefused {
        EscalationRefused::TooManyPendingOverall { limit: self.overall }
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(from = "StoredEscalations")]
pub(crate) struct Escalations {
    by_id: HashMap<String, Escalation>,
    /// Derived from `by_id` (rebuilt on load), so an open counts without a
    /// scan.
    #[serde(skip)]
    pending: Pending,
}

/// What a snapshot holds of [`Escalations`].
#[derive(Deserialize)]
struct StoredEscalations {
    by_id: HashMap<String, Escalation>,
}

impl From<StoredEscalations> for Escalations {
    fn from(stored: StoredEscalations) -> Self {
        let mut pending = Pending::default();
        stored.by_id.values().filter(|e| e.status == EscalationStatus::Pending).for_each(|e| pending.insert(e));
        Escalations { by_id: stored.by_id, pending }
    }
}

/// Pending escalations by expiry, counted overall and per principal. It
/// holds at most the overall limit (plus those opened by journal replay).
#[derive(Debug, Default, Clone)]
struct Pending {
    /// (expires, id) → principal, soonest expiry first.
    by_expiry: BTreeMap<(i64, String), String>,
    per_principal: HashMap<String, usize>,
}

impl Pending {
    fn insert(&mut self, e: &Escalation) {
        if self.by_expiry.insert((e.expires_ms, e.id.clone()), e.principal.clone()).is_none() {
            *self.per_principal.entry(e.principal.clone()).or_default() += 1;
        }
    }

    fn remove(&mut self, e: &Escalation) {
        if let Some(principal) = self.by_expiry.remove(&(e.expires_ms, e.id.clone())) {
            self.uncount(&principal);
        }
    }

    /// Drops those expired at `now_ms`.
    fn trim(&mut self, now_ms: i64) {
        while let Some(soonest) = self.by_expiry.first_entry().filter(|e| e.key().0 <= now_ms) {
            let principal = soonest.remove();
            self.uncount(&principal);
        }
    }

    fn uncount(&mut self, principal: &str) {
        if let Some(count) = self.per_principal.get_mut(principal) {
            *count -= 1;
            if *count == 0 {
                self.per_principal.remove(principal);
            }
        }
    }

    fn of(&self, principal: &str) -> usize {
        self.per_principal.get(principal).copied().unwrap_or(0)
    }
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

    /// Until when it is kept.
    pub(crate) fn kept_until_ms(&self) -> i64 {
        self.created_ms.saturating_add(self.retention_ms())
    }
}

impl Escalations {
    /// Records a new escalation, at its creation time. An id already kept
    /// keeps its record whatever its status: a re-sent request must never
    /// turn an approved, used or rejected escalation back into a pending
    /// one. `limits` caps the pending ones; `None` when replaying an open
    /// that was accepted when written.
    pub(crate) fn open(&mut self, e: &Escalation, limits: Option<&PendingLimits>) -> Result<(), EscalationRefused> {
        if self.by_id.contains_key(&e.id) {
            return Ok(());
        }
        if e.status == EscalationStatus::Pending {
            self.pending.trim(e.created_ms);
            if let Some(refused) = limits
                .and_then(|l| l.refusal(&e.principal, self.pending.of(&e.principal), self.pending.by_expiry.len()))
            {
                return Err(refused);
            }
            self.pending.insert(e);
        }
        self.by_id.insert(e.id.clone(), e.clone());
        Ok(())
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
        self.pending.remove(e);
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
        self.pending.trim(now_ms);
        self.by_id.retain(|_, e| e.kept_until_ms() >= now_ms);
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
            principal: "p/a".into(),
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
        e.open(&pending("e1"), None).unwrap();
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
        e.open(&pending("e1"), None).unwrap();
        e.open(&pending("e2"), None).unwrap();
        e.resolve(&resolve("e1", false, 1)).unwrap();
        assert!(matches!(e.check(&claim("e1", "fp"), 2), Err(EscalationRefused::Rejected { .. })));
        e.resolve(&resolve("e2", true, 1)).unwrap();
        assert_eq!(e.check(&claim("e2", "fp"), 3_600_000), Err(EscalationRefused::Expired("e2".into())));
        assert_eq!(e.resolve(&resolve("e3", true, 1)).unwrap_err(), EscalationRefused::Unknown("e3".into()));
        e.open(&pending("e4"), None).unwrap();
        assert_eq!(e.resolve(&resolve("e4", true, 3_600_000)).unwrap_err(), EscalationRefused::Expired("e4".into()));
    }

    const LIMITS: PendingLimits = PendingLimits { per_principal: 2, overall: 3 };

    fn of(principal: &str, id: &str) -> Escalation {
        Escalation { principal: principal.into(), ..pending(id) }
    }

    #[test]
    fn an_id_already_kept_is_never_reopened() {
        let mut e = Escalations::default();
        e.open(&pending("e1"), Some(&LIMITS)).unwrap();
        e.resolve(&resolve("e1", true, 10)).unwrap();
        e.open(&pending("e1"), Some(&LIMITS)).unwrap();
        assert!(matches!(e.get("e1").unwrap().status, EscalationStatus::Approved { .. }), "still approved");
        e.consume(&claim("e1", "fp"), 11);
        e.open(&pending("e1"), Some(&LIMITS)).unwrap();
        assert_eq!(e.check(&claim("e1", "fp"), 12), Err(EscalationRefused::Used("e1".into())), "still used");
        e.open(&pending("e2"), Some(&LIMITS)).unwrap();
        e.resolve(&resolve("e2", false, 10)).unwrap();
        e.open(&pending("e2"), None).unwrap();
        assert!(matches!(e.check(&claim("e2", "fp"), 12), Err(EscalationRefused::Rejected { .. })), "still rejected");
    }

    #[test]
    fn pending_escalations_are_capped_per_principal_and_overall() {
        let mut e = Escalations::default();
        e.open(&of("p", "p1"), Some(&LIMITS)).unwrap();
        e.open(&of("p", "p2"), Some(&LIMITS)).unwrap();
        let too_many = EscalationRefused::TooManyPending { principal: "p".into(), limit: 2 };
        assert_eq!(e.open(&of("p", "p3"), Some(&LIMITS)), Err(too_many.clone()));
        assert_eq!(too_many.code(), "too_many_escalations");
        assert!(e.get("p3").is_none(), "a refused escalation is not kept");
        // Re-sending one already kept adds nothing, so it is no refusal.
        e.open(&of("p", "p2"), Some(&LIMITS)).unwrap();
        e.open(&of("q", "q1"), Some(&LIMITS)).unwrap();
        assert_eq!(e.open(&of("r", "r1"), Some(&LIMITS)), Err(EscalationRefused::TooManyPendingOverall { limit: 3 }));
        // Resolving one frees its slot; a resolved one is no longer pending.
        e.resolve(&resolve("p1", true, 1)).unwrap();
        e.open(&of("p", "p3"), Some(&LIMITS)).unwrap();
        assert_eq!(e.open(&of("p", "p4"), Some(&LIMITS)), Err(too_many));
        // Expiring frees them all: opened at their expiry, nothing is pending.
        let later = |id: &str| Escalation { created_ms: 3_600_000, expires_ms: 7_200_000, ..of("p", id) };
        e.open(&later("p4"), Some(&LIMITS)).unwrap();
        e.open(&later("p5"), Some(&LIMITS)).unwrap();
        // Replaying a journaled open is not limited: it was accepted when written.
        e.open(&later("p6"), None).unwrap();
    }

    #[test]
    fn pending_counts_survive_a_snapshot() {
        let mut e = Escalations::default();
        e.open(&of("p", "p1"), Some(&LIMITS)).unwrap();
        e.open(&of("p", "p2"), Some(&LIMITS)).unwrap();
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("by_expiry"), "the index is derived, not stored: {json}");
        let mut loaded: Escalations = serde_json::from_str(&json).unwrap();
        assert!(matches!(loaded.open(&of("p", "p3"), Some(&LIMITS)), Err(EscalationRefused::TooManyPending { .. })));
        // An escalation written before principals were recorded still loads.
        let old: Escalation = serde_json::from_str(&json_without_principal()).unwrap();
        assert_eq!(old.principal, "");
    }

    fn json_without_principal() -> String {
        let mut value = serde_json::to_value(pending("old")).unwrap();
        value.as_object_mut().unwrap().remove("principal");
        value.to_string()
    }
}
