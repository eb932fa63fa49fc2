//! The latest decisions of this replica, for the console's list: a few
//! fields each (never arguments), with the audit record's `seq` to link
//! to it. Bounded; the audit log is the record.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use arbiter_types::{Action, Decision, Request, VerdictKind};

/// Decisions kept.
const KEPT: usize = 1000;

#[derive(Debug, Clone)]
pub(crate) struct Recent {
    pub(crate) at_ms: i64,
    pub(crate) source: &'static str,
    pub(crate) request_id: String,
    pub(crate) pipeline: String,
    pub(crate) agent: String,
    pub(crate) team: String,
    /// `tool <name>` or `model <name>`.
    pub(crate) action: String,
    pub(crate) decision: VerdictKind,
    pub(crate) codes: Vec<String>,
    /// Its audit record, if one was written.
    pub(crate) seq: Option<u64>,
}

#[derive(Debug, Default)]
pub(crate) struct RecentDecisions(Mutex<VecDeque<Recent>>);

impl RecentDecisions {
    pub(crate) fn push(
        &self,
        request: &Request,
        decision: &Decision,
        source: &'static str,
        at_ms: i64,
        seq: Option<u64>,
    ) {
        let p = &request.principal;
        let action = match &request.action {
            Action::ToolCall(call) => format!("tool {}", call.tool),
            Action::LlmRequest(llm) => format!("model {}", llm.model),
            Action::ToolListing(listing) => format!("listing of {}", listing.server),
            Action::ToolResult(result) => format!("result of {}", result.call.tool),
        };
        let entry = Recent {
            at_ms,
            source,
            request_id: request.id.clone(),
            pipeline: p.pipeline.clone(),
            agent: p.agent.clone(),
            team: p.team.clone(),
            action,
            decision: decision.decision,
            codes: decision.reasons.iter().map(|r| r.code.clone()).collect(),
            seq,
        };
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(entry);
    }

    /// Newest first.
    pub(crate) fn newest_first(&self) -> Vec<Recent> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).iter().rev().cloned().collect()
    }
}
