//! `tool-scope`: an agent may call only the tools listed for it.
//!
//! Rules select principals by pipeline and agent (globs) and optionally by
//! environment; the tools of every matching rule are allowed (exact names or
//! globs, case-sensitive, no trimming). Anything else is denied with
//! `tool_not_allowed`, including every tool of an agent no rule covers.
//!
//! Scoped to `tool_listing` too, it hides from a server's listing every
//! tool it would deny as a call for the same principal: both answers come
//! from [`ToolScope::allows`], so the listing and the call never disagree.

use arbiter_sdk::settings::FieldPath;
use arbiter_sdk::{Environment, Policy, Principal, Request, Verdict, export_policy, glob};
use serde::Deserialize;

const TOOL_NOT_ALLOWED: &str = "tool_not_allowed";

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Rule {
    #[serde(default = "any")]
    pub pipeline: String,
    #[serde(default = "any")]
    pub agent: String,
    /// Environments the rule holds in; absent means all.
    #[serde(default)]
    pub environments: Option<Vec<Environment>>,
    pub tools: Vec<String>,
}

fn any() -> String {
    "*".to_owned()
}

pub struct ToolScope {
    rules: Vec<Rule>,
}

impl Policy for ToolScope {
    type Settings = Settings;

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.rules.is_empty() {
            return Err("settings.rules: at least one rule is needed (an empty list would deny every tool)".into());
        }
        for (i, rule) in settings.rules.iter().enumerate() {
            if rule.tools.iter().any(String::is_empty) {
                return Err(FieldPath::root().field("rules").index(i).field("tools").error("empty tool name"));
            }
        }
        Ok(ToolScope { rules: settings.rules })
    }

    fn evaluate(&self, request: &Request) -> Verdict {
        let p = &request.principal;
        if let Some(listing) = request.listing() {
            return listing
                .tools
                .iter()
                .filter(|t| !self.allows(p, t.name()))
                .fold(Verdict::allow(), |verdict, t| verdict.hide_tool(t.name()));
        }
        let Some(tool) = request.tool() else { return Verdict::allow() };
        if self.allows(p, tool) {
            Verdict::allow()
        } else {
            Verdict::deny(
                TOOL_NOT_ALLOWED,
                format!(
                    "tool `{tool}` is not in the allowed set of {}/{} in {}",
                    p.pipeline,
                    p.agent,
                    p.environment.as_str()
                ),
            )
        }
    }
}

impl ToolScope {
    /// The one rule: whether `principal` may call `tool`.
    fn allows(&self, principal: &Principal, tool: &str) -> bool {
        self.rules
            .iter()
            .filter(|r| glob::matches(&r.pipeline, &principal.pipeline) && glob::matches(&r.agent, &principal.agent))
            .filter(|r| applies_in(r, principal.environment))
            .any(|r| glob::any_matches(&r.tools, tool))
    }
}

fn applies_in(rule: &Rule, environment: Environment) -> bool {
    rule.environments.as_ref().is_none_or(|envs| envs.contains(&environment))
}

export_policy!(ToolScope, review = "review.toml", cases = "cases.json");

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_sdk::testing::{RequestBuilder, listed_tool, policy_from_json};

    fn orders_daily() -> ToolScope {
        policy_from_json(
            r#"{"rules": [
                {"pipeline": "orders_daily", "agent": "monitor",
                 "tools": ["warehouse.query", "warehouse.describe_table", "docs.search", "slack.post_message"]},
                {"pipeline": "orders_daily", "agent": "monitor", "environments": ["dev"], "tools": ["scratch.*"]}
            ]}"#,
        )
        .unwrap()
    }

    #[test]
    fn allows_listed_tools_exactly() {
        let policy = orders_daily();
        let cases = [
            ("warehouse.query", true),
            ("warehouse.query ", false),
            ("Warehouse.query", false),
            ("s3.delete_object", false),
            ("shell.exec", false),
            ("scratch.write", false),
        ];
        for (tool, allowed) in cases {
            let verdict = policy.evaluate(&RequestBuilder::tool_call(tool).build());
            assert_eq!(verdict.is_allow(), allowed, "{tool:?}");
            if !allowed {
                assert_eq!(verdict.codes(), [TOOL_NOT_ALLOWED]);
            }
        }
    }

    #[test]
    fn rules_can_be_per_environment() {
        let policy = orders_daily();
        let dev = RequestBuilder::tool_call("scratch.write").environment(Environment::Dev).build();
        assert!(policy.evaluate(&dev).is_allow());
    }

    #[test]
    fn an_agent_without_rules_may_call_nothing() {
        let policy = orders_daily();
        let other = RequestBuilder::tool_call("warehouse.query").agent("intruder").build();
        assert!(policy.evaluate(&other).is_deny());
    }

    fn listing(tools: &[&str]) -> RequestBuilder {
        tools.iter().fold(RequestBuilder::tool_listing("warehouse"), |b, name| {
            b.with_tool(listed_tool(serde_json::json!({"name": name, "inputSchema": {"type": "object"}})))
        })
    }

    #[test]
    fn a_listing_shows_exactly_the_tools_a_call_may_use() {
        let policy = orders_daily();
        let tools = ["warehouse.query", "warehouse.drop_table", "scratch.write", "shell.exec", "docs.search"];
        for environment in [Environment::Prod, Environment::Dev] {
            let verdict = policy.evaluate(&listing(&tools).environment(environment).build());
            assert!(verdict.is_allow(), "a listing is filtered, never refused");
            for tool in tools {
                let call = policy.evaluate(&RequestBuilder::tool_call(tool).environment(environment).build());
                assert_eq!(verdict.hidden_tools().contains(&tool), call.is_deny(), "{tool} in {environment:?}");
            }
        }
        let stranger = policy.evaluate(&listing(&tools).agent("intruder").build());
        assert_eq!(stranger.hidden_tools(), tools, "an agent without rules is shown nothing");
    }

    #[test]
    fn llm_requests_are_not_its_business() {
        let request = RequestBuilder::llm_request("gpt-4o-2024-08-06", 10, 10).build();
        assert!(orders_daily().evaluate(&request).is_allow());
    }

    #[test]
    fn bad_settings_are_refused_with_the_field() {
        let err =
            policy_from_json::<ToolScope>(r#"{"rules": [{"tools": ["a"], "environments": ["qa"]}]}"#).err().unwrap();
        assert!(err.contains("rules[0].environments"), "{err}");
        assert!(policy_from_json::<ToolScope>(r#"{"rules": []}"#).is_err());
        let err = policy_from_json::<ToolScope>(r#"{"rulez": []}"#).err().unwrap();
        assert!(err.contains("unknown field `rulez`"), "{err}");
    }
}
