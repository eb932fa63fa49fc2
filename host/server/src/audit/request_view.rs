//! What the audit log keeps of a request: never a span a decision masked,
//! nor a server's whole answer. A tool call's arguments are kept with the
//! decision's redactions applied; a listing as its tools' names and
//! digests; a result as its size and digest (enough to match it against
//! the server's own logs), with the spans masked named by the decision.

use arbiter_types::{Action, Decision, Request};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub(crate) fn request_view(request: &Request, decision: &Decision) -> Value {
    let mut view = request.to_json();
    // Whatever the verdict: a refused call's secret stays out of the log too.
    let redactions = decision.masks();
    let Some(action) = view.get_mut("action").and_then(Value::as_object_mut) else { return view };
    match &request.action {
        Action::ToolCall(_) if !redactions.is_empty() => {
            if let Some(Value::Object(arguments)) = action.get_mut("arguments") {
                // Checked against these arguments when each verdict came back.
                let _ = arbiter_types::apply_redactions(arguments, &redactions);
            }
        }
        Action::ToolListing(listing) => {
            let tools: Vec<Value> =
                listing.tools.iter().map(|t| json!({"name": t.name, "digest": t.digest()})).collect();
            action.insert("tools".into(), tools.into());
        }
        Action::ToolResult(result) => {
            let text = Value::Object(result.result.clone()).to_string();
            let digest = format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())));
            action
                .insert("result".into(), json!({"bytes": text.len(), "digest": digest, "is_error": result.is_error()}));
        }
        Action::ToolCall(_) | Action::LlmRequest(_) => {}
    }
    view
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_types::{BundleRef, Obligation, Redaction, VerdictKind};

    fn request(action: Value) -> Request {
        Request::from_json_value(&json!({"id": "r", "action": action,
            "principal": {"pipeline": "p", "agent": "a", "team": "t", "environment": "dev", "run": "1"}}))
        .unwrap()
    }

    fn allowed(obligations: Vec<Obligation>) -> Decision {
        let bundle = BundleRef { name: "b".into(), version: "1.0.0".into() };
        let mut decision = Decision::bare("r", VerdictKind::Allow, vec![], bundle);
        decision.obligations = obligations;
        decision
    }

    #[test]
    fn the_secret_a_decision_masked_never_reaches_the_log() {
        let secret = "AKIAIOSFODNN7EXAMPLE";
        let call = request(json!({"kind": "tool_call", "tool": "slack.post_message",
                                  "arguments": {"text": format!("key {secret}")}}));
        let mask =
            Obligation::Redact(Redaction { pointer: "/text".into(), start: 4, end: 24, code: "aws_access_key".into() });
        let view = request_view(&call, &allowed(vec![mask.clone()]));
        assert_eq!(view["action"]["arguments"]["text"], "key [redacted:aws_access_key]");
        // Refused, not masked: the span the refusing policy named still
        // keeps the key out of the record.
        let bundle = BundleRef { name: "b".into(), version: "1.0.0".into() };
        let mut refusal = arbiter_types::Verdict::allow();
        refusal.kind = VerdictKind::Deny;
        refusal.obligations.push(mask.clone());
        let mut refused = Decision::bare("r", VerdictKind::Deny, vec![], bundle);
        refused.policies = vec![arbiter_types::PolicyResult {
            name: "secret-scan".into(),
            version: "0.1.0".into(),
            digest: "d".into(),
            enforced: true,
            outcome: arbiter_types::PolicyOutcome::Verdict(refusal),
            elapsed_us: 1,
        }];
        assert_eq!(request_view(&call, &refused)["action"]["arguments"]["text"], "key [redacted:aws_access_key]");
        let result = request(json!({"kind": "tool_result", "tool": "t",
                                    "result": {"content": [{"type": "text", "text": secret}]}}));
        let text = request_view(&result, &allowed(vec![])).to_string();
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("\"digest\":\"sha256:"), "{text}");
    }
}
