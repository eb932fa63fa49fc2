//! A bundle of one component, as a case file's `policy` describes it
//! (`arbiter test` on a `.wasm`, the per-policy component tests).

use std::path::{Path, PathBuf};

use arbiter_types::cases::LonePolicy;

use crate::{Bundle, BundleError, Capability, FailMode, Manifest, PolicyEngine};

/// Why a lone component could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoneError {
    /// The component file could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A capability the case file grants is not one of the contract's.
    #[error("policy.capabilities: `{0}` is not a capability (log, clock, budgets, history, breakers)")]
    UnknownCapability(String),
    /// The settings cannot be written as a bundle's TOML table.
    #[error("policy.settings: {0}")]
    Settings(String),
    /// The bundle refused the component or its settings.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// Loads `component` alone, enforced and failing closed, with the
/// settings, capabilities and action kinds `lone` gives it.
pub fn lone_policy_bundle(engine: &PolicyEngine, component: &Path, lone: &LonePolicy) -> Result<Bundle, LoneError> {
    let bytes = std::fs::read(component).map_err(|source| LoneError::Read { path: component.to_owned(), source })?;
    let capabilities = lone
        .capabilities
        .iter()
        .map(|name| name.parse::<Capability>().map_err(|_| LoneError::UnknownCapability(name.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let settings: toml::Table = serde_json::from_value(serde_json::Value::Object(lone.settings.clone()))
        .map_err(|e| LoneError::Settings(e.to_string()))?;
    let mut manifest = Manifest::for_component(component, &bytes, settings, capabilities, FailMode::Closed);
    for policy in &mut manifest.policies {
        policy.scope.actions.clone_from(&lone.actions);
    }
    Ok(Bundle::from_manifest(engine, manifest, Path::new("."), component)?)
}
