//! What is structurally wrong with a bundle manifest that parsed: each
//! problem typed and naming its field, its message quoting the value
//! bounded and escaped (it goes to remote callers and terminals).

use std::fmt;

use arbiter_component::CONTRACT_VERSIONS;

/// A value of the file as a problem quotes it.
fn shown(value: &str) -> String {
    arbiter_types::excerpt(value, 64)
}

/// Which `[[policies]]` entry a problem is in: its index and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyAt {
    /// 0-based index among the manifest's `[[policies]]`.
    pub index: usize,
    /// Its `name`, as written.
    pub name: String,
}

impl fmt::Display for PolicyAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policies[{}] (`{}`)", self.index, shown(&self.name))
    }
}

/// One structural problem of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestProblem {
    /// The file is not UTF-8.
    #[error("not UTF-8 text")]
    NotUtf8,
    /// `bundle.name` is not a name.
    #[error("bundle.name `{}` must be lowercase letters, digits, `-` or `_`", shown(.name))]
    BundleName {
        /// The value.
        name: String,
    },
    /// `bundle.contract` is not a served version.
    #[error("bundle.contract `{}`: this host serves arbiter:policy@{}", shown(.contract), CONTRACT_VERSIONS.join(", @"))]
    UnservedContract {
        /// The value.
        contract: String,
    },
    /// `bundle.environments` is empty: it would serve nothing.
    #[error("bundle.environments must name at least one environment")]
    NoEnvironments,
    /// `bundle.version` is not semver.
    #[error("bundle.version `{}` is not a semantic version (MAJOR.MINOR.PATCH)", shown(.version))]
    BundleVersion {
        /// The value.
        version: String,
    },
    /// No `[[policies]]`.
    #[error("the bundle has no [[policies]]")]
    NoPolicies,
    /// A policy's `name` is not a name.
    #[error("{at}.name must be lowercase letters, digits, `-` or `_`")]
    PolicyName {
        /// The entry.
        at: PolicyAt,
    },
    /// Two policies share a `name`.
    #[error("{at}.name is used by an earlier policy")]
    DuplicateName {
        /// The later entry.
        at: PolicyAt,
    },
    /// A policy's `version` is not semver.
    #[error("{at}.version `{}` is not a semantic version", shown(.version))]
    PolicyVersion {
        /// The entry.
        at: PolicyAt,
        /// The value.
        version: String,
    },
    /// A policy's `sha256` is not 64 hex digits.
    #[error("{at}.sha256 must be 64 hex digits")]
    Sha256 {
        /// The entry.
        at: PolicyAt,
    },
    /// A policy's deadline or memory limit is zero.
    #[error("{at}.limits must be positive")]
    Limits {
        /// The entry.
        at: PolicyAt,
    },
}

/// The problems of a manifest, at least one; displayed `; `-joined.
pub(crate) fn joined(problems: &[ManifestProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}
