//! The one check of whether arbiter accepts a component as a policy: it
//! exports the evaluator of a served contract version, imports that
//! version's interfaces only (no WASI, nothing else), only capabilities it
//! may have, and embeds the identity it is expected to.
//!
//! `arbiter build` checks against the crate it built, the loader against
//! the bundle's manifest; both ask this function, so what one accepts the
//! other does not refuse for a reason of its own.

use std::fmt;

use crate::capability::{Capability, ImportKind, classify_import};
use crate::contract::{CONTRACT_VERSIONS, ContractVersion};
use crate::info::ComponentInfo;

/// Which capabilities a component may import.
#[derive(Debug, Clone, Copy)]
pub enum Grants<'a> {
    /// Any (`arbiter build`: the bundle grants them later).
    Any,
    /// Only these (a bundle's `capabilities` for the policy).
    Only(&'a [Capability]),
}

/// Who states the identity a component is expected to embed; named in
/// the mismatch so the reader knows which side to fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentitySource {
    /// The bundle's manifest entry.
    Manifest,
    /// The policy crate's `Cargo.toml`.
    Crate,
}

impl fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdentitySource::Manifest => "manifest",
            IdentitySource::Crate => "crate",
        })
    }
}

/// What a component is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The capabilities it may import.
    pub grants: Grants<'a>,
    /// What it must say it is.
    pub identity: Identity<'a>,
}

/// The identity a component is expected to embed.
#[derive(Debug, Clone, Copy)]
pub enum Identity<'a> {
    /// Not checked (a component loaded on its own, outside any bundle).
    Unchecked,
    /// Any name and version, but one must be embedded.
    Embedded,
    /// This name and version, as `stated_by` states them.
    Is {
        /// The expected name.
        name: &'a str,
        /// The expected version.
        version: &'a str,
        /// Who states them.
        stated_by: IdentitySource,
    },
}

/// One reason a component is not an acceptable policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ComponentError {
    /// It exports no evaluator at all.
    #[error("exports no `arbiter:policy/evaluator` interface: not an arbiter policy (exports: {})", list(.exports))]
    NotAPolicy {
        /// What it exports instead.
        exports: Vec<String>,
    },
    /// Its evaluator (or an import) is of a contract version not served.
    #[error("targets contract arbiter:policy@{found}; this host serves arbiter:policy@{}", CONTRACT_VERSIONS.join(", @"))]
    UnsupportedContract {
        /// The version it names.
        found: String,
    },
    /// It imports an interface of a served version other than its
    /// evaluator's: one component speaks one version.
    #[error("imports `{import}` of contract {found}, but its evaluator is of contract {target}")]
    MixedContracts {
        /// The import's full name.
        import: String,
        /// The version the import names.
        found: ContractVersion,
        /// The version of the evaluator.
        target: ContractVersion,
    },
    /// It imports something arbiter never provides.
    #[error("imports `{import}`, which arbiter never provides to policies (no WASI, no ambient authority)")]
    ForbiddenImport {
        /// The import's full name.
        import: String,
    },
    /// It imports a capability its bundle does not grant.
    #[error(
        "imports capability `{capability}` ({import}), which the bundle does not grant it; add \"{capability}\" to its `capabilities`"
    )]
    CapabilityNotGranted {
        /// The capability.
        capability: Capability,
        /// The import's full name.
        import: String,
    },
    /// It embeds no `arbiter-policy` section.
    #[error(
        "the component embeds no name and version (export it with arbiter_sdk::export_policy! and build it with `arbiter build`)"
    )]
    NoIdentity,
    /// It embeds another name than expected.
    #[error("the {stated_by} names it `{expected}`, the component says `{found}`")]
    NameMismatch {
        /// Who expects `expected`.
        stated_by: IdentitySource,
        /// The expected name.
        expected: String,
        /// The name the component embeds.
        found: String,
    },
    /// It embeds another version than expected.
    #[error("the {stated_by} says version {expected}, the component says {found}")]
    VersionMismatch {
        /// Who expects `expected`.
        stated_by: IdentitySource,
        /// The expected version.
        expected: String,
        /// The version the component embeds.
        found: String,
    },
}

impl ComponentError {
    /// Whether it says the component is not the policy expected (no
    /// identity, another name or version), rather than not acceptable.
    pub fn is_identity(&self) -> bool {
        matches!(
            self,
            ComponentError::NoIdentity | ComponentError::NameMismatch { .. } | ComponentError::VersionMismatch { .. }
        )
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() { "none".to_owned() } else { items.join(", ") }
}

/// Every reason a component was refused (at least one), in the order
/// found: the contract first, then each import, then the identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ComponentProblems(pub Vec<ComponentError>);

impl ComponentProblems {
    /// The problems, one by one.
    pub fn iter(&self) -> impl Iterator<Item = &ComponentError> {
        self.0.iter()
    }
}

/// Checks that `info` is a policy arbiter accepts under `expected`, and
/// returns the contract version it targets. Every problem is listed, not
/// only the first.
pub fn check(info: &ComponentInfo, expected: &Expected<'_>) -> Result<ContractVersion, ComponentProblems> {
    let mut problems = Vec::new();
    let target = match info.contract_version.as_deref() {
        None => Err(ComponentError::NotAPolicy { exports: info.exports.clone() }),
        Some(found) => {
            ContractVersion::of(found).ok_or_else(|| ComponentError::UnsupportedContract { found: found.to_owned() })
        }
    };
    let target = target.map_err(|e| problems.push(e)).ok();
    for import in &info.imports {
        if let Err(problem) = check_import(import, target, expected.grants) {
            problems.push(problem);
        }
    }
    match (&info.metadata, expected.identity) {
        (_, Identity::Unchecked) | (Some(_), Identity::Embedded) => {}
        (None, _) => problems.push(ComponentError::NoIdentity),
        (Some(meta), Identity::Is { name, version, stated_by }) => {
            if meta.name != name {
                let (expected, found) = (name.to_owned(), meta.name.clone());
                problems.push(ComponentError::NameMismatch { stated_by, expected, found });
            }
            if meta.version != version {
                let (expected, found) = (version.to_owned(), meta.version.clone());
                problems.push(ComponentError::VersionMismatch { stated_by, expected, found });
            }
        }
    }
    match target {
        Some(target) if problems.is_empty() => Ok(target),
        _ => Err(ComponentProblems(problems)),
    }
}

/// One import against the evaluator's version (`None` when that is
/// already refused) and the grants.
fn check_import(import: &str, target: Option<ContractVersion>, grants: Grants<'_>) -> Result<(), ComponentError> {
    let (version, capability) = match classify_import(import) {
        ImportKind::Foreign => return Err(ComponentError::ForbiddenImport { import: import.to_owned() }),
        ImportKind::OtherContractVersion(found) => return Err(ComponentError::UnsupportedContract { found }),
        ImportKind::ContractTypes { version } => (version, None),
        ImportKind::Capability { capability, version } => (version, Some(capability)),
    };
    // classify_import names only served versions here.
    let found = ContractVersion::of(&version).ok_or(ComponentError::UnsupportedContract { found: version })?;
    if let Some(target) = target
        && found != target
    {
        return Err(ComponentError::MixedContracts { import: import.to_owned(), found, target });
    }
    match (capability, grants) {
        (Some(capability), Grants::Only(granted)) if !granted.contains(&capability) => {
            Err(ComponentError::CapabilityNotGranted { capability, import: import.to_owned() })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::PolicyMetadata;

    fn info(evaluator: Option<&str>, imports: &[&str], identity: Option<(&str, &str)>) -> ComponentInfo {
        ComponentInfo {
            digest: "sha256:00".to_owned(),
            size_bytes: 0,
            imports: imports.iter().map(|s| (*s).to_owned()).collect(),
            exports: evaluator.map(|v| format!("arbiter:policy/evaluator@{v}")).into_iter().collect(),
            contract_version: evaluator.map(str::to_owned),
            metadata: identity.map(|(name, version)| PolicyMetadata {
                name: name.to_owned(),
                version: version.to_owned(),
                sdk: String::new(),
            }),
            review: None,
        }
    }

    const ANY: Expected<'static> = Expected { grants: Grants::Any, identity: Identity::Embedded };

    fn problems(info: &ComponentInfo, expected: &Expected<'_>) -> Vec<ComponentError> {
        check(info, expected).unwrap_err().0
    }

    #[test]
    fn accepts_a_policy_of_a_served_version_with_its_own_imports() {
        let imports = ["arbiter:policy/types@0.2.0", "arbiter:policy/budgets@0.2.0"];
        let policy = info(Some("0.2.0"), &imports, Some(("p", "1.0.0")));
        assert_eq!(check(&policy, &ANY), Ok(ContractVersion::V0_2));
        let granted = Expected {
            grants: Grants::Only(&[Capability::Budgets]),
            identity: Identity::Is { name: "p", version: "1.0.0", stated_by: IdentitySource::Manifest },
        };
        assert_eq!(check(&policy, &granted), Ok(ContractVersion::V0_2));
    }

    #[test]
    fn refuses_what_is_no_policy_of_a_served_version() {
        let identity = Some(("p", "1.0.0"));
        assert_eq!(problems(&info(None, &[], identity), &ANY), [ComponentError::NotAPolicy { exports: vec![] }]);
        assert_eq!(
            problems(&info(Some("9.0.0"), &[], identity), &ANY),
            [ComponentError::UnsupportedContract { found: "9.0.0".into() }]
        );
    }

    #[test]
    fn refuses_foreign_mixed_and_unserved_imports_each_by_name() {
        let imports = ["wasi:filesystem/types@0.2.0", "arbiter:policy/log@0.1.0", "arbiter:policy/clock@9.0.0"];
        let got = problems(&info(Some("0.2.0"), &imports, Some(("p", "1.0.0"))), &ANY);
        assert_eq!(
            got,
            [
                ComponentError::ForbiddenImport { import: imports[0].into() },
                ComponentError::MixedContracts {
                    import: imports[1].into(),
                    found: ContractVersion::V0_1,
                    target: ContractVersion::V0_2
                },
                ComponentError::UnsupportedContract { found: "9.0.0".into() },
            ]
        );
    }

    #[test]
    fn a_capability_needs_a_grant_only_when_grants_are_given() {
        let policy = info(Some("0.2.0"), &["arbiter:policy/history@0.2.0"], Some(("p", "1.0.0")));
        assert!(check(&policy, &ANY).is_ok());
        let none = Expected { grants: Grants::Only(&[Capability::Log]), identity: Identity::Unchecked };
        assert_eq!(
            problems(&policy, &none),
            [ComponentError::CapabilityNotGranted {
                capability: Capability::History,
                import: "arbiter:policy/history@0.2.0".into()
            }]
        );
    }

    #[test]
    fn identity_is_required_and_compared_field_by_field() {
        assert_eq!(problems(&info(Some("0.2.0"), &[], None), &ANY), [ComponentError::NoIdentity]);
        let unchecked = Expected { grants: Grants::Any, identity: Identity::Unchecked };
        assert!(check(&info(Some("0.2.0"), &[], None), &unchecked).is_ok());
        let identity = Identity::Is { name: "tool-scope", version: "0.3.0", stated_by: IdentitySource::Crate };
        let expected = Expected { grants: Grants::Any, identity };
        let got = check(&info(Some("0.2.0"), &[], Some(("tool-storm", "0.2.0"))), &expected).unwrap_err();
        assert_eq!(
            got.to_string(),
            "the crate names it `tool-scope`, the component says `tool-storm`; \
             the crate says version 0.3.0, the component says 0.2.0"
        );
    }
}
