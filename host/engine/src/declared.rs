//! What a bundle's policies declare about themselves: the review
//! description each component embeds, read without instantiating it, and
//! believed only from the component the manifest pins.

use std::collections::BTreeMap;
use std::path::Path;

use arbiter_review::Review;

use crate::manifest::{Manifest, ManifestPolicy};
use arbiter_component::ComponentInfo;

/// A policy's declarations, or why none could be read.
pub type Declared = Result<Option<Review>, String>;

/// Each policy's declarations, by name; component paths are relative to
/// `base` (the manifest's directory).
pub fn declarations(manifest: &Manifest, base: &Path) -> BTreeMap<String, Declared> {
    manifest.policies.iter().map(|policy| (policy.name.clone(), declared(policy, base))).collect()
}

fn declared(policy: &ManifestPolicy, base: &Path) -> Declared {
    let path = base.join(&policy.component);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read component {}: {e}", path.display()))?;
    let info = ComponentInfo::read(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    // A component other than the pinned one says nothing about this bundle.
    if info.digest != format!("sha256:{}", policy.sha256.to_ascii_lowercase()) {
        return Err(format!("{} is not the component the manifest pins", path.display()));
    }
    match &info.metadata {
        Some(meta) if meta.name == policy.name => Ok(info.review),
        Some(meta) => Err(format!("{} is `{}`, not `{}`", path.display(), meta.name, policy.name)),
        None => Err(format!("{} embeds no name", path.display())),
    }
}
