//! The floor: the same reference policies compiled natively and called
//! directly, after the same JSON parse the host does; no sandbox.

use std::sync::Arc;

use arbiter_sdk::testing::{RequestBuilder, policy_from_json};
use arbiter_sdk::{Action, ArgValue, Decision, Environment, Policy, Request as SdkRequest, Verdict};
use arbiter_types::{Action as HostAction, Environment as HostEnvironment, Request};
use serde_json::Value;

use super::{Decide, Engine, Outcome, Settings};

struct Rules {
    tool_scope: tool_scope::ToolScope,
    human_review: human_review::HumanReview,
    model_pin: model_pin::ModelPin,
    context_bloat: context_bloat::ContextBloat,
    data_residency: data_residency::DataResidency,
}

fn load<P: Policy>(settings: &Settings, name: &str) -> anyhow::Result<P> {
    policy_from_json(&settings.of(name)?.to_string()).map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

pub fn engine(settings: &Settings) -> anyhow::Result<Engine> {
    let rules = Arc::new(Rules {
        tool_scope: load(settings, "tool-scope")?,
        human_review: load(settings, "human-review")?,
        model_pin: load(settings, "model-pin")?,
        context_bloat: load(settings, "context-bloat")?,
        data_residency: load(settings, "data-residency")?,
    });
    Ok(Engine {
        cedar_subset: false,
        envoy_subset: false,
        server_pid: None,
        make: Box::new(move || Ok(Box::new(Native(Arc::clone(&rules))) as Box<dyn Decide>)),
    })
}

struct Native(Arc<Rules>);

impl Decide for Native {
    fn decide(&mut self, request_json: &[u8]) -> anyhow::Result<Outcome> {
        let request = sdk_request(&Request::from_json_slice(request_json)?)?;
        let r = &self.0;
        let verdicts: [Verdict; 5] = [
            r.tool_scope.evaluate(&request),
            r.human_review.evaluate(&request),
            r.model_pin.evaluate(&request),
            r.context_bloat.evaluate(&request),
            r.data_residency.evaluate(&request),
        ];
        let has = |kind: fn(&Decision) -> bool| verdicts.iter().any(|v| kind(&v.decision));
        Ok(if has(|d| matches!(d, Decision::Deny)) {
            Outcome::Deny
        } else if has(|d| matches!(d, Decision::Escalate(_))) {
            Outcome::Escalate
        } else {
            Outcome::Allow
        })
    }
}

/// The request as a policy sees it (the harness's cases are tool calls
/// and LLM requests).
fn sdk_request(request: &Request) -> anyhow::Result<SdkRequest> {
    let builder = match &request.action {
        HostAction::ToolCall(call) => call
            .arguments
            .iter()
            .fold(RequestBuilder::tool_call(&call.tool), |b, (name, value)| b.arg_value(name, arg_value(value))),
        HostAction::LlmRequest(llm) => {
            RequestBuilder::llm_request(&llm.model, llm.prompt_tokens, llm.max_output_tokens)
        }
        other @ (HostAction::ToolListing(_) | HostAction::ToolResult(_)) => {
            anyhow::bail!("the native engine has no {} rules", other.kind().as_str())
        }
    };
    let p = &request.principal;
    let environment = match p.environment {
        HostEnvironment::Dev => Environment::Dev,
        HostEnvironment::Staging => Environment::Staging,
        HostEnvironment::Prod => Environment::Prod,
    };
    let mut sdk = builder.pipeline(&p.pipeline).agent(&p.agent).run(&p.run).environment(environment).build();
    if let (HostAction::ToolCall(call), Action::ToolCall(sdk_call)) = (&request.action, &mut sdk.action) {
        sdk_call.facts.irreversible = call.facts.irreversible;
        sdk_call.facts.region.clone_from(&call.facts.region);
    }
    Ok(sdk)
}

fn arg_value(value: &Value) -> ArgValue {
    match value {
        Value::Null => ArgValue::Null,
        Value::Bool(b) => ArgValue::Boolean(*b),
        Value::Number(n) => {
            n.as_i64().map_or_else(|| ArgValue::Float(n.as_f64().unwrap_or(f64::NAN)), ArgValue::Integer)
        }
        Value::String(s) => ArgValue::Text(s.clone()),
        Value::Array(_) | Value::Object(_) => ArgValue::Json(value.to_string()),
    }
}
