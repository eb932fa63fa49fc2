//! What a bundle's policies declare about themselves: the review
//! description each component embeds, read without instantiating it, and
//! believed only from the component the manifest pins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use arbiter_component::{ComponentError, ComponentProblems, Expected, Grants, Identity, IdentitySource};
use arbiter_review::Review;

use crate::component_file::{ComponentFile, ComponentFileError};
use crate::manifest::{Manifest, ManifestPolicy};

/// A policy's declarations, or why none could be read.
pub type Declared = Result<Option<Review>, DeclaredError>;

/// Why a policy's declarations are not believed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeclaredError {
    /// Its component file cannot be read, is not a component, or is not
    /// the one the manifest pins: a component other than the pinned one
    /// says nothing about this bundle.
    #[error(transparent)]
    File(#[from] ComponentFileError),
    /// It is not the policy the manifest names ([`arbiter_component::check`]).
    #[error("{path}: {problems}")]
    NotThisPolicy {
        /// The file.
        path: PathBuf,
        /// How its identity differs.
        problems: ComponentProblems,
    },
}

/// Each policy's declarations, by name; component paths are relative to
/// `base` (the manifest's directory).
pub fn declarations(manifest: &Manifest, base: &Path) -> BTreeMap<String, Declared> {
    manifest.policies.iter().map(|policy| (policy.name.clone(), declared(policy, base))).collect()
}

fn declared(policy: &ManifestPolicy, base: &Path) -> Declared {
    let file = ComponentFile::read(policy, base)?;
    file.check_pinned(policy)?;
    let (path, info) = (file.path, file.info);
    // Its identity, judged as the loader judges it; what it imports is the
    // loader's concern, not whether its declarations are its own.
    let identity = Identity::Is { name: &policy.name, version: &policy.version, stated_by: IdentitySource::Manifest };
    let refused = arbiter_component::check(&info, &Expected { grants: Grants::Any, identity }).err();
    let problems: Vec<_> = refused.into_iter().flat_map(|p| p.0).filter(ComponentError::is_identity).collect();
    if problems.is_empty() {
        Ok(info.review)
    } else {
        Err(DeclaredError::NotThisPolicy { path, problems: ComponentProblems(problems) })
    }
}
