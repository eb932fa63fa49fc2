//! arbiter's policy engine: loads sandboxed Wasm policy components, prepares
//! them once, evaluates requests against a bundle and combines the verdicts.
//!
//! It does no I/O beyond reading components and its compilation cache.

#![deny(missing_docs)]

mod bindings;
mod bundle;
mod cache;
mod combine;
mod component_file;
mod config;
mod contract;
mod decider;
mod declared;
mod engine;
mod forecast;
pub mod lint;
mod load_problem;
mod lone;
mod manifest;
mod manifest_problem;
mod obligations;
mod policy;
pub mod readiness;
mod replay;
mod sandbox;
mod scope;
pub mod signature;

/// Component inspection and the one check of what a policy may be, from
/// `arbiter-component` (re-exported, so the engine's API stays whole).
pub use arbiter_component::{
    CONTRACT_PACKAGE, CONTRACT_VERSION, CONTRACT_VERSIONS, Capability, ComponentError, ComponentInfo,
    ComponentProblems, ContractVersion, Expected, Grants, Identity, IdentitySource, ImportKind, InspectError,
    METADATA_SECTION, PolicyMetadata, REVIEW_SECTION, UnknownCapability, action_kinds, check, classify_import,
    digest_of,
};
/// The review description format policies embed.
pub use arbiter_review as review;
pub use bundle::{Bundle, BundleError};
pub use combine::{POLICY_FAULT, STATE_UNAVAILABLE};
pub use component_file::ComponentFileError;
pub use config::{EngineConfig, SandboxLimits};
pub use decider::{Decider, HALTED, ReportError};
pub use declared::{Declared, DeclaredError, declarations};
pub use engine::{EngineError, PolicyEngine};
pub use load_problem::{LoadProblem, PolicyProblem};
pub use lone::{LoneError, lone_policy_bundle};
pub use manifest::{BundleHeader, FailMode, LimitOverrides, Manifest, ManifestError, ManifestPolicy, Mode, Scope};
pub use manifest_problem::{ManifestProblem, PolicyAt};
pub use policy::{LoadError, PreparedPolicy};
pub use replay::{ReplayError, ReplayedEvent, replay};
