//! Contract 0.3.0: adds `history.count-similar` and
//! `history.first-mention`, questions the host answers from the run's
//! history instead of handing the policy every earlier call.
//!
//! Every interface but `history` is 0.2.0's (`bindings::v0_3`): the
//! request, the verdict checks and the capability hosts are 0.2.0's code,
//! linked here under the 0.3.0 names.

use arbiter_component::{CONTRACT_PACKAGE, Capability, ContractVersion};
use arbiter_state::{MentionQuery, SimilarQuery};
use arbiter_text::TokenSet;
use arbiter_types::Verdict;
use wasmtime::Store;
use wasmtime::component::{HasSelf, Linker};

use crate::bindings::v0_2::arbiter::policy::{breakers, budgets, clock, history as history_0_2, log, types as wit};
use crate::bindings::v0_3::arbiter::policy::history;
use crate::bindings::v0_3::{Policy, PolicyPre};
use crate::contract::v0_2::verdict_from_wit;
use crate::sandbox::{SandboxState, capability_refused, state_error};

/// Links the capabilities granted and imported, and the types.
pub(crate) fn link(
    linker: &mut Linker<SandboxState>,
    capabilities: impl Iterator<Item = Capability>,
) -> wasmtime::Result<()> {
    let version = ContractVersion::V0_3.as_str();
    for capability in capabilities {
        let mut instance = linker.instance(&capability.interface(version))?;
        match capability {
            Capability::Log => log::add_to_linker_instance::<_, HasSelf<_>>(&mut instance, |s| s)?,
            Capability::Clock => clock::add_to_linker_instance::<_, HasSelf<_>>(&mut instance, |s| s)?,
            Capability::Budgets => budgets::add_to_linker_instance::<_, HasSelf<_>>(&mut instance, |s| s)?,
            Capability::History => history::add_to_linker_instance::<_, HasSelf<_>>(&mut instance, |s| s)?,
            Capability::Breakers => breakers::add_to_linker_instance::<_, HasSelf<_>>(&mut instance, |s| s)?,
        }
    }
    let mut types = linker.instance(&format!("{CONTRACT_PACKAGE}/types@{version}"))?;
    wit::add_to_linker_instance::<_, HasSelf<_>>(&mut types, |s| s)
}

crate::contract::shared::policy_calls!();

impl history::Host for SandboxState {
    fn tool_calls(&mut self, tool: Option<String>, since_ms: i64) -> wasmtime::Result<Vec<history::PastToolCall>> {
        // 0.2.0's answer, in this version's record of the same shape.
        let calls = <Self as history_0_2::Host>::tool_calls(self, tool, since_ms)?;
        Ok(calls
            .into_iter()
            .map(|c| history::PastToolCall {
                request_id: c.request_id,
                timestamp_ms: c.timestamp_ms,
                tool: c.tool,
                arguments: c.arguments,
            })
            .collect())
    }

    fn count_tool_calls(&mut self, since_ms: i64) -> wasmtime::Result<u32> {
        <Self as history_0_2::Host>::count_tool_calls(self, since_ms)
    }

    fn count_similar(
        &mut self,
        tool: String,
        argument: String,
        text: String,
        min_similarity: f64,
        since_ms: i64,
    ) -> wasmtime::Result<u32> {
        self.host_call(|s| {
            let d = s.decision()?;
            let min_similarity = arbiter_text::check_threshold(min_similarity).map_err(capability_refused)?;
            if text.len() > arbiter_text::MAX_QUESTION_TEXT_BYTES {
                let limit = arbiter_text::MAX_QUESTION_TEXT_BYTES;
                return Err(capability_refused(format!("a {}-byte text to compare; at most {limit}", text.len())));
            }
            let text = TokenSet::of(&text);
            let query = SimilarQuery { tool: &tool, argument: &argument, text: &text, min_similarity, since_ms };
            d.state.count_similar(&d.run, &query).map_err(state_error)
        })
    }

    fn first_mention(
        &mut self,
        tools: Vec<String>,
        arguments: Vec<String>,
        markers: Vec<String>,
        since_ms: i64,
    ) -> wasmtime::Result<Option<history::Mention>> {
        self.host_call(|s| {
            let d = s.decision()?;
            arbiter_text::check_question_lists(&[&tools[..], &arguments[..], &markers[..]])
                .map_err(capability_refused)?;
            let query = MentionQuery { tools: &tools, arguments: &arguments, markers: &markers, since_ms };
            let found = d.state.first_mention(&d.run, &query).map_err(state_error)?;
            Ok(found.map(|m| history::Mention { request_id: m.request_id, marker: m.marker }))
        })
    }
}
