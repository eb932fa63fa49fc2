//! The floor: the same reference policies compiled natively and called
//! directly, after the same JSON parse the host does; no sandbox.

use std::sync::Arc;

use arbiter_sdk::testing::{RequestBuilder, policy_from_json};
use arbiter_sdk::{Action, ArgValue, Decision, Environment, Policy, Request as SdkRequest, Verdict};
use arbiter_types::{Action as HostAction, Environment as HostEnvironment, Request};
use serde_json::Value;

use super::{Decide, Engine, Outcome, Settings};

/// One policy, ready to evaluate.
type Rule = Box<dyn Fn(&SdkRequest) -> Verdict + Send + Sync>;

/// Which policies the floor calls.
#[derive(Debug, Clone, Copy)]
pub enum Rules {
    /// The five stateless rules of the comparison bundle.
    Five,
    /// Every policy of the orders_daily bundle. Natively the stateful ones
    /// read the SDK's native host, empty, as the sandboxed row reads an
    /// empty store; each is called on every request, where the host calls
    /// only those whose scope matches (a policy out of its scope allows at
    /// once, so the floor does no less than the host).
    FullBundle,
}

/// A policy by its name in the bundle.
pub type NamedRule = (&'static str, Rule);

fn rule<P: Policy>(settings: &Settings, name: &'static str) -> anyhow::Result<NamedRule> {
    let policy: P = policy_from_json(&settings.of(name)?.to_string()).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    Ok((name, Box::new(move |request| policy.evaluate(request))))
}

/// The policies `which` names, with the settings of `settings`.
pub fn rules(settings: &Settings, which: Rules) -> anyhow::Result<Vec<NamedRule>> {
    let mut rules = vec![
        rule::<tool_scope::ToolScope>(settings, "tool-scope")?,
        rule::<human_review::HumanReview>(settings, "human-review")?,
        rule::<model_pin::ModelPin>(settings, "model-pin")?,
        rule::<context_bloat::ContextBloat>(settings, "context-bloat")?,
        rule::<data_residency::DataResidency>(settings, "data-residency")?,
    ];
    if let Rules::FullBundle = which {
        rules.extend([
            rule::<token_budget::TokenBudget>(settings, "token-budget")?,
            rule::<tool_storm::ToolStorm>(settings, "tool-storm")?,
            rule::<retrieval_thrash::RetrievalThrash>(settings, "retrieval-thrash")?,
            rule::<circuit_breaker::CircuitBreaker>(settings, "circuit-breaker")?,
            rule::<tool_pin::ToolPin>(settings, "tool-pin")?,
            rule::<secret_scan::SecretScan>(settings, "secret-scan")?,
        ]);
    }
    Ok(rules)
}

pub fn engine(settings: &Settings, which: Rules) -> anyhow::Result<Engine> {
    let rules = Arc::new(rules(settings, which)?);
    Ok(Engine {
        cedar_subset: false,
        envoy_subset: false,
        server_pid: None,
        make: Box::new(move || Ok(Box::new(Native(Arc::clone(&rules))) as Box<dyn Decide>)),
    })
}

struct Native(Arc<Vec<NamedRule>>);

impl Decide for Native {
    fn decide(&mut self, request_json: &[u8]) -> anyhow::Result<Outcome> {
        let request = sdk_request(request_json)?;
        let (mut deny, mut escalate) = (false, false);
        for (_, rule) in self.0.iter() {
            match rule(&request).decision {
                Decision::Deny => deny = true,
                Decision::Escalate(_) => escalate = true,
                _ => {}
            }
        }
        Ok(if deny {
            Outcome::Deny
        } else if escalate {
            Outcome::Escalate
        } else {
            Outcome::Allow
        })
    }
}

/// The request as a policy sees it, parsed as the host parses it (the
/// harness's cases are tool calls and LLM requests).
pub fn sdk_request(request_json: &[u8]) -> anyhow::Result<SdkRequest> {
    let request = &Request::from_json_slice(request_json)?;
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
