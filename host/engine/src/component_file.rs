//! A policy's component file as its manifest entry names it: read,
//! inspected, and compared with the digest the entry pins — the first
//! steps of loading a bundle and of believing what a policy declares.

use std::path::{Path, PathBuf};

use arbiter_component::{ComponentInfo, InspectError};

use crate::manifest::ManifestPolicy;

/// Why a manifest entry's component file is not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComponentFileError {
    /// The file cannot be read.
    #[error("cannot read component {path}: {source}")]
    Unreadable {
        /// Where the manifest says it is.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The file is not a component.
    #[error("{path}: {error}")]
    NotAComponent {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        error: InspectError,
    },
    /// The file is not the component the manifest pins.
    #[error("digest mismatch: the manifest pins {pinned}, {path} is {found}")]
    DigestMismatch {
        /// `sha256:<hex>` the manifest pins.
        pinned: String,
        /// The file.
        path: PathBuf,
        /// `sha256:<hex>` of the file.
        found: String,
    },
}

/// A component file, read and inspected.
pub(crate) struct ComponentFile {
    pub(crate) path: PathBuf,
    pub(crate) bytes: Vec<u8>,
    pub(crate) info: ComponentInfo,
}

impl ComponentFile {
    /// Reads `entry`'s component (relative to `base`, the manifest's
    /// directory).
    pub(crate) fn read(entry: &ManifestPolicy, base: &Path) -> Result<Self, ComponentFileError> {
        let path = base.join(&entry.component);
        let bytes =
            std::fs::read(&path).map_err(|source| ComponentFileError::Unreadable { path: path.clone(), source })?;
        let info = ComponentInfo::read(&bytes)
            .map_err(|error| ComponentFileError::NotAComponent { path: path.clone(), error })?;
        Ok(ComponentFile { path, bytes, info })
    }

    /// Whether it is the component `entry` pins by digest.
    pub(crate) fn check_pinned(&self, entry: &ManifestPolicy) -> Result<(), ComponentFileError> {
        let pinned = format!("sha256:{}", entry.sha256.to_ascii_lowercase());
        if self.info.digest == pinned {
            return Ok(());
        }
        Err(ComponentFileError::DigestMismatch { pinned, path: self.path.clone(), found: self.info.digest.clone() })
    }
}
