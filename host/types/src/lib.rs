//! The types arbiter speaks on the wire and between its crates: the request
//! an agent's gateway sends (`POST /v1/decide`, shared/DESIGN.md §8), the
//! verdict each policy returns, and the decision the host answers with.
//!
//! Parsing validates everything a policy relies on, so an error names the
//! field at fault and a policy never sees a malformed request.

#![deny(missing_docs)]

pub mod cases;
pub mod clock;
mod decision;
mod excerpt;
mod fault;
mod redact;
mod request;
mod timestamp;
mod token_estimate;
mod tool;
mod verdict;

pub use decision::{BundleRef, Decision, DecisionReason, EscalationOffer, PolicyOutcome, PolicyResult};
pub use excerpt::excerpt;
pub use fault::{FaultKind, POLICY_FAULT, STATE_UNAVAILABLE};
pub use redact::{Redaction, RedactionError, apply_redactions, check_redactions};
pub use request::{Action, ActionKind, Environment, LlmRequest, Principal, Request, RequestError, ToolCall, ToolFacts};
pub use timestamp::{TimestampError, format_rfc3339_ms, parse_day_or_rfc3339_ms, parse_rfc3339_ms};
pub use token_estimate::{estimate_prompt_tokens, estimate_text_tokens};
pub use tool::{
    MAX_LISTED_TOOLS, MAX_TEXTS, MAX_TOOL_NAME_BYTES, ToolDefinition, ToolListing, ToolResult, strings_with_pointers,
};
pub use verdict::{
    BreakerConfig, BreakerGuard, BreakerWindow, CalendarUnit, Charge, ChargeUnit, Escalation, Obligation, Reason,
    Verdict, VerdictKind, Window,
};
