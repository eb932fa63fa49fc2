//! Deciding which policies of a bundle apply to a request.

use arbiter_types::{Action, Request};
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

    pub(crate) fn matches(&self, request: &Request) -> bool {
        let p = &request.principal;
        let listed = |list: &Option<Vec<String>>, value: &str| {
            list.as_ref().is_none_or(|l| l.iter().any(|x| x == value || x == "*"))
        };
        self.scope.environments.as_ref().is_none_or(|envs| envs.contains(&p.environment))
            && listed(&self.scope.pipelines, &p.pipeline)
            && listed(&self.scope.agents, &p.agent)
            && self.scope.actions.as_ref().is_none_or(|kinds| kinds.contains(&request.action.kind()))
            && match (&self.tools, &request.action) {
                (None, _) => true,
                (Some(globs), Action::ToolCall(call)) => globs.is_match(&call.tool),
                // A tool pattern restricts the policy to tool calls.
                (Some(_), Action::LlmRequest(_)) => false,
            }
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
