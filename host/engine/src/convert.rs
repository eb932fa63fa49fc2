//! Conversions between the contract's generated types and arbiter-types,
//! and the validation of what a policy returns.

use arbiter_types::{
    Action, BreakerConfig, BreakerGuard, BreakerWindow, CalendarUnit, Charge, ChargeUnit, Environment, Escalation,
    Obligation, Reason, Request, Verdict, VerdictKind, Window,
};
use serde_json::{Map, Value};

use crate::bindings::arbiter::policy::types as wit;

/// Bounds on a verdict; a policy that exceeds them has faulted.
const MAX_REASONS: usize = 16;
const MAX_CODE_BYTES: usize = 64;
const MAX_MESSAGE_BYTES: usize = 4096;
const MAX_APPROVERS: usize = 32;
const MAX_NAME_BYTES: usize = 256;
const MAX_OBLIGATIONS: usize = 8;
const MAX_CHARGES: usize = 16;
const MAX_BREAKERS: usize = 8;

/// Builds the request every policy of a decision receives; done once per
/// decision.
pub(crate) fn request_to_wit(request: &Request, timestamp_ms: i64) -> wit::Request {
    let p = &request.principal;
    let action = match &request.action {
        Action::ToolCall(call) => wit::Action::ToolCall(wit::ToolCall {
            tool: call.tool.clone(),
            arguments: arguments(&call.arguments),
            facts: wit::ToolFacts {
                irreversible: call.facts.irreversible,
                target_resource: call.facts.resource.clone(),
                region: call.facts.region.clone(),
            },
        }),
        Action::LlmRequest(llm) => wit::Action::LlmRequest(wit::LlmRequest {
            model: llm.model.clone(),
            prompt_tokens: llm.prompt_tokens,
            prompt_tokens_estimated: llm.prompt_tokens_estimated,
            max_output_tokens: llm.max_output_tokens,
        }),
    };
    wit::Request {
        id: request.id.clone(),
        principal: wit::Principal {
            pipeline: p.pipeline.clone(),
            agent: p.agent.clone(),
            team: p.team.clone(),
            environment: match p.environment {
                Environment::Dev => wit::Environment::Dev,
                Environment::Staging => wit::Environment::Staging,
                Environment::Prod => wit::Environment::Prod,
            },
            run: p.run.clone(),
        },
        action,
        timestamp_ms,
        labels: request.labels.clone(),
    }
}

/// Top-level members of a JSON arguments object, in order.
pub(crate) fn arguments(map: &Map<String, Value>) -> Vec<wit::Argument> {
    map.iter().map(|(name, value)| wit::Argument { name: name.clone(), value: arg_value(value) }).collect()
}

fn arg_value(value: &Value) -> wit::ArgValue {
    match value {
        Value::Null => wit::ArgValue::Null,
        Value::Bool(b) => wit::ArgValue::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => wit::ArgValue::Integer(i),
            (None, Some(f)) => wit::ArgValue::Float(f),
            (None, None) => wit::ArgValue::Json(n.to_string()),
        },
        Value::String(s) => wit::ArgValue::Text(s.clone()),
        Value::Array(_) | Value::Object(_) => wit::ArgValue::Json(value.to_string()),
    }
}

/// Checks a returned verdict against the contract's rules and bounds.
pub(crate) fn verdict_from_wit(verdict: wit::Verdict) -> Result<Verdict, String> {
    if verdict.reasons.len() > MAX_REASONS {
        return Err(format!("{} reasons; at most {MAX_REASONS} are accepted", verdict.reasons.len()));
    }
    if verdict.obligations.len() > MAX_OBLIGATIONS {
        return Err(format!("{} obligations; at most {MAX_OBLIGATIONS}", verdict.obligations.len()));
    }
    if verdict.charges.len() > MAX_CHARGES {
        return Err(format!("{} charges; at most {MAX_CHARGES}", verdict.charges.len()));
    }
    if verdict.breakers.len() > MAX_BREAKERS {
        return Err(format!("{} breakers; at most {MAX_BREAKERS}", verdict.breakers.len()));
    }
    let reasons =
        verdict.reasons.into_iter().enumerate().map(|(i, r)| check_reason(i, r)).collect::<Result<Vec<_>, _>>()?;
    let (kind, escalation) = match verdict.decision {
        wit::Decision::Allow => (VerdictKind::Allow, None),
        wit::Decision::Deny => (VerdictKind::Deny, None),
        wit::Decision::Escalate(e) => (VerdictKind::Escalate, Some(check_escalation(e)?)),
    };
    if kind != VerdictKind::Allow && reasons.is_empty() {
        return Err(format!("a {} verdict must give at least one reason", kind.as_str()));
    }
    let obligations = verdict
        .obligations
        .into_iter()
        .map(|o| match o {
            wit::Obligation::ClampMaxOutputTokens(n) => Obligation::ClampMaxOutputTokens(n),
            wit::Obligation::SummarizeContext(n) => Obligation::SummarizeContext(n),
        })
        .collect();
    let charges = verdict.charges.into_iter().map(check_charge).collect::<Result<Vec<_>, _>>()?;
    let breakers = verdict
        .breakers
        .into_iter()
        .map(|g| {
            if g.key.is_empty() || g.key.len() > MAX_NAME_BYTES {
                return Err(format!("a breaker key must be 1..={MAX_NAME_BYTES} bytes"));
            }
            Ok(BreakerGuard { config: check_breaker_config(g.config)?, key: g.key })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Verdict { kind, escalation, reasons, obligations, charges, breakers })
}

fn check_reason(index: usize, reason: wit::Reason) -> Result<Reason, String> {
    let code_ok = !reason.code.is_empty()
        && reason.code.len() <= MAX_CODE_BYTES
        && reason.code.starts_with(|c: char| c.is_ascii_lowercase())
        && reason.code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !code_ok {
        let shown: String = reason.code.chars().take(MAX_CODE_BYTES).collect();
        return Err(format!("reason {index} has code `{shown}`; codes are snake_case, 1..={MAX_CODE_BYTES} bytes"));
    }
    if reason.message.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "reason {index} ({}) has a {}-byte message; at most {MAX_MESSAGE_BYTES} bytes",
            reason.code,
            reason.message.len()
        ));
    }
    Ok(Reason { code: reason.code, message: reason.message })
}

fn check_escalation(e: wit::Escalation) -> Result<Escalation, String> {
    if e.approvers.is_empty() || e.approvers.len() > MAX_APPROVERS {
        return Err(format!("an escalation needs 1..={MAX_APPROVERS} approvers, got {}", e.approvers.len()));
    }
    if let Some(bad) = e.approvers.iter().find(|a| a.is_empty() || a.len() > MAX_NAME_BYTES) {
        return Err(format!(
            "approver `{}` must be 1..={MAX_NAME_BYTES} bytes",
            bad.chars().take(40).collect::<String>()
        ));
    }
    if e.valid_for_seconds == 0 {
        return Err("an escalation must stay valid for at least one second".to_owned());
    }
    Ok(Escalation { approvers: e.approvers, valid_for_seconds: e.valid_for_seconds })
}

fn check_charge(c: wit::Charge) -> Result<Charge, String> {
    if c.scope.is_empty() || c.scope.len() > MAX_NAME_BYTES {
        return Err(format!("a charge scope must be 1..={MAX_NAME_BYTES} bytes"));
    }
    let window = check_window(c.window).map_err(|e| format!("charge `{}`: {e}", c.scope))?;
    let unit = unit(c.unit);
    Ok(Charge { scope: c.scope, window, unit, amount: c.amount, limit: c.limit })
}

fn check_window(window: wit::Window) -> Result<Window, String> {
    Ok(match window {
        wit::Window::Run => Window::Run,
        wit::Window::RollingSeconds(0) => return Err("zero-length window".to_owned()),
        wit::Window::RollingSeconds(s) => Window::RollingSeconds(s),
        wit::Window::Calendar(unit) => Window::Calendar(match unit {
            wit::CalendarUnit::Minute => CalendarUnit::Minute,
            wit::CalendarUnit::Hour => CalendarUnit::Hour,
            wit::CalendarUnit::Day => CalendarUnit::Day,
            wit::CalendarUnit::Month => CalendarUnit::Month,
        }),
    })
}

/// A window a policy asked about through a capability.
pub(crate) fn window(window: wit::Window) -> wasmtime::Result<Window> {
    check_window(window).map_err(wasmtime::Error::msg)
}

pub(crate) fn unit(unit: wit::ChargeUnit) -> ChargeUnit {
    match unit {
        wit::ChargeUnit::Tokens => ChargeUnit::Tokens,
        wit::ChargeUnit::MicroUsd => ChargeUnit::MicroUsd,
    }
}

fn check_breaker_config(c: wit::BreakerConfig) -> Result<BreakerConfig, String> {
    let percent_ok = |p: u8| (1..=100).contains(&p);
    let window = match c.window {
        wit::BreakerWindow::Count(0) | wit::BreakerWindow::Seconds(0) => {
            return Err("a breaker window must be positive".to_owned());
        }
        wit::BreakerWindow::Count(n) => BreakerWindow::Count(n),
        wit::BreakerWindow::Seconds(s) => BreakerWindow::Seconds(s),
    };
    if !percent_ok(c.failure_rate_percent) || c.slow_call_rate_percent.is_some_and(|p| !percent_ok(p)) {
        return Err("breaker rates are percentages from 1 to 100".to_owned());
    }
    if c.half_open_calls == 0 {
        return Err("a breaker must admit at least one half-open call".to_owned());
    }
    Ok(BreakerConfig {
        window,
        minimum_calls: c.minimum_calls,
        failure_rate_percent: c.failure_rate_percent,
        slow_call_ms: c.slow_call_ms,
        slow_call_rate_percent: c.slow_call_rate_percent,
        open_seconds: c.open_seconds,
        half_open_calls: c.half_open_calls,
        max_half_open_seconds: c.max_half_open_seconds,
    })
}

/// A breaker config a policy asked about through a capability.
pub(crate) fn breaker_config(config: wit::BreakerConfig) -> wasmtime::Result<BreakerConfig> {
    check_breaker_config(config).map_err(wasmtime::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny(code: &str, message: String) -> wit::Verdict {
        wit::Verdict {
            decision: wit::Decision::Deny,
            reasons: vec![wit::Reason { code: code.into(), message }],
            obligations: vec![],
            charges: vec![],
            breakers: vec![],
        }
    }

    #[test]
    fn accepts_a_well_formed_verdict() {
        let v = verdict_from_wit(deny("tool_not_allowed", "no".into())).unwrap();
        assert_eq!(v.kind, VerdictKind::Deny);
        assert_eq!(v.reasons[0].code, "tool_not_allowed");
    }

    #[test]
    fn refuses_oversized_or_malformed_verdicts() {
        let cases = [
            (deny("x", "m".repeat(10 << 20)), "10485760-byte message"),
            (deny("Bad Code", "m".into()), "snake_case"),
            (deny("", "m".into()), "snake_case"),
            (wit::Verdict { reasons: vec![], ..deny("x", String::new()) }, "at least one reason"),
            (
                wit::Verdict {
                    decision: wit::Decision::Escalate(wit::Escalation { approvers: vec![], valid_for_seconds: 60 }),
                    ..deny("x", String::new())
                },
                "approvers",
            ),
        ];
        for (verdict, needle) in cases {
            let err = verdict_from_wit(verdict).unwrap_err();
            assert!(err.contains(needle), "expected `{needle}` in `{err}`");
        }
    }

    #[test]
    fn numbers_keep_their_kind() {
        assert!(matches!(arg_value(&serde_json::json!(3)), wit::ArgValue::Integer(3)));
        assert!(matches!(arg_value(&serde_json::json!(1.5)), wit::ArgValue::Float(f) if f == 1.5));
        assert!(matches!(arg_value(&serde_json::json!(u64::MAX)), wit::ArgValue::Float(_)));
        assert!(matches!(arg_value(&serde_json::json!({"a": 1})), wit::ArgValue::Json(t) if t == r#"{"a":1}"#));
    }
}
