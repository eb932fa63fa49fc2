//! A single policy's verdict, mirroring the `types` interface of the WIT
//! contract in plain Rust so that crates above the engine need no Wasm.

use serde::{Deserialize, Serialize};

/// What a verdict, or the combined decision, answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// Let the action through.
    Allow,
    /// Hold it for a human's approval.
    Escalate,
    /// Refuse it.
    Deny,
}

impl VerdictKind {
    /// The kind as JSON spells it (`deny`).
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Allow => "allow",
            VerdictKind::Escalate => "escalate",
            VerdictKind::Deny => "deny",
        }
    }
}

/// Why a policy denied or escalated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// A stable, machine-readable code (`needs_approval`).
    pub code: String,
    /// What a person reads.
    pub message: String,
}

/// Who may approve an escalation, and for how long.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// Approver names or groups, as credentials name them.
    pub approvers: Vec<String>,
    /// How long an approval is good for.
    pub valid_for_seconds: u32,
}

/// What the gateway must do to let an allowed action through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Obligation {
    /// Cap the LLM's output tokens at this many.
    ClampMaxOutputTokens(u64),
    /// Summarize the context down to this many tokens before sending it.
    SummarizeContext(u64),
    /// Leave this tool out of the listing the agent is shown.
    HideTool(String),
    /// Mask a span of a tool call's arguments or a tool result.
    Redact(crate::Redaction),
}

/// A calendar period, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarUnit {
    /// The current minute.
    Minute,
    /// The current hour.
    Hour,
    /// The current day.
    Day,
    /// The current month.
    Month,
}

/// The period a budget counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Window {
    /// The request's run.
    Run,
    /// The last N seconds.
    RollingSeconds(u32),
    /// The current calendar period.
    Calendar(CalendarUnit),
}

/// What a budget counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeUnit {
    /// LLM tokens.
    Tokens,
    /// Cost, in millionths of a US dollar.
    MicroUsd,
}

/// A reservation against a budget, committed atomically with the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// The budget's scope (`pipeline:orders_daily`).
    pub scope: String,
    /// The period it counts over.
    pub window: Window,
    /// What it counts.
    pub unit: ChargeUnit,
    /// How much this request reserves.
    pub amount: u64,
    /// The budget: the reservation fails if it would go beyond.
    pub limit: u64,
}

/// Which calls a breaker judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum BreakerWindow {
    /// The last N calls.
    Count(u32),
    /// The calls of the last N seconds.
    Seconds(u32),
}

/// A circuit breaker's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BreakerConfig {
    /// Which calls count: the last N, or the last N seconds.
    pub window: BreakerWindow,
    /// Calls needed before the failure rate is judged.
    pub minimum_calls: u32,
    /// Failure rate at which the breaker opens.
    pub failure_rate_percent: u8,
    /// A call slower than this counts as slow.
    pub slow_call_ms: Option<u32>,
    /// Slow-call rate at which the breaker opens.
    pub slow_call_rate_percent: Option<u8>,
    /// How long it stays open before letting trial calls through.
    pub open_seconds: u32,
    /// Trial calls allowed while half open.
    pub half_open_calls: u32,
    /// How long it may stay half open before reopening.
    pub max_half_open_seconds: Option<u32>,
}

/// A breaker the request must pass when allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerGuard {
    /// The breaker's key (`tool:warehouse.query`).
    pub key: String,
    /// Its thresholds.
    pub config: BreakerConfig,
}

/// One policy's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The answer.
    pub kind: VerdictKind,
    /// Who may approve, when it escalates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
    /// Why, when it denies or escalates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    /// What the gateway must do (allow only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub obligations: Vec<Obligation>,
    /// Budget reservations (allow only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charges: Vec<Charge>,
    /// Breakers the request must pass (allow only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakers: Vec<BreakerGuard>,
}

impl Verdict {
    /// An allow with nothing attached.
    pub fn allow() -> Self {
        Verdict {
            kind: VerdictKind::Allow,
            escalation: None,
            reasons: vec![],
            obligations: vec![],
            charges: vec![],
            breakers: vec![],
        }
    }

    /// A deny with one reason.
    pub fn deny(code: &str, message: impl Into<String>) -> Self {
        Verdict {
            kind: VerdictKind::Deny,
            reasons: vec![Reason { code: code.to_owned(), message: message.into() }],
            ..Verdict::allow()
        }
    }
}
