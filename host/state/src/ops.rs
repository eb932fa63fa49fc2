//! The operations that change state. Each is journaled as it is applied,
//! so the embedded store rebuilds its state by applying them again.

use arbiter_types::{BreakerConfig, BreakerGuard, Charge, ChargeUnit};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::escalation::{ApprovalClaim, Escalation, EscalationRefused, Resolution};
use crate::halt::{Halt, HaltScope};
use crate::history::{PastToolCall, RunKey};
use crate::spend::Spent;
use crate::tools::Listing;

/// What an allowed decision commits, all or nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    pub request_id: String,
    pub now_ms: i64,
    pub run: RunKey,
    pub agent: String,
    pub team: String,
    pub charges: Vec<Charge>,
    pub breakers: Vec<BreakerGuard>,
    /// For tool calls: the tool and its arguments, kept in the run history.
    pub tool_call: Option<(String, Map<String, Value>)>,
    /// For LLM requests: what was reserved, for reconciliation and spend.
    pub llm: Option<LlmUsage>,
    /// An approval the request claims; used up with the commit.
    pub approval: Option<ApprovalClaim>,
}

impl Commit {
    /// The run-history entry of an allowed tool call.
    pub(crate) fn past_tool_call(&self) -> Option<PastToolCall> {
        let (tool, arguments) = self.tool_call.as_ref()?;
        Some(PastToolCall {
            request_id: self.request_id.clone(),
            timestamp_ms: self.now_ms,
            tool: tool.clone(),
            arguments: arguments.clone(),
        })
    }

    /// The breakers it passes, with their configs.
    pub(crate) fn guards(&self) -> Vec<(String, BreakerConfig)> {
        self.breakers.iter().map(|g| (g.key.clone(), g.config)).collect()
    }

    /// What an LLM request spends: its tokens, and the money charged by
    /// its budgets counted in USD.
    pub(crate) fn spent(&self) -> Option<Spent<'_>> {
        let llm = self.llm.as_ref()?;
        let micro_usd = self.charges.iter().filter(|c| c.unit == ChargeUnit::MicroUsd).map(|c| c.amount).max();
        Some(Spent {
            pipeline: &self.run.pipeline,
            agent: &self.agent,
            team: &self.team,
            model: &llm.model,
            prompt_tokens: llm.prompt_tokens,
            output_tokens: llm.output_tokens,
            micro_usd: micro_usd.unwrap_or(0),
        })
    }
}

/// What an allowed LLM request reserved: its prompt and the most output
/// it may produce (after any clamp).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmUsage {
    pub model: String,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
}

impl LlmUsage {
    pub fn tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.output_tokens)
    }
}

/// Why a commit was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommitRefused {
    /// A charge would cross its limit.
    BudgetExhausted { scope: String, used: u64, amount: u64, limit: u64 },
    /// A breaker is open, or half-open with no probe left.
    CircuitOpen { key: String },
    /// The claimed approval does not hold.
    Escalation(EscalationRefused),
    /// A reservation under this request id is still open: a second one
    /// would replace it, and settling either would release the other.
    DuplicateRequest { request_id: String },
}

impl CommitRefused {
    pub fn code(&self) -> &'static str {
        match self {
            CommitRefused::BudgetExhausted { .. } => "budget_exhausted",
            CommitRefused::CircuitOpen { .. } => "circuit_open",
            CommitRefused::Escalation(refused) => refused.code(),
            CommitRefused::DuplicateRequest { .. } => "duplicate_request",
        }
    }

    pub fn message(&self) -> String {
        match self {
            CommitRefused::BudgetExhausted { scope, used, amount, limit } => {
                format!("reserving {amount} on `{scope}` would cross its limit ({used} of {limit} used)")
            }
            CommitRefused::CircuitOpen { key } => format!("circuit `{key}` is open"),
            CommitRefused::Escalation(refused) => refused.to_string(),
            CommitRefused::DuplicateRequest { request_id } => {
                format!("request id `{request_id}` already holds an open reservation; give each request its own id")
            }
        }
    }
}

/// Actual usage of an allowed LLM request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    pub request_id: String,
    pub now_ms: i64,
    pub prompt_tokens: u64,
    pub output_tokens: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    Success,
    Failure,
    Timeout,
}

/// How an allowed call ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeReport {
    pub request_id: String,
    pub now_ms: i64,
    pub status: OutcomeStatus,
    pub latency_ms: Option<u64>,
}

/// A journaled operation, as read back.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Op {
    Commit(Box<Commit>),
    Usage(UsageReport),
    Outcome(OutcomeReport),
    OpenEscalation(Box<Escalation>),
    Resolve(Resolution),
    Listing(Listing<'static>),
    Halt(Halt),
    Resume { scope: HaltScope },
    Claim { key: String, until_ms: i64, now_ms: i64 },
}

/// A journaled operation, as written.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum OpRef<'a> {
    Commit(&'a Commit),
    Usage(&'a UsageReport),
    Outcome(&'a OutcomeReport),
    OpenEscalation(&'a Escalation),
    Resolve(&'a Resolution),
    Listing(&'a Listing<'a>),
    Halt(&'a Halt),
    Resume { scope: &'a HaltScope },
    Claim { key: &'a str, until_ms: i64, now_ms: i64 },
}
