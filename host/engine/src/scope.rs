//! Deciding which policies of a bundle apply to a request.

use arbiter_types::{Action, ActionKind, Request, ToolListing};
use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::manifest::Scope;

/// A [`Scope`] compiled for matching.
#[derive(Debug)]
pub(crate) struct ScopeMatcher {
    scope: Scope,
    tools: Option<GlobSet>,
}

impl ScopeMatcher {
    /// Patterns were validated with the manifest; an invalid one here is a
    /// caller bug reported as an error rather than a panic.
    pub(crate) fn new(scope: Scope) -> Result<Self, globset::Error> {
        let tools = match &scope.tools {
            None => None,
            Some(patterns) => {
                let mut set = GlobSetBuilder::new();
                for pattern in patterns {
                    set.add(Glob::new(pattern)?);
                }
                Some(set.build()?)
            }
        };
        Ok(ScopeMatcher { scope, tools })
    }

    /// Whether the policy sees the request. A scope that names no action
    /// kinds means those of contract 0.1.0 (tool calls and LLM requests):
    /// listings and results reach only policies that ask for them.
    pub(crate) fn matches(&self, request: &Request) -> bool {
        let p = &request.principal;
        let listed = |list: &Option<Vec<String>>, value: &str| {
            list.as_ref().is_none_or(|l| l.iter().any(|x| x == value || x == "*"))
        };
        let kind = request.action.kind();
        self.scope.environments.as_ref().is_none_or(|envs| envs.contains(&p.environment))
            && listed(&self.scope.pipelines, &p.pipeline)
            && listed(&self.scope.agents, &p.agent)
            && self.scope.actions.as_deref().unwrap_or(&ActionKind::ORIGINAL).contains(&kind)
            && match (&self.tools, &request.action) {
                (None, _) => true,
                (Some(globs), Action::ToolCall(call)) => globs.is_match(&call.tool),
                (Some(globs), Action::ToolResult(result)) => globs.is_match(&result.call.tool),
                // Sees the listing's matching tools (see `listing_for`).
                (Some(_), Action::ToolListing(_)) => true,
                // A tool pattern restricts the policy to tools.
                (Some(_), Action::LlmRequest(_)) => false,
            }
    }

    /// A listing narrowed to the tools the scope's patterns match, when it
    /// has patterns; `None` when the policy sees the listing as it is.
    pub(crate) fn listing_for(&self, request: &Request) -> Option<Request> {
        let (Some(globs), Action::ToolListing(listing)) = (&self.tools, &request.action) else { return None };
        let tools = listing.tools.iter().filter(|t| globs.is_match(&t.name)).cloned().collect();
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
        let m = ScopeMatcher::new(Scope::default()).unwrap();
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
        })
        .unwrap();
        assert!(m.matches(&request("prod", Some("warehouse.query"))));
        assert!(!m.matches(&request("dev", Some("warehouse.query"))));
        assert!(!m.matches(&request("prod", Some("docs.search"))));
        assert!(!m.matches(&request("prod", Some("Warehouse.query"))));
        assert!(!m.matches(&request("prod", None)));
    }
}
