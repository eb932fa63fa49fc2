//! A native test kit: build requests, set the clock, read logs, create a
//! policy from settings exactly as the host would — no Wasm involved — and
//! hold a review description to the settings type ([`check_review`]).
//!
//! The fake host answers the capabilities as the real one does: history
//! per run (the run of the request being decided), breaker configurations
//! checked (one the host refuses faults the policy). [`decide`] runs a
//! policy on a request as the engine does (fault on panic, commit on
//! allow), and [`run_case_file`] holds a policy to a case file
//! (`policies/<name>/cases.json`), the same file the component tests run
//! against the built component, so the two cannot drift apart unseen.
//!
//! Tool listings and results are built from their MCP JSON with the host's
//! own code (`arbiter-types`): a listed tool's digest, a result's strings
//! and their pointers, and the masking of redactions ([`redacted`]) are
//! exactly what a policy meets in production.

mod cases;
mod decide;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

pub use cases::run_case_file;
pub use decide::{decide, request_from_json};

use crate::host::log::Level;
pub use crate::review_check::check_review;
use crate::{
    Action, ArgValue, Argument, BreakerConfig, BreakerState, ChargeUnit, Environment, ListedTool, LlmRequest,
    Obligation, PastToolCall, Policy, Principal, Request, TextAt, ToolCall, ToolDefinition, ToolFacts, ToolListing,
    ToolResult, Verdict, Window,
};
use serde_json::Value;

thread_local! {
    static NOW_MS: Cell<i64> = const { Cell::new(0) };
    static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    static HOST: RefCell<FakeHost> = RefCell::new(FakeHost::default());
}

/// What the stateful capabilities answer natively, per thread.
#[derive(Default)]
struct FakeHost {
    used: HashMap<String, u64>,
    /// Allowed tool calls by run, as the host keeps history: per pipeline
    /// and run id.
    tool_calls: HashMap<RunKey, Vec<PastToolCall>>,
    breakers: HashMap<String, BreakerState>,
    /// The run of the request being decided ([`decide`] sets it); history
    /// answers for it alone. `None`: [`RequestBuilder`]'s default run.
    run: Option<RunKey>,
}

/// A run as history is kept: its pipeline and run id.
type RunKey = (String, String);

/// The run [`RequestBuilder`] puts its requests in.
fn default_run() -> RunKey {
    (DEFAULT_PIPELINE.to_owned(), DEFAULT_RUN.to_owned())
}

const DEFAULT_PIPELINE: &str = "orders_daily";
const DEFAULT_RUN: &str = "run-1";

fn current_run(host: &FakeHost) -> RunKey {
    host.run.clone().unwrap_or_else(default_run)
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

/// Adds `amount` to what a budget has used, as the host's commit does.
fn add_used(scope: &str, window: Window, unit: ChargeUnit, amount: u64) {
    HOST.with(|h| {
        let mut host = h.borrow_mut();
        let used = host.used.entry(budget_key(scope, window, unit)).or_default();
        *used = used.saturating_add(amount);
    });
}

/// Adds an allowed tool call to the history of the current run: that of
/// the request last [`decide`]d, or [`RequestBuilder`]'s default run
/// (`orders_daily` / `run-1`) before any.
pub fn record_tool_call(request_id: &str, timestamp_ms: i64, tool: &str, arguments: Vec<Argument>) {
    let call = PastToolCall { request_id: request_id.to_owned(), timestamp_ms, tool: tool.to_owned(), arguments };
    HOST.with(|h| {
        let mut host = h.borrow_mut();
        let run = current_run(&host);
        host.tool_calls.entry(run).or_default().push(call);
    });
}

/// Makes `pipeline`'s run `run` the one history answers for (what the
/// host takes from the request being decided).
fn set_run(pipeline: &str, run: &str) {
    HOST.with(|h| h.borrow_mut().run = Some((pipeline.to_owned(), run.to_owned())));
}

pub(crate) fn tool_calls(tool: Option<&str>, since_ms: i64) -> Vec<PastToolCall> {
    HOST.with(|h| {
        let host = h.borrow();
        host.tool_calls
            .get(&current_run(&host))
            .into_iter()
            .flatten()
            .filter(|c| c.timestamp_ms >= since_ms && tool.is_none_or(|t| c.tool == t))
            .cloned()
            .collect()
    })
}

/// `host::history::count_similar`, answered from the calls recorded.
pub(crate) fn count_similar(tool: &str, argument: &str, text: &str, min_similarity: f64, since_ms: i64) -> u32 {
    let min = arbiter_text::check_threshold(min_similarity).unwrap_or_else(|e| panic!("{e}"));
    assert!(text.len() <= arbiter_text::MAX_QUESTION_TEXT_BYTES, "a {}-byte text to compare", text.len());
    let text = crate::text::TokenSet::of(text);
    let near = tool_calls(Some(tool), since_ms)
        .iter()
        .filter_map(|call| call.str_argument(argument))
        .filter(|earlier| crate::text::TokenSet::of(earlier).is_near(&text, min))
        .count();
    u32::try_from(near).unwrap_or(u32::MAX)
}

/// `host::history::first_mention`, answered from the calls recorded.
pub(crate) fn first_mention(
    tools: &[String],
    arguments: &[String],
    markers: &[String],
    since_ms: i64,
) -> Option<crate::Mention> {
    arbiter_text::check_question_lists(&[tools, arguments, markers]).unwrap_or_else(|e| panic!("{e}"));
    tool_calls(None, since_ms).into_iter().find_map(|call| {
        if !crate::glob::any_matches(tools, &call.tool) {
            return None;
        }
        let texts = call.arguments.iter().filter(|a| arguments.contains(&a.name)).filter_map(|a| a.value.as_str());
        let marker = arbiter_text::first_marker(texts, markers)?;
        Some(crate::Mention { request_id: call.request_id.clone(), marker: markers[marker].clone() })
    })
}

/// Sets what `host::breakers::state` answers for a key.
pub fn set_breaker(key: &str, state: BreakerState) {
    HOST.with(|h| h.borrow_mut().breakers.insert(key.to_owned(), state));
}

/// A breaker's state. The host checks the configuration first and traps
/// the policy (a `policy_fault`) on one it refuses; so does this, with a
/// panic [`decide`] turns into that fault.
pub(crate) fn breaker(key: &str, config: &BreakerConfig) -> BreakerState {
    if let Err(refused) = config.validate() {
        panic!("the host faults a policy asking for breaker `{key}` with this configuration: {refused}");
    }
    HOST.with(|h| h.borrow().breakers.get(key).copied().unwrap_or(BreakerState::Closed))
}

/// Forgets every budget, tool call, breaker state and the current run set
/// on this thread.
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
                    pipeline: DEFAULT_PIPELINE.to_owned(),
                    agent: "monitor".to_owned(),
                    team: "data-platform".to_owned(),
                    environment: Environment::Prod,
                    run: DEFAULT_RUN.to_owned(),
                },
                action,
                timestamp_ms: 0,
                labels: Vec::new(),
            },
        }
    }

    /// A call of `tool` without arguments, outside MCP (no server).
    pub fn tool_call(tool: &str) -> Self {
        Self::new(Action::ToolCall(ToolCall {
            tool: tool.to_owned(),
            arguments: Vec::new(),
            facts: ToolFacts { irreversible: None, target_resource: None, region: None },
            server: None,
            listed: None,
        }))
    }

    /// `server`'s answer to `tools/list`, with no tools yet
    /// ([`RequestBuilder::with_tool`] adds them).
    pub fn tool_listing(server: &str) -> Self {
        Self::new(Action::ToolListing(ToolListing { server: server.to_owned(), tools: Vec::new() }))
    }

    /// Adds a tool to a listing (see [`listed_tool`]).
    pub fn with_tool(mut self, tool: ListedTool) -> Self {
        if let Action::ToolListing(listing) = &mut self.request.action {
            listing.tools.push(tool);
        }
        self
    }

    /// The MCP server of a call (or of a result's call, or a listing's).
    pub fn server(mut self, server: &str) -> Self {
        match &mut self.request.action {
            Action::ToolListing(listing) => listing.server = server.to_owned(),
            _ => {
                if let Some(call) = self.call_mut() {
                    call.server = Some(server.to_owned());
                }
            }
        }
        self
    }

    /// The tool as the call's server last listed it (see [`listed_tool`]).
    pub fn listed(mut self, tool: ListedTool) -> Self {
        if let Some(call) = self.call_mut() {
            call.listed = Some(tool);
        }
        self
    }

    /// Sets a call's arguments from a JSON object, as the host passes them:
    /// strings, numbers, booleans and null as themselves, nested values as
    /// their JSON text.
    pub fn args(mut self, arguments: Value) -> Self {
        let Value::Object(members) = arguments else { panic!("arguments must be a JSON object") };
        if let Some(call) = self.call_mut() {
            call.arguments =
                members.into_iter().map(|(name, value)| Argument { name, value: arg_value(value) }).collect();
        }
        self
    }

    /// Turns a tool call into the server's answer to it: `result` is the
    /// JSON-RPC result object (`{"content": [...], "isError": false}`),
    /// whose strings the policy is handed with their pointers.
    pub fn result(mut self, result: Value) -> Self {
        let Action::ToolCall(call) = &self.request.action else { panic!("result() follows tool_call()") };
        let Value::Object(document) = &result else { panic!("a tool result is a JSON object") };
        let is_error = document.get("isError").and_then(Value::as_bool).unwrap_or(false);
        self.request.action =
            Action::ToolResult(ToolResult { call: call.clone(), is_error, texts: texts_of(document) });
        self
    }

    fn call_mut(&mut self) -> Option<&mut ToolCall> {
        match &mut self.request.action {
            Action::ToolCall(call) => Some(call),
            Action::ToolResult(result) => Some(&mut result.call),
            _ => None,
        }
    }

    /// An LLM request for `model` with an exact (not estimated) prompt size.
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

    /// Adds an argument of any type (tool calls only).
    pub fn arg_value(mut self, name: &str, value: ArgValue) -> Self {
        if let Some(call) = self.call_mut() {
            call.arguments.push(Argument { name: name.to_owned(), value });
        }
        self
    }

    /// The principal's environment (default `prod`).
    pub fn environment(mut self, environment: Environment) -> Self {
        self.request.principal.environment = environment;
        self
    }

    /// The principal's pipeline (default `orders_daily`).
    pub fn pipeline(mut self, pipeline: &str) -> Self {
        self.request.principal.pipeline = pipeline.to_owned();
        self
    }

    /// The principal's agent (default `monitor`).
    pub fn agent(mut self, agent: &str) -> Self {
        self.request.principal.agent = agent.to_owned();
        self
    }

    /// The principal's run (default `run-1`), which history is kept by.
    pub fn run(mut self, run: &str) -> Self {
        self.request.principal.run = run.to_owned();
        self
    }

    /// The decision's time, as the host hands it (default 0).
    pub fn timestamp_ms(mut self, ms: i64) -> Self {
        self.request.timestamp_ms = ms;
        self
    }

    /// Adds a request label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.request.labels.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The request.
    pub fn build(self) -> Request {
        self.request
    }
}

/// A result's strings with their pointers, as the host hands them over.
fn texts_of(document: &serde_json::Map<String, Value>) -> Vec<TextAt> {
    arbiter_types::strings_with_pointers(document)
        .unwrap_or_else(|| panic!("more than {} strings", arbiter_types::MAX_TEXTS))
        .into_iter()
        .map(|(pointer, text)| TextAt { pointer, text: text.to_owned() })
        .collect()
}

/// A top-level argument value as the host passes it.
fn arg_value(value: Value) -> ArgValue {
    match value {
        Value::Null => ArgValue::Null,
        Value::Bool(b) => ArgValue::Boolean(b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => ArgValue::Integer(i),
            (None, Some(f)) => ArgValue::Float(f),
            (None, None) => ArgValue::Json(n.to_string()),
        },
        Value::String(s) => ArgValue::Text(s),
        nested @ (Value::Array(_) | Value::Object(_)) => ArgValue::Json(nested.to_string()),
    }
}

/// A tool as a server lists it, from its `tools/list` JSON (`name`,
/// `description`, `inputSchema`, optional `title` and `annotations`), with
/// the digest the host computes, seen for the first time and listed by no
/// other server; set `first_seen_digest` and `also_listed_by` to taste.
pub fn listed_tool(mcp: Value) -> ListedTool {
    listed(arbiter_types::ToolDefinition::from_mcp(&mcp).unwrap_or_else(|e| panic!("tool: {e}")))
}

/// A tool definition as a policy is handed it, first seen and unshadowed.
fn listed(definition: arbiter_types::ToolDefinition) -> ListedTool {
    ListedTool {
        definition: ToolDefinition {
            digest: definition.digest(),
            input_schema: definition.input_schema.to_string(),
            annotations: Value::Object(definition.annotations).to_string(),
            name: definition.name,
            description: definition.description,
        },
        first_seen_digest: None,
        also_listed_by: Vec::new(),
    }
}

/// A call's arguments as the JSON object the agent sent.
pub fn arguments_json(call: &ToolCall) -> Value {
    let value = |v: &ArgValue| match v {
        ArgValue::Null => Value::Null,
        ArgValue::Boolean(b) => Value::Bool(*b),
        ArgValue::Integer(i) => Value::from(*i),
        ArgValue::Float(f) => Value::from(*f),
        ArgValue::Text(s) => Value::String(s.clone()),
        ArgValue::Json(json) => serde_json::from_str(json).unwrap_or_else(|e| panic!("argument JSON: {e}")),
    };
    Value::Object(call.arguments.iter().map(|a| (a.name.clone(), value(&a.value))).collect())
}

/// `document` (a call's arguments, see [`arguments_json`], or a result)
/// as the host forwards it once the verdict's redactions are applied; an
/// error is what the host would count as the policy's fault.
pub fn redacted(document: &Value, verdict: &Verdict) -> Result<Value, String> {
    let redactions: Vec<arbiter_types::Redaction> = verdict
        .obligations
        .iter()
        .filter_map(|o| match o {
            Obligation::Redact(r) => Some(arbiter_types::Redaction {
                pointer: r.pointer.clone(),
                start: r.start,
                end: r.end,
                code: r.code.clone(),
            }),
            _ => None,
        })
        .collect();
    if redactions.len() > crate::MAX_REDACTIONS {
        return Err(format!("{} redactions; at most {}", redactions.len(), crate::MAX_REDACTIONS));
    }
    let Value::Object(mut document) = document.clone() else {
        return Err("the host redacts only JSON objects (arguments, results)".to_owned());
    };
    arbiter_types::apply_redactions(&mut document, &redactions).map_err(|e| e.to_string())?;
    Ok(Value::Object(document))
}
