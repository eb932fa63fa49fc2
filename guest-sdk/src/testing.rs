//! A native test kit: build requests, set the clock, read logs, create a
//! policy from settings exactly as the host would — no Wasm involved — and
//! hold a review description to the settings type ([`check_review`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::host::log::Level;
pub use crate::review_check::check_review;
use crate::{
    Action, ArgValue, Argument, BreakerState, ChargeUnit, Environment, LlmRequest, PastToolCall, Policy, Principal,
    Request, ToolCall, ToolFacts, Window,
};

thread_local! {
    static NOW_MS: Cell<i64> = const { Cell::new(0) };
    static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    static HOST: RefCell<FakeHost> = RefCell::new(FakeHost::default());
}

/// What the stateful capabilities answer natively, per thread.
#[derive(Default)]
struct FakeHost {
    used: HashMap<String, u64>,
    tool_calls: Vec<PastToolCall>,
    breakers: HashMap<String, BreakerState>,
}

fn budget_key(scope: &str, window: Window, unit: ChargeUnit) -> String {
    format!("{scope}|{window:?}|{unit:?}")
}

/// Sets what `host::budgets::used` answers for a scope and window.
pub fn set_used(scope: &str, window: Window, unit: ChargeUnit, used: u64) {
    HOST.with(|h| h.borrow_mut().used.insert(budget_key(scope, window, unit), used));
}

pub(crate) fn used(scope: &str, window: Window, unit: ChargeUnit) -> u64 {
    HOST.with(|h| h.borrow().used.get(&budget_key(scope, window, unit)).copied().unwrap_or(0))
}

/// Adds an allowed tool call to the run history `host::history` reads.
pub fn record_tool_call(request_id: &str, timestamp_ms: i64, tool: &str, arguments: Vec<Argument>) {
    let call = PastToolCall { request_id: request_id.to_owned(), timestamp_ms, tool: tool.to_owned(), arguments };
    HOST.with(|h| h.borrow_mut().tool_calls.push(call));
}

pub(crate) fn tool_calls(tool: Option<&str>, since_ms: i64) -> Vec<PastToolCall> {
    HOST.with(|h| {
        h.borrow()
            .tool_calls
            .iter()
            .filter(|c| c.timestamp_ms >= since_ms && tool.is_none_or(|t| c.tool == t))
            .cloned()
            .collect()
    })
}

/// Sets what `host::breakers::state` answers for a key.
pub fn set_breaker(key: &str, state: BreakerState) {
    HOST.with(|h| h.borrow_mut().breakers.insert(key.to_owned(), state));
}

pub(crate) fn breaker(key: &str) -> BreakerState {
    HOST.with(|h| h.borrow().breakers.get(key).copied().unwrap_or(BreakerState::Closed))
}

/// Forgets every budget, tool call and breaker state set on this thread.
pub fn reset_host() {
    HOST.with(|h| *h.borrow_mut() = FakeHost::default());
}

/// Creates a policy from JSON settings, as the host's `init` does.
pub fn policy_from_json<P: Policy>(settings: &str) -> Result<P, String> {
    P::new(crate::parse_settings(settings)?)
}

/// Sets what `host::clock::now_ms` returns on this thread.
pub fn set_now_ms(ms: i64) {
    NOW_MS.with(|c| c.set(ms));
}

pub(crate) fn now_ms() -> i64 {
    NOW_MS.with(Cell::get)
}

pub(crate) fn record_log(level: Level, message: &str) {
    LOGS.with(|l| l.borrow_mut().push((level, message.to_owned())));
}

/// Takes the log lines written on this thread so far.
pub fn take_logs() -> Vec<(Level, String)> {
    LOGS.with(|l| std::mem::take(&mut *l.borrow_mut()))
}

/// Builds requests for tests, with the orders_daily principal by default.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    request: Request,
}

impl RequestBuilder {
    fn new(action: Action) -> Self {
        RequestBuilder {
            request: Request {
                id: "test-1".to_owned(),
                principal: Principal {
                    pipeline: "orders_daily".to_owned(),
                    agent: "monitor".to_owned(),
                    team: "data-platform".to_owned(),
                    environment: Environment::Prod,
                    run: "run-1".to_owned(),
                },
                action,
                timestamp_ms: 0,
                labels: Vec::new(),
            },
        }
    }

    pub fn tool_call(tool: &str) -> Self {
        Self::new(Action::ToolCall(ToolCall {
            tool: tool.to_owned(),
            arguments: Vec::new(),
            facts: ToolFacts { irreversible: None, target_resource: None, region: None },
        }))
    }

    pub fn llm_request(model: &str, prompt_tokens: u64, max_output_tokens: u64) -> Self {
        Self::new(Action::LlmRequest(LlmRequest {
            model: model.to_owned(),
            prompt_tokens,
            prompt_tokens_estimated: false,
            max_output_tokens,
        }))
    }

    /// Adds a string argument (tool calls only).
    pub fn arg(self, name: &str, value: &str) -> Self {
        self.arg_value(name, ArgValue::Text(value.to_owned()))
    }

    pub fn arg_value(mut self, name: &str, value: ArgValue) -> Self {
        if let Action::ToolCall(call) = &mut self.request.action {
            call.arguments.push(Argument { name: name.to_owned(), value });
        }
        self
    }

    pub fn environment(mut self, environment: Environment) -> Self {
        self.request.principal.environment = environment;
        self
    }

    pub fn pipeline(mut self, pipeline: &str) -> Self {
        self.request.principal.pipeline = pipeline.to_owned();
        self
    }

    pub fn agent(mut self, agent: &str) -> Self {
        self.request.principal.agent = agent.to_owned();
        self
    }

    pub fn run(mut self, run: &str) -> Self {
        self.request.principal.run = run.to_owned();
        self
    }

    pub fn timestamp_ms(mut self, ms: i64) -> Self {
        self.request.timestamp_ms = ms;
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.request.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn build(self) -> Request {
        self.request
    }
}
