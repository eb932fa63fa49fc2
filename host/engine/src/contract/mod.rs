//! The contract versions this host serves, side by side: a component is
//! prepared, instantiated and called through the bindings of the version it
//! targets, and each decision builds the request of a version at most once.

pub(crate) mod shared;
mod v0_1;
mod v0_2;
mod v0_3;

use std::cell::OnceCell;
use std::collections::HashMap;

use arbiter_component::{Capability, ContractVersion};
use arbiter_types::{Request, ToolDefinition, Verdict};
use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

use crate::sandbox::SandboxState;

/// What the tool registry knows of one tool name of the request's server.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct KnownTool {
    /// The server's current definition (for a call: what it was shown as).
    pub(crate) current: Option<ToolDefinition>,
    pub(crate) first_digest: Option<String>,
    /// Servers currently listing a tool of this name.
    pub(crate) listed_by: Vec<String>,
}

/// Everything a request of any version is built from.
pub(crate) struct Input<'a> {
    pub(crate) request: &'a Request,
    pub(crate) now_ms: i64,
    pub(crate) known: &'a HashMap<String, KnownTool>,
}

/// The requests of one decision, built once per version on first use.
pub(crate) struct Requests<'a> {
    input: Input<'a>,
    v0_1: OnceCell<Result<crate::bindings::v0_1::arbiter::policy::types::Request, String>>,
    v0_2: OnceCell<Result<crate::bindings::v0_2::arbiter::policy::types::Request, String>>,
}

impl<'a> Requests<'a> {
    pub(crate) fn new(input: Input<'a>) -> Self {
        Requests { input, v0_1: OnceCell::new(), v0_2: OnceCell::new() }
    }

    pub(crate) fn request(&self) -> &Request {
        self.input.request
    }
}

/// A component prepared against its contract version.
pub(crate) enum Pre {
    V0_1(crate::bindings::v0_1::PolicyPre<SandboxState>),
    V0_2(crate::bindings::v0_2::PolicyPre<SandboxState>),
    V0_3(crate::bindings::v0_3::PolicyPre<SandboxState>),
}

/// A live instance of a component.
pub(crate) enum Instance {
    V0_1(crate::bindings::v0_1::Policy),
    V0_2(crate::bindings::v0_2::Policy),
    V0_3(crate::bindings::v0_3::Policy),
}

/// Links what a component of `version` may import.
pub(crate) fn link(
    version: ContractVersion,
    linker: &mut Linker<SandboxState>,
    capabilities: impl Iterator<Item = Capability>,
) -> wasmtime::Result<()> {
    match version {
        ContractVersion::V0_1 => v0_1::link(linker, capabilities),
        ContractVersion::V0_2 => v0_2::link(linker, capabilities),
        ContractVersion::V0_3 => v0_3::link(linker, capabilities),
    }
}

/// Prepares a component against the bindings of `version`.
pub(crate) fn prepare(version: ContractVersion, pre: InstancePre<SandboxState>) -> wasmtime::Result<Pre> {
    Ok(match version {
        ContractVersion::V0_1 => Pre::V0_1(v0_1::prepare(pre)?),
        ContractVersion::V0_2 => Pre::V0_2(v0_2::prepare(pre)?),
        ContractVersion::V0_3 => Pre::V0_3(v0_3::prepare(pre)?),
    })
}

impl Pre {
    pub(crate) fn instantiate(&self, store: &mut Store<SandboxState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V0_1(pre) => Instance::V0_1(v0_1::instantiate(pre, store)?),
            Pre::V0_2(pre) => Instance::V0_2(v0_2::instantiate(pre, store)?),
            Pre::V0_3(pre) => Instance::V0_3(v0_3::instantiate(pre, store)?),
        })
    }
}

/// How a call into a policy ended, short of a trap.
pub(crate) enum Returned {
    Verdict(Verdict),
    /// The verdict breaks the contract.
    Invalid(String),
    /// The request cannot be expressed in the policy's contract version.
    Unexpressible(String),
}

impl Instance {
    pub(crate) fn init(&self, store: &mut Store<SandboxState>, settings: &str) -> wasmtime::Result<Result<(), String>> {
        match self {
            Instance::V0_1(policy) => v0_1::init(policy, store, settings),
            Instance::V0_2(policy) => v0_2::init(policy, store, settings),
            Instance::V0_3(policy) => v0_3::init(policy, store, settings),
        }
    }

    pub(crate) fn evaluate(
        &self,
        store: &mut Store<SandboxState>,
        requests: &Requests<'_>,
    ) -> wasmtime::Result<Returned> {
        let returned = match self {
            Instance::V0_1(policy) => match requests.v0_1.get_or_init(|| v0_1::request(&requests.input)) {
                Ok(request) => v0_1::evaluate(policy, store, request)?,
                Err(why) => return Ok(Returned::Unexpressible(why.clone())),
            },
            Instance::V0_2(policy) => match requests.v0_2.get_or_init(|| v0_2::request(&requests.input)) {
                Ok(request) => v0_2::evaluate(policy, store, request)?,
                Err(why) => return Ok(Returned::Unexpressible(why.clone())),
            },
            // 0.3.0 hands the request 0.2.0 does: the same one, built once.
            Instance::V0_3(policy) => match requests.v0_2.get_or_init(|| v0_2::request(&requests.input)) {
                Ok(request) => v0_3::evaluate(policy, store, request)?,
                Err(why) => return Ok(Returned::Unexpressible(why.clone())),
            },
        };
        Ok(match returned {
            Ok(verdict) => Returned::Verdict(verdict),
            Err(why) => Returned::Invalid(why),
        })
    }
}
