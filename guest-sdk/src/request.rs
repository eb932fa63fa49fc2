//! Convenient, allocation-free accessors on the request.

use crate::{
    Action, ArgValue, Argument, Environment, ListedTool, LlmRequest, PastToolCall, Request, ToolCall, ToolListing,
    ToolResult,
};

impl Request {
    /// The tool call, when the request is one (not a tool's result: see
    /// [`Request::result`]).
    pub fn tool_call(&self) -> Option<&ToolCall> {
        match &self.action {
            Action::ToolCall(call) => Some(call),
            _ => None,
        }
    }

    /// The LLM request, when the request is one.
    pub fn llm_request(&self) -> Option<&LlmRequest> {
        match &self.action {
            Action::LlmRequest(llm) => Some(llm),
            _ => None,
        }
    }

    /// A server's tool listing, when the request is one. Only a policy
    /// whose bundle scope lists `tool_listing` is handed these.
    pub fn listing(&self) -> Option<&ToolListing> {
        match &self.action {
            Action::ToolListing(listing) => Some(listing),
            _ => None,
        }
    }

    /// A tool's result, when the request is one. Only a policy whose bundle
    /// scope lists `tool_result` is handed these.
    pub fn result(&self) -> Option<&ToolResult> {
        match &self.action {
            Action::ToolResult(result) => Some(result),
            _ => None,
        }
    }

    /// The tool name of a tool call (`None` for a result, even though it
    /// answers a call: a policy written for calls must not judge results
    /// by accident).
    pub fn tool(&self) -> Option<&str> {
        self.tool_call().map(|c| c.tool.as_str())
    }

    /// A top-level argument of a tool call.
    pub fn argument(&self, name: &str) -> Option<&ArgValue> {
        self.tool_call()?.argument(name)
    }

    /// A top-level string argument of a tool call; `None` when it is absent
    /// or not a string.
    pub fn str_argument(&self, name: &str) -> Option<&str> {
        self.argument(name)?.as_str()
    }

    /// The value of a request label.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

impl ToolCall {
    /// A top-level argument by name.
    pub fn argument(&self, name: &str) -> Option<&ArgValue> {
        argument(&self.arguments, name)
    }
}

impl PastToolCall {
    /// A top-level argument of the earlier call, by name.
    pub fn argument(&self, name: &str) -> Option<&ArgValue> {
        argument(&self.arguments, name)
    }

    /// A top-level string argument of the earlier call; `None` when it is
    /// absent or not a string.
    pub fn str_argument(&self, name: &str) -> Option<&str> {
        self.argument(name)?.as_str()
    }
}

fn argument<'a>(arguments: &'a [Argument], name: &str) -> Option<&'a ArgValue> {
    arguments.iter().find(|a| a.name == name).map(|a| &a.value)
}

impl ListedTool {
    /// The tool's name.
    pub fn name(&self) -> &str {
        &self.definition.name
    }

    /// The `sha256:<hex>` digest of the tool's current definition.
    pub fn digest(&self) -> &str {
        &self.definition.digest
    }

    /// True when another server lists a tool of the same name.
    pub fn is_shadowed(&self) -> bool {
        !self.also_listed_by.is_empty()
    }
}

impl ArgValue {
    /// The value when it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ArgValue::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The value when it is an integer.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ArgValue::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

impl Environment {
    /// The environment `dev`, `staging` or `prod` names; `None` for any
    /// other text (no trimming, no case folding).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "dev" => Some(Environment::Dev),
            "staging" => Some(Environment::Staging),
            "prod" => Some(Environment::Prod),
            _ => None,
        }
    }

    /// `dev`, `staging` or `prod`, as settings name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Staging => "staging",
            Environment::Prod => "prod",
        }
    }
}

impl LlmRequest {
    /// The most tokens the request can consume: its prompt plus the most
    /// output it allows.
    pub fn worst_case_tokens(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.max_output_tokens)
    }
}
