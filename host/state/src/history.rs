//! Run history: the allowed tool calls of each run, bounded and aged out.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A run, as history is kept per pipeline and run id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunKey {
    pub pipeline: String,
    pub run: String,
}

/// An allowed tool call of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PastToolCall {
    pub request_id: String,
    pub timestamp_ms: i64,
    pub tool: String,
    pub arguments: Map<String, Value>,
}

impl PastToolCall {
    /// Whether a history query for `tool` (any if `None`) since `since_ms`
    /// returns it.
    pub(crate) fn matches(&self, tool: Option<&str>, since_ms: i64) -> bool {
        self.timestamp_ms >= since_ms && tool.is_none_or(|t| self.tool == t)
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct History {
    runs: HashMap<String, RunHistory>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct RunHistory {
    last_ms: i64,
    calls: VecDeque<PastToolCall>,
}

fn key(run: &RunKey) -> String {
    format!("{}\u{1f}{}", run.pipeline, run.run)
}

impl History {
    pub(crate) fn record(&mut self, run: &RunKey, call: PastToolCall, max_calls: usize) {
        let entry = self.runs.entry(key(run)).or_default();
        entry.last_ms = entry.last_ms.max(call.timestamp_ms);
        entry.calls.push_back(call);
        while entry.calls.len() > max_calls {
            entry.calls.pop_front();
        }
    }

    pub(crate) fn tool_calls(&self, run: &RunKey, tool: Option<&str>, since_ms: i64) -> Vec<PastToolCall> {
        self.calls(run, tool, since_ms).cloned().collect()
    }

    pub(crate) fn count(&self, run: &RunKey, since_ms: i64) -> u32 {
        u32::try_from(self.calls(run, None, since_ms).count()).unwrap_or(u32::MAX)
    }

    fn calls<'a>(
        &'a self,
        run: &RunKey,
        tool: Option<&'a str>,
        since_ms: i64,
    ) -> impl Iterator<Item = &'a PastToolCall> {
        self.runs.get(&key(run)).into_iter().flat_map(|r| r.calls.iter()).filter(move |c| c.matches(tool, since_ms))
    }

    /// Forgets runs with no activity since `cutoff_ms`.
    pub(crate) fn age_out(&mut self, cutoff_ms: i64) {
        self.runs.retain(|_, r| r.last_ms >= cutoff_ms);
    }
}
