//! What a policy component is, read without compiling or running it: what
//! it imports and exports, the contract version it targets, the identity
//! and review description its SDK embedded — and the one check that
//! decides whether arbiter accepts it ([`check`]).
//!
//! `arbiter build`, `arbiter inspect` and the engine's loader all use this
//! crate, which needs no wasmtime.

#![deny(missing_docs)]

mod capability;
mod check;
mod contract;
mod info;

pub use capability::{Capability, ImportKind, UnknownCapability, classify_import};
pub use check::{ComponentError, ComponentProblems, Expected, Grants, Identity, IdentitySource, check};
pub use contract::{CONTRACT_PACKAGE, CONTRACT_VERSION, CONTRACT_VERSIONS, ContractVersion, action_kinds};
pub use info::{ComponentInfo, InspectError, METADATA_SECTION, PolicyMetadata, REVIEW_SECTION, digest_of};
