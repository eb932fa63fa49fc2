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
