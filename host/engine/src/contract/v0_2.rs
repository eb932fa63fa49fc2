//! Contract 0.2.0: adds tool listings and results, a call's server and
//! listed definition, and the hide-tool and redact obligations.

use crate::bindings::v0_2 as bindings;
use crate::contract::{Input, KnownTool};

crate::contract::shared::contract_glue!();

use arbiter_types::{Action, Obligation, Redaction, ToolCall, ToolDefinition};

fn action(input: &Input<'_>) -> Result<wit::Action, String> {
    Ok(match &input.request.action {
        Action::ToolCall(call) => wit::Action::ToolCall(tool_call(call, input)),
        Action::LlmRequest(llm) => wit::Action::LlmRequest(llm_request(llm)),
        Action::ToolListing(listing) => wit::Action::ToolListing(wit::ToolListing {
            server: listing.server.clone(),
            tools: listing
                .tools
                .iter()
                .map(|tool| listed_tool(tool, input.known.get(&tool.name), &listing.server))
                .collect(),
        }),
        Action::ToolResult(result) => wit::Action::ToolResult(wit::ToolResult {
            call: tool_call(&result.call, input),
            is_error: result.is_error(),
            texts: arbiter_types::strings_with_pointers(&result.result)
                .ok_or("the result has too many strings to hand over")?
                .into_iter()
                .map(|(pointer, text)| wit::TextAt { pointer, text: text.to_owned() })
                .collect(),
        }),
    })
}

fn tool_call(call: &ToolCall, input: &Input<'_>) -> wit::ToolCall {
    let listed = call.server.as_deref().and_then(|server| {
        let known = input.known.get(&call.tool)?;
        let current = known.current.as_ref()?;
        Some(listed_tool(current, Some(known), server))
    });
    wit::ToolCall {
        tool: call.tool.clone(),
        arguments: arguments(&call.arguments),
        facts: tool_facts(&call.facts),
        server: call.server.clone(),
        listed,
    }
}

/// `definition` as `server` gives it, with what the registry knows.
fn listed_tool(definition: &ToolDefinition, known: Option<&KnownTool>, server: &str) -> wit::ListedTool {
    wit::ListedTool {
        definition: wit::ToolDefinition {
            name: definition.name.clone(),
            description: definition.description.clone(),
            input_schema: definition.input_schema.to_string(),
            annotations: Value::Object(definition.annotations.clone()).to_string(),
            digest: definition.digest(),
        },
        first_seen_digest: known.and_then(|k| k.first_digest.clone()),
        also_listed_by: known
            .map(|k| k.listed_by.iter().filter(|s| s.as_str() != server).cloned().collect())
            .unwrap_or_default(),
    }
}

fn obligation(o: wit::Obligation) -> Result<Obligation, String> {
    Ok(match o {
        wit::Obligation::ClampMaxOutputTokens(n) => Obligation::ClampMaxOutputTokens(n),
        wit::Obligation::SummarizeContext(n) => Obligation::SummarizeContext(n),
        wit::Obligation::HideTool(name) => {
            if name.is_empty() || name.len() > MAX_NAME_BYTES {
                return Err(format!("a hidden tool's name must be 1..={MAX_NAME_BYTES} bytes"));
            }
            Obligation::HideTool(name)
        }
        wit::Obligation::Redact(r) => {
            if !check_code(&r.code) {
                return Err(format!("a redaction's code must be snake_case, 1..={MAX_CODE_BYTES} bytes"));
            }
            Obligation::Redact(Redaction { pointer: r.pointer, start: r.start, end: r.end, code: r.code })
        }
    })
}
