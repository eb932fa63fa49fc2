//! A single policy's verdict, mirroring the `types` interface of the WIT
//! contract in plain Rust so that crates above the engine need no Wasm.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    Allow,
    Escalate,
    Deny,
}

impl VerdictKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Allow => "allow",
            VerdictKind::Escalate => "escalate",
            VerdictKind::Deny => "deny",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub approvers: Vec<String>,
    pub valid_for_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Obligation {
    ClampMaxOutputTokens(u64),
    SummarizeContext(u64),
    /// Leave this tool out of the listing the agent is shown.
    HideTool(String),
    /// Mask a span of a tool call's arguments or a tool result.
    Redact(crate::Redaction),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CalendarUnit {
    Minute,
    Hour,
    Day,
    Month,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Window {
    Run,
    RollingSeconds(u32),
    Calendar(CalendarUnit),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeUnit {
    Tokens,
    MicroUsd,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub scope: String,
    pub window: Window,
    pub unit: ChargeUnit,
    pub amount: u64,
    pub limit: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum BreakerWindow {
    Count(u32),
    Seconds(u32),
}

/// A circuit breaker's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BreakerConfig {
    pub window: BreakerWindow,
    pub minimum_calls: u32,
    pub failure_rate_percent: u8,
    pub slow_call_ms: Option<u32>,
    pub slow_call_rate_percent: Option<u8>,
    pub open_seconds: u32,
    pub half_open_calls: u32,
    pub max_half_open_seconds: Option<u32>,
}

/// A breaker the request must pass when allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerGuard {
    pub key: String,
    pub config: BreakerConfig,
}

/// One policy's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub kind: VerdictKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub obligations: Vec<Obligation>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub charges: Vec<Charge>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakers: Vec<BreakerGuard>,
}

impl Verdict {
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

    pub fn deny(code: &str, message: impl Into<String>) -> Self {
        Verdict {
            kind: VerdictKind::Deny,
            reasons: vec![Reason { code: code.to_owned(), message: message.into() }],
            ..Verdict::allow()
        }
    }
}
