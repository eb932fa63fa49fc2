//! What a decision will read, forecast from what the last decision of its
//! kind read, so a store where reads are round trips (Redis) fetches them
//! all in one (docs/decisions/0019-one-read-one-commit.md).
//!
//! A kind is who asks (pipeline, agent, team) and what for (action kind
//! and its tool, model or server; and the environment): the policies'
//! questions follow from those. A run id in a question (a run budget's
//! scope) is kept as a hole, filled with the next decision's run. The
//! forecast only says what to fetch: answers always come from the
//! decision's own exchange.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use arbiter_state::{BudgetRead, ReadSet};
use arbiter_types::{Action, ActionKind, ChargeUnit, Environment, Request, ToolCall, Window};

/// Kinds remembered at most; past it a new kind takes the place of an
/// arbitrary one, so a caller inventing tool names cannot grow the memory
/// (what it evicts costs that kind one decision's reads as asked).
const MAX_KINDS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Kind {
    pipeline: String,
    agent: String,
    team: String,
    environment: Environment,
    action: ActionKind,
    /// The tool, model or server.
    subject: String,
}

impl Kind {
    fn of(request: &Request) -> Self {
        let p = &request.principal;
        let subject = match &request.action {
            Action::ToolCall(ToolCall { tool, .. }) => tool.clone(),
            Action::ToolResult(result) => result.call.tool.clone(),
            Action::LlmRequest(llm) => llm.model.clone(),
            Action::ToolListing(listing) => listing.server.clone(),
        };
        Kind {
            pipeline: p.pipeline.clone(),
            agent: p.agent.clone(),
            team: p.team.clone(),
            environment: p.environment,
            action: request.action.kind(),
            subject,
        }
    }
}

/// A name with the run id cut out of it, where it occurs exactly once (a
/// run budget's scope): what comes before and after. Any other name is
/// kept whole, so a run id the caller picks cannot make a template larger
/// than its name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RunTemplate {
    Whole(String),
    Around(String, String),
}

impl RunTemplate {
    fn of(name: &str, run: &str) -> Self {
        match name.split_once(run) {
            Some((before, after)) if !run.is_empty() && !after.contains(run) => {
                RunTemplate::Around(before.to_owned(), after.to_owned())
            }
            _ => RunTemplate::Whole(name.to_owned()),
        }
    }

    fn render(&self, run: &str) -> String {
        match self {
            RunTemplate::Whole(name) => name.clone(),
            RunTemplate::Around(before, after) => format!("{before}{run}{after}"),
        }
    }
}

/// What one kind of decision read, with run ids as holes.
#[derive(Debug, Clone)]
struct Learned {
    budgets: Vec<(RunTemplate, Window, ChargeUnit)>,
    breakers: Vec<RunTemplate>,
    history: bool,
}

/// The forecasts of one decider.
#[derive(Debug, Default)]
pub(crate) struct Forecasts {
    learned: Mutex<HashMap<Kind, Learned>>,
}

impl Forecasts {
    /// What `request` is expected to read: its kind's last reads, with its
    /// run, and the registry views its tool names need.
    pub(crate) fn forecast(&self, request: &Request) -> ReadSet {
        let run = &request.principal.run;
        let tools = registry_names(request).map(|(server, names)| (server.to_owned(), names));
        let learned = self.learned.lock().unwrap_or_else(PoisonError::into_inner).get(&Kind::of(request)).cloned();
        let Some(learned) = learned else { return ReadSet { tools, ..ReadSet::default() } };
        ReadSet {
            budgets: learned
                .budgets
                .iter()
                .map(|(scope, window, unit)| BudgetRead { scope: scope.render(run), window: *window, unit: *unit })
                .collect(),
            breakers: learned.breakers.iter().map(|key| key.render(run)).collect(),
            history: learned.history,
            tools,
        }
    }

    /// Forgets what `request`'s kind read (its forecast could not be read).
    pub(crate) fn forget(&self, request: &Request) {
        self.learned.lock().unwrap_or_else(PoisonError::into_inner).remove(&Kind::of(request));
    }

    /// Forgets every kind (a new bundle asks its own questions).
    pub(crate) fn clear(&self) {
        self.learned.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Remembers what `request`'s decision asked, for the next of its kind.
    pub(crate) fn learn(&self, request: &Request, asked: &ReadSet) {
        let run = &request.principal.run;
        let learned = Learned {
            budgets: asked.budgets.iter().map(|b| (RunTemplate::of(&b.scope, run), b.window, b.unit)).collect(),
            breakers: asked.breakers.iter().map(|key| RunTemplate::of(key, run)).collect(),
            history: asked.history,
        };
        let mut all = self.learned.lock().unwrap_or_else(PoisonError::into_inner);
        let kind = Kind::of(request);
        if all.len() >= MAX_KINDS
            && !all.contains_key(&kind)
            && let Some(evicted) = all.keys().next().cloned()
        {
            all.remove(&evicted);
        }
        all.insert(kind, learned);
    }
}

/// The server and tool names whose registry views a request needs.
pub(crate) fn registry_names(request: &Request) -> Option<(&str, Vec<String>)> {
    match &request.action {
        Action::ToolListing(listing) => Some((&listing.server, listing.tools.iter().map(|t| t.name.clone()).collect())),
        other => match other.tool_call() {
            Some(ToolCall { server: Some(server), tool, .. }) => Some((server, vec![tool.clone()])),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use arbiter_state::{BudgetRead, ReadSet};
    use arbiter_types::{ChargeUnit, Request, Window};

    use super::{Forecasts, MAX_KINDS, RunTemplate};

    fn call(tool: &str, run: &str) -> Request {
        let body = serde_json::json!({
            "id": "r", "principal": {"pipeline": "p", "agent": "a", "team": "t", "environment": "prod", "run": run},
            "action": {"kind": "tool_call", "tool": tool, "arguments": {}},
        });
        Request::from_json_value(&body).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_kind_is_forecast_what_it_read_last_in_its_own_run() {
        let forecasts = Forecasts::default();
        let asked = ReadSet {
            budgets: vec![BudgetRead { scope: "run:p/r1".into(), window: Window::Run, unit: ChargeUnit::Tokens }],
            breakers: vec!["p/x".into()],
            history: true,
            tools: None,
        };
        assert_eq!(forecasts.forecast(&call("x", "r1")), ReadSet::default(), "nothing learned yet");
        forecasts.learn(&call("x", "r1"), &asked);
        let next = forecasts.forecast(&call("x", "r2"));
        assert_eq!(next.budgets[0].scope, "run:p/r2");
        assert_eq!((next.breakers, next.history), (vec!["p/x".to_owned()], true));
        assert_eq!(forecasts.forecast(&call("y", "r2")), ReadSet::default(), "another tool is another kind");
    }

    #[test]
    fn invented_kinds_cannot_grow_the_memory() {
        let forecasts = Forecasts::default();
        for n in 0..=MAX_KINDS * 2 {
            forecasts.learn(&call(&format!("tool-{n}"), "r"), &ReadSet::default());
        }
        let kept = forecasts.learned.lock().map(|all| all.len()).unwrap_or_default();
        assert_eq!(kept, MAX_KINDS);
        // The newest is kept.
        let last = call(&format!("tool-{}", MAX_KINDS * 2), "r");
        assert!(forecasts.learned.lock().is_ok_and(|all| all.contains_key(&super::Kind::of(&last))));
    }

    #[test]
    fn a_run_id_becomes_a_hole_filled_by_the_next_run() {
        let scope = RunTemplate::of("run:orders_daily/r-7", "r-7");
        assert_eq!(scope.render("r-8"), "run:orders_daily/r-8");
        // Twice, or not at all, or an empty run id: kept whole.
        assert_eq!(RunTemplate::of("r1/r1", "r1").render("r2"), "r1/r1");
        assert_eq!(RunTemplate::of("pipeline:orders_daily", "r1").render("r2"), "pipeline:orders_daily");
        assert_eq!(RunTemplate::of("run:p/", "").render("x"), "run:p/");
    }
}
