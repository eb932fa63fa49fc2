//! A policy decided natively as the engine decides it: the request as the
//! host hands it over, a panic as a fault, and on allow the commit of its
//! charges, breaker guards and tool call into the fake host's state.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;

use super::{add_used, arg_value, breaker, listed, record_tool_call, set_now_ms, set_run, texts_of, used};
use crate::{
    Action, Argument, BreakerState, Environment, LlmRequest, Policy, Principal, Request, ToolCall, ToolFacts,
    ToolListing, ToolResult, Verdict,
};

/// The code of a verdict the host counts as the policy's fault.
const POLICY_FAULT: &str = "policy_fault";

/// Decides `request` with `policy` the way the engine does for a bundle of
/// that one policy: the clock reads the request's time and history the
/// request's run; a panic, a refusal without a reason or a breaker guard
/// the host refuses is `deny` `policy_fault`; an allow is committed (its
/// charges counted, refused with `budget_exhausted` past a limit, its
/// breakers passed, refused with `circuit_open`, its tool call recorded in
/// the run's history).
pub fn decide<P: Policy>(policy: &P, request: &Request) -> Verdict {
    set_run(&request.principal.pipeline, &request.principal.run);
    set_now_ms(request.timestamp_ms);
    let verdict = match catch_unwind(AssertUnwindSafe(|| policy.evaluate(request))) {
        Ok(verdict) => verdict,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            return Verdict::deny(POLICY_FAULT, format!("the policy trapped: {message}"));
        }
    };
    if let Some(fault) = contract_breach(&verdict) {
        return Verdict::deny(POLICY_FAULT, fault);
    }
    if verdict.is_allow() { commit(request, verdict) } else { verdict }
}

/// What the host refuses in a verdict, of what a policy can get wrong.
fn contract_breach(verdict: &Verdict) -> Option<String> {
    if !verdict.is_allow() && verdict.reasons.is_empty() {
        return Some("a refusing verdict must give at least one reason".to_owned());
    }
    verdict.breakers.iter().find_map(|g| g.config.validate().err().map(|e| format!("breaker `{}`: {e}", g.key)))
}

/// The host's commit of an allowed verdict, all or nothing.
fn commit(request: &Request, verdict: Verdict) -> Verdict {
    if let Some(over) =
        verdict.charges.iter().find(|c| used(&c.scope, c.window, c.unit).saturating_add(c.amount) > c.limit)
    {
        return Verdict::deny("budget_exhausted", format!("budget `{}` is exhausted", over.scope));
    }
    let closed = |state| matches!(state, BreakerState::Closed | BreakerState::HalfOpen(1..));
    if let Some(open) = verdict.breakers.iter().find(|g| !closed(breaker(&g.key, &g.config))) {
        return Verdict::deny("circuit_open", format!("breaker `{}` is open", open.key));
    }
    for charge in &verdict.charges {
        add_used(&charge.scope, charge.window, charge.unit, charge.amount);
    }
    if let Some(call) = request.tool_call() {
        record_tool_call(&request.id, request.timestamp_ms, &call.tool, call.arguments.clone());
    }
    verdict
}

/// A decide request's JSON (`POST /v1/decide`) as the host hands it to a
/// policy: validated by the host's own parser, at its `timestamp` (or
/// `now_ms` without one), a listing's tools seen for the first time and
/// listed by no other server, a call with no earlier listing.
pub fn request_from_json(json: &Value, now_ms: i64) -> Result<Request, String> {
    request_from_host(&arbiter_types::Request::from_json_value(json).map_err(|e| e.to_string())?, now_ms)
}

pub(super) fn request_from_host(request: &arbiter_types::Request, now_ms: i64) -> Result<Request, String> {
    let p = &request.principal;
    let principal = Principal {
        pipeline: p.pipeline.clone(),
        agent: p.agent.clone(),
        team: p.team.clone(),
        environment: Environment::from_name(p.environment.as_str())
            .ok_or_else(|| format!("environment `{}`", p.environment.as_str()))?,
        run: p.run.clone(),
    };
    let action = match &request.action {
        arbiter_types::Action::ToolCall(call) => Action::ToolCall(tool_call(call)),
        arbiter_types::Action::LlmRequest(llm) => Action::LlmRequest(LlmRequest {
            model: llm.model.clone(),
            prompt_tokens: llm.prompt_tokens,
            prompt_tokens_estimated: llm.prompt_tokens_estimated,
            max_output_tokens: llm.max_output_tokens,
        }),
        arbiter_types::Action::ToolListing(listing) => Action::ToolListing(ToolListing {
            server: listing.server.clone(),
            tools: listing.tools.iter().cloned().map(listed).collect(),
        }),
        arbiter_types::Action::ToolResult(result) => Action::ToolResult(ToolResult {
            call: tool_call(&result.call),
            is_error: result.is_error(),
            texts: texts_of(&result.result),
        }),
    };
    Ok(Request {
        id: request.id.clone(),
        principal,
        action,
        timestamp_ms: request.timestamp_ms.unwrap_or(now_ms),
        labels: request.labels.clone(),
    })
}

fn tool_call(call: &arbiter_types::ToolCall) -> ToolCall {
    ToolCall {
        tool: call.tool.clone(),
        arguments: call
            .arguments
            .iter()
            .map(|(name, value)| Argument { name: name.clone(), value: arg_value(value.clone()) })
            .collect(),
        facts: ToolFacts {
            irreversible: call.facts.irreversible,
            target_resource: call.facts.resource.clone(),
            region: call.facts.region.clone(),
        },
        server: call.server.clone(),
        listed: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{breakers, history};
    use crate::testing::{RequestBuilder, reset_host, set_breaker};
    use crate::{BreakerConfig, BreakerWindow, CalendarUnit, Charge, ChargeUnit, Window};

    /// Counts the run's calls; allows below `max`, with an optional charge.
    struct Counter {
        max: u32,
        charge: Option<u64>,
    }

    impl Policy for Counter {
        type Settings = ();
        fn new((): ()) -> Result<Self, String> {
            Ok(Counter { max: 2, charge: None })
        }
        fn evaluate(&self, request: &Request) -> Verdict {
            if history::count_tool_calls(i64::MIN) >= self.max {
                return Verdict::deny("too_many", "the run made enough calls");
            }
            match self.charge {
                Some(amount) => Verdict::allow().with_charge(Charge {
                    scope: format!("run:{}", request.principal.run),
                    window: Window::Calendar(CalendarUnit::Day),
                    unit: ChargeUnit::Tokens,
                    amount,
                    limit: 10,
                }),
                None => Verdict::allow(),
            }
        }
    }

    fn call(run: &str, at_ms: i64) -> Request {
        RequestBuilder::tool_call("docs.search").run(run).timestamp_ms(at_ms).build()
    }

    #[test]
    fn history_is_kept_per_run_and_only_allowed_calls_count() {
        reset_host();
        let policy = Counter { max: 2, charge: None };
        assert!(decide(&policy, &call("r1", 1)).is_allow());
        assert!(decide(&policy, &call("r1", 2)).is_allow());
        // The denied third call is not recorded: a fourth is still the third.
        assert!(decide(&policy, &call("r1", 3)).is_deny());
        assert!(decide(&policy, &call("r1", 4)).is_deny());
        assert_eq!(history::count_tool_calls(i64::MIN), 2, "r1 holds its two allowed calls");
        // Another run, even of the same pipeline, sees none of them.
        assert!(decide(&policy, &call("r2", 5)).is_allow());
        assert_eq!(history::tool_calls(None, i64::MIN).len(), 1);
        // Recorded at the decision's time, as the host records them.
        assert_eq!(history::tool_calls(None, i64::MIN)[0].timestamp_ms, 5);
    }

    #[test]
    fn charges_commit_on_allow_and_past_the_limit_deny() {
        reset_host();
        let policy = Counter { max: u32::MAX, charge: Some(6) };
        assert!(decide(&policy, &call("r1", 1)).is_allow());
        let over = decide(&policy, &call("r1", 2));
        assert_eq!(over.codes(), ["budget_exhausted"], "6 + 6 > 10");
        assert!(decide(&policy, &call("r2", 3)).is_allow(), "another run's scope");
    }

    fn config(window: BreakerWindow) -> BreakerConfig {
        BreakerConfig {
            window,
            minimum_calls: 1,
            failure_rate_percent: 50,
            slow_call_ms: None,
            slow_call_rate_percent: None,
            open_seconds: 1,
            half_open_calls: 1,
            max_half_open_seconds: None,
        }
    }

    struct Guarded(BreakerConfig);

    impl Policy for Guarded {
        type Settings = ();
        fn new((): ()) -> Result<Self, String> {
            Err("built in the test".to_owned())
        }
        fn evaluate(&self, _: &Request) -> Verdict {
            let _ = breakers::state("k", self.0);
            Verdict::allow().with_breaker("k".to_owned(), self.0)
        }
    }

    #[test]
    fn a_breaker_config_the_host_refuses_faults_the_policy() {
        reset_host();
        let faulted = decide(&Guarded(config(BreakerWindow::Count(0))), &call("r1", 1));
        assert_eq!(faulted.codes(), [POLICY_FAULT]);
        assert!(decide(&Guarded(config(BreakerWindow::Count(5))), &call("r1", 2)).is_allow());
        set_breaker("k", BreakerState::Open(10_000));
        assert_eq!(decide(&Guarded(config(BreakerWindow::Count(5))), &call("r1", 3)).codes(), ["circuit_open"]);
    }

    struct Silent;

    impl Policy for Silent {
        type Settings = ();
        fn new((): ()) -> Result<Self, String> {
            Ok(Silent)
        }
        fn evaluate(&self, request: &Request) -> Verdict {
            match request.tool() {
                Some("panic") => panic!("boom"),
                _ => Verdict { reasons: Vec::new(), ..Verdict::deny("x", "y") },
            }
        }
    }

    #[test]
    fn a_panic_or_a_reasonless_refusal_is_the_policys_fault() {
        reset_host();
        assert_eq!(decide(&Silent, &RequestBuilder::tool_call("panic").build()).codes(), [POLICY_FAULT]);
        assert_eq!(decide(&Silent, &RequestBuilder::tool_call("other").build()).codes(), [POLICY_FAULT]);
    }

    #[test]
    fn requests_read_from_json_as_the_host_hands_them() {
        let json = serde_json::json!({
            "principal": {"pipeline": "p", "agent": "a", "team": "t", "environment": "dev", "run": "r"},
            "action": {"kind": "tool_call", "tool": "x", "arguments": {"n": 3, "s": "v", "o": {"k": 1}},
                       "declared": {"irreversible": true}},
            "id": "i"});
        let request = request_from_json(&json, 42).unwrap();
        assert_eq!(request.timestamp_ms, 42, "no timestamp: now");
        assert_eq!(request.principal.environment, Environment::Dev);
        let call = request.tool_call().unwrap();
        assert_eq!(call.argument("n").and_then(crate::ArgValue::as_i64), Some(3));
        assert_eq!(call.argument("o"), Some(&crate::ArgValue::Json(r#"{"k":1}"#.to_owned())));
        assert_eq!(call.facts.irreversible, Some(true));
        assert!(request_from_json(&serde_json::json!({"id": "i"}), 0).is_err());
    }
}
