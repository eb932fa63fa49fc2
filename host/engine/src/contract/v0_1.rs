//! Contract 0.1.0: tool calls and LLM requests; clamp and summarize.

use crate::bindings::v0_1 as bindings;
use crate::contract::Input;

crate::contract::shared::contract_glue!();

fn action(input: &Input<'_>) -> Result<wit::Action, String> {
    use arbiter_types::Action;
    match &input.request.action {
        Action::ToolCall(call) => Ok(wit::Action::ToolCall(wit::ToolCall {
            tool: call.tool.clone(),
            arguments: arguments(&call.arguments),
            facts: tool_facts(&call.facts),
        })),
        Action::LlmRequest(llm) => Ok(wit::Action::LlmRequest(llm_request(llm))),
        other @ (Action::ToolListing(_) | Action::ToolResult(_)) => {
            Err(format!("a {} cannot be expressed in contract 0.1.0", other.kind().as_str()))
        }
    }
}

fn obligation(o: wit::Obligation) -> Result<arbiter_types::Obligation, String> {
    use arbiter_types::Obligation;
    Ok(match o {
        wit::Obligation::ClampMaxOutputTokens(n) => Obligation::ClampMaxOutputTokens(n),
        wit::Obligation::SummarizeContext(n) => Obligation::SummarizeContext(n),
    })
}
