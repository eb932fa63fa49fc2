//! Convenient, allocation-free accessors on the request.

use crate::{Action, ArgValue, Environment, LlmRequest, Request, ToolCall};

impl Request {
    pub fn tool_call(&self) -> Option<&ToolCall> {
        match &self.action {
            Action::ToolCall(call) => Some(call),
            Action::LlmRequest(_) => None,
        }
    }

    pub fn llm_request(&self) -> Option<&LlmRequest> {
        match &self.action {
            Action::LlmRequest(llm) => Some(llm),
            Action::ToolCall(_) => None,
        }
    }

    /// The tool name of a tool call.
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
    pub fn argument(&self, name: &str) -> Option<&ArgValue> {
        self.arguments.iter().find(|a| a.name == name).map(|a| &a.value)
    }
}

impl ArgValue {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ArgValue::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            ArgValue::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

impl Environment {
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
