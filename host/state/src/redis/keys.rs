//! Where each piece of state lives in Redis. Every key starts with the
//! namespace as a hash tag, `{ns}:`, so all keys of a namespace share one
//! Redis Cluster slot and one script can touch any of them
//! (docs/decisions/0008-redis-state.md).

use crate::history::RunKey;
use crate::ledger::Place;

/// Why a namespace cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("state namespace `{0}` must be 1 to 64 characters of [A-Za-z0-9_.-]")]
pub struct BadNamespace(pub String);

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str) -> Result<Self, BadNamespace> {
        let valid = !namespace.is_empty()
            && namespace.len() <= 64
            && namespace.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(BadNamespace(namespace.to_owned()));
        }
        Ok(Keys { prefix: format!("{{{namespace}}}:") })
    }

    fn key(&self, kind: &str, name: &str) -> String {
        format!("{}{kind}:{name}", self.prefix)
    }

    /// A run or calendar total (hash: `used`, `limit`), or a rolling series
    /// (hash: booking time → amount, and its windows' sums: `rolling.lua`).
    pub(crate) fn budget(&self, place: &Place) -> String {
        match place {
            Place::Total(key) => self.key("total", key),
            Place::Rolling { series, .. } => self.key("rolling", series),
        }
    }

    /// A rolling series' booking times (sorted set), beside its hash.
    pub(crate) fn rolling_stamps(&self, series: &str) -> String {
        self.key("rolling_stamps", series)
    }

    /// Calendar totals by last booking time, for gauges.
    pub(crate) fn totals_index(&self) -> String {
        format!("{}totals", self.prefix)
    }

    /// The total's name back from its key, as [`Keys::budget`] made it.
    pub(crate) fn total_name<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.prefix)?.strip_prefix("total:")
    }

    /// An unreconciled reservation, with its open spend (string: JSON).
    pub(crate) fn reservation(&self, request_id: &str) -> String {
        self.key("reservation", request_id)
    }

    /// A breaker (string: JSON).
    pub(crate) fn breaker(&self, key: &str) -> String {
        self.key("breaker", key)
    }

    /// Breaker keys by last use, for gauges.
    pub(crate) fn breakers_index(&self) -> String {
        format!("{}breakers", self.prefix)
    }

    /// The breakers an allowed request passed, until its outcome comes
    /// (string: JSON).
    pub(crate) fn awaiting(&self, request_id: &str) -> String {
        self.key("awaiting", request_id)
    }

    /// A run's allowed tool calls (list of JSON).
    pub(crate) fn history(&self, run: &RunKey) -> String {
        self.key("history", &format!("{}\u{1f}{}", run.pipeline, run.run))
    }

    /// An escalation (string: JSON).
    pub(crate) fn escalation(&self, id: &str) -> String {
        self.key("escalation", id)
    }

    /// Escalation ids by the time their record goes.
    pub(crate) fn escalations_index(&self) -> String {
        format!("{}escalations", self.prefix)
    }

    /// Ids of a principal's pending escalations by expiry.
    pub(crate) fn pending_escalations(&self, principal: &str) -> String {
        self.key("pending-escalations", principal)
    }

    /// Ids of every pending escalation by expiry.
    pub(crate) fn all_pending_escalations(&self) -> String {
        format!("{}pending-escalations", self.prefix)
    }

    /// Spend of one UTC day (hash: `<who>\n<counter>` → amount).
    pub(crate) fn spend(&self, day_ms: i64) -> String {
        self.key("spend", &day_ms.to_string())
    }

    /// Halts in force (hash: scope → JSON).
    pub(crate) fn halts(&self) -> String {
        format!("{}halts", self.prefix)
    }

    /// A once-only mark (string, expiring when the claim lapses).
    pub(crate) fn claim(&self, key: &str) -> String {
        self.key("claim", key)
    }

    /// Days with spend.
    pub(crate) fn spend_index(&self) -> String {
        format!("{}spend-days", self.prefix)
    }

    // The tool registry takes four keys per listing, all known before the
    // script runs (so Redis Cluster routes it, and one script keeps it all
    // or nothing), and one pipeline of three HMGETs to read: per-name sets
    // would need the keys of the names a listing drops, known only once
    // read. The price is one hash of every name's listers, rewritten per
    // name a listing adds or drops.

    /// Servers with anything remembered (hash: server → digest of its
    /// current listing, so an unchanged listing is seen with one HGET).
    pub(crate) fn tool_servers(&self) -> String {
        format!("{}tool-servers", self.prefix)
    }

    /// A server's first listings (hash: tool name → JSON digest and time),
    /// kept for good.
    pub(crate) fn tools_first(&self, server: &str) -> String {
        self.key("tools-first", server)
    }

    /// A server's current listing (hash: tool name → JSON digest and
    /// definition).
    pub(crate) fn tools_current(&self, server: &str) -> String {
        self.key("tools-current", server)
    }

    /// Who lists each tool name now (hash: tool name → JSON array of
    /// servers, unsorted; a name nobody lists has no field).
    pub(crate) fn tool_listers(&self) -> String {
        format!("{}tool-listers", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_namespace_hash_tag() {
        let keys = Keys::new("prod-eu").unwrap();
        let run = RunKey { pipeline: "p{x}".into(), run: "r".into() };
        for key in [
            keys.history(&run),
            keys.breaker("tool:a}"),
            keys.totals_index(),
            keys.spend(0),
            keys.pending_escalations("p/a"),
            keys.tools_first("{s}:x"),
            keys.tools_current("}{"),
        ] {
            assert!(key.starts_with("{prod-eu}:"), "{key}");
        }
        assert_eq!(keys.total_name(&keys.budget(&Place::Total("tokens|s|run".into()))), Some("tokens|s|run"));
    }

    #[test]
    fn namespaces_that_would_break_the_hash_tag_are_refused() {
        for bad in ["", "a}b", "a{b", "with space", &"x".repeat(65)] {
            assert!(Keys::new(bad).is_err(), "{bad:?}");
        }
    }
}
