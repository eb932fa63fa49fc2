//! Why a bundle's policy cannot be loaded: each problem typed, naming the
//! policy and the field or fact at fault, so a caller can tell them apart
//! and the message still reads as a sentence.

use arbiter_component::{ComponentError, ContractVersion};
use arbiter_types::ActionKind;

use crate::component_file::ComponentFileError;
use crate::policy::LoadError;

/// One problem with one policy of a bundle.
#[derive(Debug, thiserror::Error)]
#[error("policy `{policy}`: {problem}")]
pub struct PolicyProblem {
    /// The policy's name in the manifest.
    pub policy: String,
    /// What is wrong with it.
    pub problem: LoadProblem,
}

/// What is wrong with a policy of a bundle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadProblem {
    /// Its component file cannot be read, is not a component, or is not
    /// the one the manifest pins.
    #[error(transparent)]
    File(ComponentFileError),
    /// The component is not a policy arbiter accepts, or not the one the
    /// manifest names ([`arbiter_component::check`]).
    #[error(transparent)]
    Component(ComponentError),
    /// `scope.actions` names a kind its contract version cannot express.
    #[error("scope.actions names {}, which contract {contract} cannot hand it", .kind.as_str())]
    ActionNotExpressible {
        /// The action kind.
        kind: ActionKind,
        /// The policy's contract version.
        contract: ContractVersion,
    },
    /// It targets a newer contract than the bundle's `contract` says.
    #[error("targets contract {contract}, newer than the bundle's contract {bundle}")]
    NewerThanBundle {
        /// The policy's contract version.
        contract: ContractVersion,
        /// The bundle's `contract`.
        bundle: String,
    },
    /// `limits.fuel` on an engine that meters no fuel: it would not hold.
    #[error("limits.fuel is set but the engine runs without fuel metering")]
    FuelWithoutMetering,
    /// `settings` has a value JSON cannot carry.
    #[error("settings cannot be encoded as JSON: {0}")]
    SettingsNotJson(String),
    /// Compiling, instantiating or initialising it failed.
    #[error(transparent)]
    Load(LoadError),
}
