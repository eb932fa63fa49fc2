//! arbiter's policy engine: loads sandboxed Wasm policy components, prepares
//! them once, evaluates requests against a bundle and combines the verdicts.
//!
//! It does no I/O beyond reading components and its compilation cache.

mod bindings;
mod bundle;
mod cache;
mod capability;
mod combine;
mod component_info;
mod config;
mod contract;
mod decider;
mod declared;
mod engine;
pub mod lint;
mod lone;
mod manifest;
mod obligations;
mod policy;
pub mod readiness;
mod replay;
mod sandbox;
mod scope;
pub mod signature;

/// The review description format policies embed.
pub use arbiter_review as review;
pub use bundle::{Bundle, BundleError, PolicyProblem};
pub use capability::{Capability, ImportKind, classify_import};
pub use combine::{POLICY_FAULT, STATE_UNAVAILABLE};
pub use component_info::{ComponentInfo, InspectError, METADATA_SECTION, PolicyMetadata, REVIEW_SECTION, digest_of};
pub use config::{EngineConfig, SandboxLimits};
pub use decider::{Decider, HALTED, ReportError};
pub use declared::{Declared, declarations};
pub use engine::{EngineError, PolicyEngine};
pub use lone::{LoneError, lone_policy_bundle};
pub use manifest::{BundleHeader, FailMode, LimitOverrides, Manifest, ManifestError, ManifestPolicy, Mode, Scope};
pub use policy::{LoadError, PreparedPolicy};
pub use replay::{ReplayError, ReplayedEvent, replay};

/// The current contract version (the `arbiter:policy` WIT package in
/// `wit/`); the host serves every version in [`CONTRACT_VERSIONS`].
pub const CONTRACT_VERSION: &str = CONTRACT_VERSIONS[CONTRACT_VERSIONS.len() - 1];
pub use contract::{CONTRACT_VERSIONS, action_kinds};
/// The WIT package name of the contract.
pub const CONTRACT_PACKAGE: &str = "arbiter:policy";
