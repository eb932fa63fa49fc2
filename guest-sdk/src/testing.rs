//! A native test kit: build requests, set the clock, read logs, and create
//! a policy from settings exactly as the host would — no Wasm involved.

use std::cell::{Cell, RefCell};

use crate::host::log::Level;
use crate::{Action, ArgValue, Argument, Environment, LlmRequest, Policy, Principal, Request, ToolCall, ToolFacts};

thread_local! {
    static NOW_MS: Cell<i64> = const { Cell::new(0) };
    static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
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
