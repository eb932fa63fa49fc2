//! One state change as the host plans it and `apply.lua` carries it out,
//! all or nothing.

use serde::Serialize;

use crate::ops::CommitRefused;

#[derive(Debug, Default, Serialize)]
pub(crate) struct Plan {
    pub(crate) now: i64,
    /// How long run and calendar totals are kept after a booking.
    pub(crate) total_ttl_ms: i64,
    pub(crate) swaps: Vec<Swap>,
    pub(crate) checks: Vec<Check>,
    pub(crate) charges: Vec<ChargePlan>,
    pub(crate) adds: Vec<Add>,
    pub(crate) rolling_adds: Vec<RollingAdd>,
    pub(crate) sets: Vec<Set>,
    pub(crate) pushes: Vec<Push>,
    pub(crate) indexes: Vec<IndexEntry>,
    pub(crate) caps: Vec<Cap>,
    pub(crate) unindexes: Vec<Unindex>,
}

/// A record read and rewritten by the host: applied only if it still
/// holds `expect` (absent if `None`).
#[derive(Debug, Serialize)]
pub(crate) struct Swap {
    pub(crate) key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expect: Option<String>,
    pub(crate) value: String,
    pub(crate) ttl_ms: i64,
}

/// A record read and relied on, unchanged: applied only if it still holds
/// `expect` (absent if `None`).
#[derive(Debug, Serialize)]
pub(crate) struct Check {
    pub(crate) key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) expect: Option<String>,
}

/// A budget booking, checked against its limit on the server.
#[derive(Debug, Serialize)]
pub(crate) struct ChargePlan {
    pub(crate) key: String,
    pub(crate) scope: String,
    pub(crate) amount: u64,
    pub(crate) limit: u64,
    /// Set for rolling windows, with the series' stamps key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) window_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) stamps: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Add {
    pub(crate) key: String,
    pub(crate) field: String,
    pub(crate) delta: i128,
}

/// A change to a rolling series' booking at `at`, floored at zero.
#[derive(Debug, Serialize)]
pub(crate) struct RollingAdd {
    pub(crate) key: String,
    pub(crate) stamps: String,
    pub(crate) at: i64,
    pub(crate) delta: i128,
}

#[derive(Debug, Serialize)]
pub(crate) struct Set {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) ttl_ms: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Push {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) max: usize,
    pub(crate) ttl_ms: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct IndexEntry {
    pub(crate) key: String,
    pub(crate) member: String,
    pub(crate) score: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) drop_below: Option<i64>,
}

/// A member added to a sorted set scored by expiry only while fewer than
/// `max` members are unexpired at the plan's `now` (expired ones are
/// dropped first). Counted and added in the script: exact however many
/// replicas add at once.
#[derive(Debug, Serialize)]
pub(crate) struct Cap {
    pub(crate) key: String,
    pub(crate) member: String,
    pub(crate) score: i64,
    pub(crate) max: usize,
    /// The set is kept at least this long.
    pub(crate) ttl_ms: i64,
}

/// A member removed from a sorted set.
#[derive(Debug, Serialize)]
pub(crate) struct Unindex {
    pub(crate) key: String,
    pub(crate) member: String,
}

/// What the script did.
#[derive(Debug)]
pub(crate) enum Applied {
    Done,
    /// A swapped record changed since it was read: plan again.
    Conflict,
    Refused(Refusal),
}

/// Why the script applied nothing.
#[derive(Debug)]
pub(crate) enum Refusal {
    OverBudget(CommitRefused),
    /// The cap at this index of [`Plan::caps`] is full.
    Full(usize),
}

impl Plan {
    /// Every key the plan touches, for the script's KEYS.
    pub(crate) fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = Vec::new();
        keys.extend(self.swaps.iter().map(|s| s.key.as_str()));
        keys.extend(self.checks.iter().map(|c| c.key.as_str()));
        keys.extend(self.charges.iter().map(|c| c.key.as_str()));
        keys.extend(self.charges.iter().filter_map(|c| c.stamps.as_deref()));
        keys.extend(self.adds.iter().map(|a| a.key.as_str()));
        keys.extend(self.rolling_adds.iter().flat_map(|a| [a.key.as_str(), a.stamps.as_str()]));
        keys.extend(self.sets.iter().map(|s| s.key.as_str()));
        keys.extend(self.pushes.iter().map(|p| p.key.as_str()));
        keys.extend(self.indexes.iter().map(|i| i.key.as_str()));
        keys.extend(self.caps.iter().map(|c| c.key.as_str()));
        keys.extend(self.unindexes.iter().map(|u| u.key.as_str()));
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    /// Rewrites a record read as `expect` to `value`, or only checks it
    /// when `value` is what was read.
    pub(crate) fn rewrite(&mut self, key: String, expect: Option<String>, value: String, ttl_ms: i64) {
        if expect.as_deref() == Some(value.as_str()) {
            self.checks.push(Check { key, expect });
        } else {
            self.swaps.push(Swap { key, expect, value, ttl_ms });
        }
    }

    /// Adds `delta` to a hash field, floored at zero.
    pub(crate) fn add(&mut self, key: String, field: impl Into<String>, delta: i128) {
        if delta != 0 {
            self.adds.push(Add { key, field: field.into(), delta });
        }
    }
}

impl Applied {
    /// Reads the script's reply.
    pub(crate) fn from_reply(reply: &[String]) -> Result<Applied, String> {
        let number = |i: usize| reply.get(i).and_then(|v| v.parse::<u64>().ok()).ok_or_else(|| format!("{reply:?}"));
        match reply.first().map(String::as_str) {
            Some("ok") => Ok(Applied::Done),
            Some("conflict") => Ok(Applied::Conflict),
            Some("budget") => Ok(Applied::Refused(Refusal::OverBudget(CommitRefused::BudgetExhausted {
                scope: reply.get(1).cloned().unwrap_or_default(),
                used: number(2)?,
                amount: number(3)?,
                limit: number(4)?,
            }))),
            Some("full") => {
                Ok(Applied::Refused(Refusal::Full(usize::try_from(number(1)?).map_err(|e| e.to_string())?)))
            }
            _ => Err(format!("unexpected reply from the state script: {reply:?}")),
        }
    }
}
