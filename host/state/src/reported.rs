//! Requests whose report (usage or outcome) was taken: a second report is
//! refused as such, not mistaken for one about an unknown request.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Request id → when its report was taken. Kept as long as the report
/// could have come at all (the reservation or outcome TTL), so it holds
/// at most the requests of one TTL.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Reported(HashMap<String, i64>);

impl Reported {
    pub(crate) fn insert(&mut self, request_id: &str, now_ms: i64) {
        self.0.insert(request_id.to_owned(), now_ms);
    }

    /// Whether the report of `request_id` was taken within `ttl_ms`
    /// before `now_ms`.
    pub(crate) fn contains(&self, request_id: &str, now_ms: i64, ttl_ms: i64) -> bool {
        self.0.get(request_id).is_some_and(|at| within(*at, now_ms, ttl_ms))
    }

    pub(crate) fn expire(&mut self, now_ms: i64, ttl_ms: i64) {
        self.0.retain(|_, at| within(*at, now_ms, ttl_ms));
    }
}

/// Whether something at `at_ms` is still kept at `now_ms` under `ttl_ms`.
pub(crate) fn within(at_ms: i64, now_ms: i64, ttl_ms: i64) -> bool {
    at_ms.saturating_add(ttl_ms) >= now_ms
}
