//! Replaying recorded traces (the format of examples/orders_daily/traces/README.md) through a decider on
//! the trace's own clock: `decide`, `usage` and `outcome` events.

use arbiter_state::OutcomeStatus;
use arbiter_types::{Request, VerdictKind, parse_rfc3339_ms};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::decider::Decider;

/// One trace line.
#[derive(Debug, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Event {
    Decide { at: String, request: Value, expect: Option<DecideExpectation> },
    Usage { at: String, id: String, prompt_tokens: u64, output_tokens: u64, expect: Option<Value> },
    Outcome { at: String, id: String, status: OutcomeStatus, latency_ms: Option<u64>, expect: Option<Value> },
}

#[derive(Debug, Deserialize)]
struct DecideExpectation {
    decision: VerdictKind,
    #[serde(default)]
    codes: Vec<String>,
    #[serde(default)]
    clamp_max_output_tokens: Option<u64>,
}

/// The result of one replayed event.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayedEvent {
    /// 1-based line of the trace.
    pub line: usize,
    /// The actual result, as a JSON object.
    pub result: Value,
    /// `None` when the event states no expectation.
    pub passed: Option<bool>,
}

/// Why a trace line could not be replayed at all.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ReplayError {
    /// 1-based line of the trace.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Replays the lines of one trace; the decider's state should start empty.
pub fn replay(decider: &Decider, trace: &str) -> Result<Vec<ReplayedEvent>, ReplayError> {
    let mut replayed = Vec::new();
    for (index, text) in trace.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line = index + 1;
        let fail = |message: String| ReplayError { line, message };
        let event: Event = serde_json::from_str(text).map_err(|e| fail(format!("not a trace event: {e}")))?;
        let at = |text: &str| parse_rfc3339_ms(text).map_err(|e| fail(format!("at: {e}")));
        let (result, passed) = match event {
            Event::Decide { at: when, request, expect } => {
                let request = Request::from_json_value(&request).map_err(|e| fail(format!("request: {e}")))?;
                let decision = decider.decide(&request, at(&when)?);
                let codes = decision.codes();
                let clamp = decision.clamp_max_output_tokens();
                let passed = expect.map(|e| {
                    let mut expected: Vec<&str> = e.codes.iter().map(String::as_str).collect();
                    expected.sort_unstable();
                    e.decision == decision.decision && expected == codes && e.clamp_max_output_tokens == clamp
                });
                let mut result =
                    json!({"op": "decide", "id": decision.id, "decision": decision.decision, "codes": codes});
                if let Some(clamp) = clamp {
                    result["clamp_max_output_tokens"] = clamp.into();
                }
                (result, passed)
            }
            Event::Usage { at: when, id, prompt_tokens, output_tokens, expect } => {
                let outcome = decider.report_usage(&id, prompt_tokens, output_tokens, at(&when)?);
                let result = report_result("usage", &id, outcome.as_ref().err());
                (result.clone(), expect.map(|e| same_acceptance(&e, &result)))
            }
            Event::Outcome { at: when, id, status, latency_ms, expect } => {
                let outcome = decider.report_outcome(&id, status, latency_ms, at(&when)?);
                let result = report_result("outcome", &id, outcome.as_ref().err());
                (result.clone(), expect.map(|e| same_acceptance(&e, &result)))
            }
        };
        replayed.push(ReplayedEvent { line, result, passed });
    }
    Ok(replayed)
}

fn report_result(op: &str, id: &str, error: Option<&crate::decider::ReportError>) -> Value {
    match error {
        None => json!({"op": op, "id": id, "accepted": true}),
        Some(e) => json!({"op": op, "id": id, "rejected": e.to_string()}),
    }
}

/// `{"accepted": true}` matches an accepted report; `{"rejected": ...}` any
/// rejection (the wording is the host's).
fn same_acceptance(expect: &Value, result: &Value) -> bool {
    expect.get("accepted") == Some(&Value::Bool(true)) && result.get("accepted").is_some()
        || expect.get("rejected").is_some() && result.get("rejected").is_some()
}
