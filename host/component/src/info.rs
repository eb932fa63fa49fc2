//! Static facts about a policy component, read without instantiating it:
//! what it imports and exports, the contract version it targets, the name
//! and version its SDK embedded, and its review description.

use arbiter_review::Review;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use wasmparser::{Encoding, Parser, Payload};

use crate::contract::CONTRACT_PACKAGE;

/// Custom section in which `arbiter-sdk` embeds the policy's identity.
pub const METADATA_SECTION: &str = "arbiter-policy";
/// Custom section in which `arbiter-sdk` embeds the policy's review
/// description.
pub const REVIEW_SECTION: &str = arbiter_review::SECTION;

/// The identity a policy carries inside its component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyMetadata {
    /// The policy's name (its crate's package name).
    pub name: String,
    /// The policy's semantic version (its crate's version).
    pub version: String,
    /// Version of `arbiter-sdk` the policy was built with.
    #[serde(default)]
    pub sdk: String,
}

/// What a component says about itself, as `arbiter inspect` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentInfo {
    /// `sha256:` followed by the hex digest of the component's bytes.
    pub digest: String,
    /// Length of the component in bytes.
    pub size_bytes: usize,
    /// Full names of the outermost component's imports.
    pub imports: Vec<String>,
    /// Full names of the outermost component's exports.
    pub exports: Vec<String>,
    /// Version of `arbiter:policy` the evaluator export targets, if any.
    pub contract_version: Option<String>,
    /// The identity its SDK embedded (`arbiter-policy` section), if any.
    pub metadata: Option<PolicyMetadata>,
    /// What its settings mean and what it guards (`export_policy!(…,
    /// review = "review.toml")`); `None` when it declares nothing.
    pub review: Option<Review>,
}

/// Why bytes cannot be read as a policy component.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// Not WebAssembly at all (wasmparser's message).
    #[error("not a WebAssembly binary: {0}")]
    NotWasm(String),
    /// A core module: `arbiter build` wraps it into a component.
    #[error(
        "a core WebAssembly module, not a component: build policies with `arbiter build`, which wraps the module into a component"
    )]
    CoreModule,
    /// The identity section is not the SDK's JSON.
    #[error("the `{METADATA_SECTION}` section is not valid JSON with `name` and `version`: {0}")]
    BadMetadata(String),
    /// The review section does not parse as a review description.
    #[error("the `{REVIEW_SECTION}` section is not a valid review description: {0}")]
    BadReview(String),
    /// A section that says what the policy is appears twice: which one
    /// counts would depend on the reader, so none does.
    #[error("the component embeds more than one `{0}` section")]
    DuplicateSection(&'static str),
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl ComponentInfo {
    /// Reads a component's facts; refuses what is not a component.
    pub fn read(bytes: &[u8]) -> Result<Self, InspectError> {
        let mut imports = Vec::new();
        let mut exports = Vec::new();
        let mut metadata = None;
        let mut review = None;
        // Depth of nested modules and components; imports and exports are
        // only those of the outermost component.
        let mut depth = 0usize;
        for payload in Parser::new(0).parse_all(bytes) {
            let payload = payload.map_err(|e| InspectError::NotWasm(e.message().to_owned()))?;
            match payload {
                Payload::Version { encoding, .. } => {
                    if depth == 0 && encoding == Encoding::Module {
                        return Err(InspectError::CoreModule);
                    }
                    depth += 1;
                }
                Payload::End(_) => depth = depth.saturating_sub(1),
                Payload::ComponentImportSection(section) if depth == 1 => {
                    for import in section {
                        let import = import.map_err(|e| InspectError::NotWasm(e.message().to_owned()))?;
                        imports.push(import.name.full_name().into_owned());
                    }
                }
                Payload::ComponentExportSection(section) if depth == 1 => {
                    for export in section {
                        let export = export.map_err(|e| InspectError::NotWasm(e.message().to_owned()))?;
                        exports.push(export.name.full_name().into_owned());
                    }
                }
                Payload::CustomSection(section) if section.name() == METADATA_SECTION => {
                    if metadata.is_some() {
                        return Err(InspectError::DuplicateSection(METADATA_SECTION));
                    }
                    let parsed: PolicyMetadata =
                        serde_json::from_slice(section.data()).map_err(|e| InspectError::BadMetadata(e.to_string()))?;
                    metadata = Some(parsed);
                }
                Payload::CustomSection(section) if section.name() == REVIEW_SECTION => {
                    if review.is_some() {
                        return Err(InspectError::DuplicateSection(REVIEW_SECTION));
                    }
                    let text = std::str::from_utf8(section.data())
                        .map_err(|_| InspectError::BadReview("not UTF-8 text".to_owned()))?;
                    review = Some(Review::parse(text).map_err(|e| InspectError::BadReview(e.to_string()))?);
                }
                _ => {}
            }
        }
        let contract_version = exports.iter().find_map(|name| {
            name.strip_prefix(CONTRACT_PACKAGE).and_then(|rest| rest.strip_prefix("/evaluator@")).map(str::to_owned)
        });
        Ok(ComponentInfo {
            digest: digest_of(bytes),
            size_bytes: bytes.len(),
            imports,
            exports,
            contract_version,
            metadata,
            review,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_random_bytes() {
        let err = ComponentInfo::read(b"\x13\x37not wasm at all").unwrap_err();
        assert!(matches!(err, InspectError::NotWasm(_)), "{err}");
    }

    #[test]
    fn refuses_core_modules() {
        let module = wat::parse_str("(module)").unwrap();
        assert!(matches!(ComponentInfo::read(&module), Err(InspectError::CoreModule)));
    }

    #[test]
    fn reads_component_imports_and_exports() {
        let component = wat::parse_str(
            r#"(component
                (import "wasi:filesystem/types@0.2.0" (instance))
                (instance $i)
                (export "arbiter:policy/evaluator@0.1.0" (instance $i)))"#,
        )
        .unwrap();
        let info = ComponentInfo::read(&component).unwrap();
        assert_eq!(info.imports, vec!["wasi:filesystem/types@0.2.0"]);
        assert_eq!(info.exports, vec!["arbiter:policy/evaluator@0.1.0"]);
        assert_eq!(info.contract_version.as_deref(), Some("0.1.0"));
        assert!(info.metadata.is_none());
        assert!(info.review.is_none());
    }

    #[test]
    fn refuses_a_second_identity_or_review_even_in_a_nested_module() {
        let identity =
            |name: &str| format!(r#"(@custom "arbiter-policy" "{{\"name\":\"{name}\",\"version\":\"1.0.0\"}}")"#);
        let review = r#"(@custom "arbiter-review" "[settings]")"#;
        let one = format!("(component {})", identity("tool-scope"));
        assert_eq!(ComponentInfo::read(&wat::parse_str(&one).unwrap()).unwrap().metadata.unwrap().name, "tool-scope");
        let cases = [
            (format!("(component {} {})", identity("tool-scope"), identity("allow-all")), "arbiter-policy"),
            (
                format!("(component {} (core module {}))", identity("tool-scope"), identity("allow-all")),
                "arbiter-policy",
            ),
            (format!("(component {review} (core module {review}))"), "arbiter-review"),
        ];
        for (text, section) in cases {
            let err = ComponentInfo::read(&wat::parse_str(&text).unwrap()).unwrap_err();
            assert_eq!(err.to_string(), format!("the component embeds more than one `{section}` section"), "{text}");
        }
    }

    #[test]
    fn reads_the_review_description_and_refuses_a_bad_one() {
        let component =
            |review: &str| wat::parse_str(format!("(component (@custom \"arbiter-review\" \"{review}\"))")).unwrap();
        let info = ComponentInfo::read(&component(
            r#"[guards]\n\"tool storm\" = [\"/max\"]\n[settings]\n\"/max\" = \"lower-is-stricter\""#,
        ))
        .unwrap();
        let review = info.review.unwrap();
        assert_eq!(review.guards.keys().map(|g| g.name()).collect::<Vec<_>>(), ["tool storm"]);
        let err = ComponentInfo::read(&component(r#"[settings]\n\"/max\" = \"lowest\""#)).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "the `arbiter-review` section is not a valid review description: `/max`: unknown variant `lowest`"
            ),
            "{err}"
        );
    }
}
