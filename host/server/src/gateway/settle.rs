//! How an exchange ends, and what that costs: the reservation is replaced
//! by what the provider reported or, when it reported nothing, by a stated
//! rule that never counts less than the client received; the breakers get
//! the call's outcome.
//!
//! | ending | tokens counted | outcome |
//! |---|---|---|
//! | 2xx, complete, usage reported | the provider's usage | success (MCP: failure for an error or `isError` result) |
//! | 2xx, no usage, or cut short | the reserved prompt estimate + the tokens of the text delivered | success if complete, failure if cut |
//! | 2xx, body too large to read | the whole reservation | success |
//! | 408 / 504 (timed out) | the reserved prompt estimate + the text delivered | timeout |
//! | 429 / 5xx | what the error body reports, else the text delivered (normally none) | failure |
//! | other 4xx (the request was refused) | what the body reports, else the text delivered | success (the upstream is healthy) |
//! | closed before any answer | the reserved prompt estimate | failure |
//! | not sent upstream | nothing (the reservation is released) | none |

use arbiter_state::OutcomeStatus;

use crate::api::blocking;
use crate::ext_authz::Admitted;
use crate::state::{AppState, now_ms};
use crate::wire::{Protocol, ReportedUsage, ResponseReader};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The answer's last byte passed.
    Complete,
    /// The stream closed before the answer ended.
    Cut,
    /// Nothing was sent upstream.
    NotSent,
}

/// What an exchange is settled with.
#[derive(Debug, PartialEq, Eq)]
struct Settlement {
    /// (prompt, output) tokens, for LLM calls.
    usage: Option<(u64, u64)>,
    outcome: Option<OutcomeStatus>,
}

fn settlement(admitted: &Admitted, ending: Ending, status: Option<u16>, reader: Option<&ResponseReader>) -> Settlement {
    if ending == Ending::NotSent {
        let usage = matches!(admitted.protocol, Protocol::Llm(_)).then_some((0, 0));
        return Settlement { usage, outcome: None };
    }
    let reported = reader.map(ResponseReader::usage).unwrap_or_default();
    let delivered = reader.map_or(0, ResponseReader::generated_tokens);
    let outcome = match (status, ending) {
        (None, _) => OutcomeStatus::Failure,
        (Some(408 | 504), _) => OutcomeStatus::Timeout,
        (Some(429 | 500..), _) => OutcomeStatus::Failure,
        (Some(200..=299), Ending::Cut) => OutcomeStatus::Failure,
        (Some(200..=299), _) if reader.and_then(ResponseReader::mcp_failed) == Some(true) => OutcomeStatus::Failure,
        (Some(_), _) => OutcomeStatus::Success,
    };
    let Protocol::Llm(call) = &admitted.protocol else { return Settlement { usage: None, outcome: Some(outcome) } };
    let ReportedUsage { prompt_tokens, output_tokens } = reported;
    // A complete answer's own count is the bill; otherwise the client got
    // at least what was delivered.
    let output = match (ending, output_tokens) {
        (Ending::Complete, Some(reported)) => reported,
        (_, reported) => reported.unwrap_or(0).max(delivered),
    };
    let usage = match status {
        None => (call.prompt_tokens, 0),
        Some(200..=299) if reader.is_some_and(ResponseReader::overflowed) && output_tokens.is_none() => {
            (call.prompt_tokens, admitted.allowed_output_tokens)
        }
        Some(200..=299 | 408 | 504) => (prompt_tokens.unwrap_or(call.prompt_tokens), output),
        Some(_) => (prompt_tokens.unwrap_or(0), output),
    };
    Settlement { usage: Some(usage), outcome: Some(outcome) }
}

/// Reconciles and reports. A usage or outcome the agent already reported,
/// or an outcome no breaker waits for, is left as it is.
pub(crate) async fn settle(
    state: &AppState,
    admitted: Admitted,
    ending: Ending,
    status: Option<u16>,
    latency_ms: Option<u64>,
    reader: Option<&ResponseReader>,
) {
    let Settlement { usage, outcome } = settlement(&admitted, ending, status, reader);
    let decider = state.decider.clone();
    let metrics = state.metrics.clone();
    // Not within --max-in-flight: a settlement is never refused, or the
    // reservation would wait for its expiry.
    let settled = blocking(move || {
        let now = now_ms();
        if let Some((prompt, output)) = usage {
            let result = decider.report_usage_as(&admitted.owner, &admitted.request_id, prompt, output, now);
            if let Err(e) = &result {
                tracing::debug!("usage of {}: {e}", admitted.request_id);
            }
            metrics.usage(result.is_ok(), prompt.saturating_add(output));
        }
        if let Some(outcome) = outcome
            && let Err(e) = decider.report_outcome_as(&admitted.owner, &admitted.request_id, outcome, latency_ms, now)
        {
            tracing::debug!("outcome of {}: {e}", admitted.request_id);
        }
    })
    .await;
    if let Err(e) = settled {
        tracing::error!("settling a gateway exchange failed: {}", e.message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Api, LlmCall};
    use serde_json::json;

    fn llm() -> Admitted {
        let call = LlmCall {
            api: Api::OpenAiChat,
            model: "gpt-4o-2024-08-06".into(),
            stream: true,
            choices: 1,
            limit_fields: vec![],
            usage_requested: true,
            prompt_tokens: 100,
        };
        Admitted {
            owner: "o".into(),
            request_id: "r".into(),
            protocol: Protocol::Llm(Box::new(call)),
            allowed_output_tokens: 500,
            redactions: vec![],
        }
    }

    fn reader(admitted: &Admitted, body: &str, content_type: &str, end: bool) -> ResponseReader {
        let Protocol::Llm(call) = &admitted.protocol else { unreachable!() };
        let mut reader = ResponseReader::llm(call, content_type, 1 << 20);
        reader.read(body.as_bytes(), end);
        reader
    }

    #[test]
    fn reported_usage_replaces_the_reservation() {
        let admitted = llm();
        let body = json!({"choices": [], "usage": {"prompt_tokens": 90, "completion_tokens": 12}}).to_string();
        let reader = reader(&admitted, &body, "application/json", true);
        assert_eq!(
            settlement(&admitted, Ending::Complete, Some(200), Some(&reader)),
            Settlement { usage: Some((90, 12)), outcome: Some(OutcomeStatus::Success) }
        );
    }

    #[test]
    fn a_cut_stream_counts_what_was_delivered_and_fails() {
        let admitted = llm();
        let body = format!("data: {}\n\n", json!({"choices": [{"delta": {"content": "one two three four"}}]}));
        let reader = reader(&admitted, &body, "text/event-stream", false);
        let settled = settlement(&admitted, Ending::Cut, Some(200), Some(&reader));
        let (prompt, output) = settled.usage.unwrap();
        assert_eq!(prompt, 100, "the prompt estimate: the provider read it");
        assert!(output >= 4, "at least the delivered text: {output}");
        assert_eq!(settled.outcome, Some(OutcomeStatus::Failure));
    }

    #[test]
    fn errors_timeouts_and_unsent_requests() {
        let admitted = llm();
        let error = reader(&admitted, r#"{"error": {"message": "overloaded"}}"#, "application/json", true);
        assert_eq!(
            settlement(&admitted, Ending::Complete, Some(500), Some(&error)),
            Settlement { usage: Some((0, 0)), outcome: Some(OutcomeStatus::Failure) }
        );
        assert_eq!(
            settlement(&admitted, Ending::Complete, Some(504), None),
            Settlement { usage: Some((100, 0)), outcome: Some(OutcomeStatus::Timeout) }
        );
        assert_eq!(
            settlement(&admitted, Ending::Complete, Some(400), None),
            Settlement { usage: Some((0, 0)), outcome: Some(OutcomeStatus::Success) }
        );
        assert_eq!(
            settlement(&admitted, Ending::Cut, None, None),
            Settlement { usage: Some((100, 0)), outcome: Some(OutcomeStatus::Failure) }
        );
        assert_eq!(
            settlement(&admitted, Ending::NotSent, None, None),
            Settlement { usage: Some((0, 0)), outcome: None }
        );
    }

    #[test]
    fn an_unreadable_answer_keeps_the_whole_reservation() {
        let admitted = llm();
        let Protocol::Llm(call) = &admitted.protocol else { unreachable!() };
        let mut reader = ResponseReader::llm(call, "application/json", 8);
        reader.read(b"{\"choices\": [], \"usage\": {}}", true);
        assert_eq!(settlement(&admitted, Ending::Complete, Some(200), Some(&reader)).usage, Some((100, 500)));
    }

    #[test]
    fn mcp_errors_fail_the_call() {
        let admitted = Admitted { protocol: Protocol::Mcp { id: json!(1) }, allowed_output_tokens: 0, ..llm() };
        let mut reader = ResponseReader::mcp(json!(1), "application/json", 1 << 20);
        reader.read(json!({"jsonrpc": "2.0", "id": 1, "result": {"isError": true}}).to_string().as_bytes(), true);
        assert_eq!(
            settlement(&admitted, Ending::Complete, Some(200), Some(&reader)),
            Settlement { usage: None, outcome: Some(OutcomeStatus::Failure) }
        );
    }
}
