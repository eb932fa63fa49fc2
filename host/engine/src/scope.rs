//! Deciding which policies of a bundle apply to a request.

use arbiter_types::{Action, ActionKind, Request, ToolListing};

use crate::manifest::Scope;

/// A [`Scope`] as the engine matches requests with it: tool, pipeline and
/// agent names by the glob dialect of `arbiter-glob`, the one policies'
/// settings use (`docs/authoring.md#glob-patterns`).
#[derive(Debug)]
pub(crate) struct ScopeMatcher {
    scope: Scope,
}

impl ScopeMatcher {
    /// Every string is a pattern of the dialect, so any scope compiles.
    pub(crate) fn new(scope: Scope) -> Self {
        ScopeMatcher { scope }
    }

    /// Whether the policy sees the request. A scope that names no action
    /// kinds means those of contract 0.1.0 (tool calls and LLM requests):
    /// listings and results reach only policies that ask for them.
    pub(crate) fn matches(&self, request: &Request) -> bool {
        let p = &request.principal;
        let listed = |list: &Option<Vec<String>>, value: &str| {
            list.as_ref().is_none_or(|patterns| arbiter_glob::any_matches(patterns, value))
        };
        let kind = request.action.kind();
        self.scope.environments.as_ref().is_none_or(|envs| envs.contains(&p.environment))
            && listed(&self.scope.pipelines, &p.pipeline)
            && listed(&self.scope.agents, &p.agent)
            && self.scope.actions.as_deref().unwrap_or(&ActionKind::ORIGINAL).contains(&kind)
            && match (&self.scope.tools, &request.action) {
                (None, _) => true,
                (Some(globs), Action::ToolCall(call)) => arbiter_glob::any_matches(globs, &call.tool),
                (Some(globs), Action::ToolResult(result)) => arbiter_glob::any_matches(globs, &result.call.tool),
                // Sees the listing's matching tools (see `listing_for`).
                (Some(_), Action::ToolListing(_)) => true,
                // A tool pattern restricts the policy to tools.
                (Some(_), Action::LlmRequest(_)) => false,
            }
    }

    /// A listing narrowed to the tools the scope's patterns match, when it
    /// has patterns; `None` when the policy sees the listing as it is.
    pub(crate) fn listing_for(&self, request: &Request) -> Option<Request> {
        let (Some(globs), Action::ToolListing(listing)) = (&self.scope.tools, &request.action) else { return None };
        let tools = listing.tools.iter().filter(|t| arbiter_glob::any_matches(globs, &t.name)).cloned().collect();
        let narrowed = ToolListing { server: listing.server.clone(), tools, page: listing.page };
        Some(Request { action: Action::ToolListing(narrowed), ..request.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_types::{ActionKind, Environment};
    use serde_json::json;

    fn request(env: &str, tool: Option<&str>) -> Request {
        let action = match tool {
            Some(tool) => json!({"kind": "tool_call", "tool": tool}),
            None => json!({"kind": "llm_request", "model": "m", "prompt_tokens": 1, "max_output_tokens": 1}),
        };
        Request::from_json_value(&json!({
            "id": "r", "action": action,
            "principal": {"pipeline": "orders_daily", "agent": "monitor", "team": "t", "environment": env, "run": "r1"}
        }))
        .unwrap()
    }

    #[test]
    fn empty_scope_matches_everything() {
        let m = ScopeMatcher::new(Scope::default());
        assert!(m.matches(&request("dev", Some("x"))));
        assert!(m.matches(&request("prod", None)));
    }

    #[test]
    fn every_listed_dimension_must_match() {
        let m = ScopeMatcher::new(Scope {
            environments: Some(vec![Environment::Prod]),
            pipelines: Some(vec!["orders_daily".into()]),
            agents: Some(vec!["*".into()]),
            actions: Some(vec![ActionKind::ToolCall]),
            tools: Some(vec!["warehouse.*".into()]),
        });
        assert!(m.matches(&request("prod", Some("warehouse.query"))));
        assert!(!m.matches(&request("dev", Some("warehouse.query"))));
        assert!(!m.matches(&request("prod", Some("docs.search"))));
        assert!(!m.matches(&request("prod", Some("Warehouse.query"))));
        assert!(!m.matches(&request("prod", None)));
    }

    #[test]
    fn pipelines_and_agents_are_globs_of_the_same_dialect() {
        let m = ScopeMatcher::new(Scope {
            pipelines: Some(vec!["orders_*".into()]),
            agents: Some(vec!["mon?tor".into()]),
            ..Scope::default()
        });
        assert!(m.matches(&request("prod", Some("x"))));
        let literal = ScopeMatcher::new(Scope { pipelines: Some(vec![r"orders\_daily".into()]), ..Scope::default() });
        assert!(literal.matches(&request("prod", Some("x"))), "an escaped character is itself");
        let other = ScopeMatcher::new(Scope {
            pipelines: Some(vec!["orders_weekly".into(), "Orders_*".into()]),
            ..Scope::default()
        });
        assert!(!other.matches(&request("prod", Some("x"))), "no prefix match, no case folding");
    }
}
