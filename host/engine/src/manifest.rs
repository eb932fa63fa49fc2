//! The bundle manifest (TOML): which policies make up a bundle, where their
//! components are, what they may touch, and how their verdicts count.

use std::path::{Path, PathBuf};
use std::time::Duration;

use arbiter_component::Capability;
use arbiter_types::{ActionKind, Environment};
use serde::{Deserialize, Serialize};

use crate::config::SandboxLimits;
use crate::manifest_problem::{ManifestProblem, PolicyAt, joined};

/// A bundle manifest (`bundle.toml`): the bundle's header and its
/// policies, in the order they are evaluated.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The `[bundle]` table.
    pub bundle: BundleHeader,
    /// The `[[policies]]`.
    #[serde(rename = "policies", default)]
    pub policies: Vec<ManifestPolicy>,
}

/// The `[bundle]` table: what the bundle is and where it serves.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleHeader {
    /// The bundle's name (lowercase letters, digits, `-`, `_`).
    pub name: String,
    /// Semantic version of the bundle.
    pub version: String,
    /// The newest `arbiter:policy` contract version the bundle's policies
    /// may target; a host that does not serve it refuses the bundle, and a
    /// component of a newer version is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<String>,
    /// The environments the bundle serves; requests from others are denied
    /// (`wrong_environment`). All when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<Environment>>,
}

/// Whether a policy's verdict counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The verdict takes part in the combined decision.
    #[default]
    Enforce,
    /// Evaluated and recorded, never enforced (shadow rollout).
    Monitor,
}

/// What a fault of the policy means for the decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    /// A fault denies the request with code `policy_fault`.
    #[default]
    Closed,
    /// A fault is recorded and the policy counts as allowing.
    Open,
}

/// Which requests a policy applies to. An absent list matches everything;
/// tool patterns are globs (`*`, `?`, `[...]`) matched against the whole
/// tool name, case-sensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Environments it applies in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environments: Option<Vec<Environment>>,
    /// Pipelines it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipelines: Option<Vec<String>>,
    /// Agents it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<Vec<String>>,
    /// Action kinds it judges; absent means tool calls and LLM requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<ActionKind>>,
    /// Tool name globs it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
}

/// Per-policy overrides of the engine's sandbox limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Fuel per evaluation (only on an engine that meters fuel).
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Wall-clock deadline per evaluation.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Memory cap of an instance.
    #[serde(default)]
    pub memory_mib: Option<u32>,
}

impl LimitOverrides {
    /// The engine's `defaults` with these overrides applied.
    pub fn apply(&self, defaults: SandboxLimits) -> SandboxLimits {
        SandboxLimits {
            fuel: self.fuel.or(defaults.fuel),
            deadline: self.deadline_ms.map(Duration::from_millis).unwrap_or(defaults.deadline),
            memory_bytes: self.memory_mib.map(|m| (m as usize) << 20).unwrap_or(defaults.memory_bytes),
        }
    }
}

/// One `[[policies]]` entry: which component, what it may touch, how its verdict counts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestPolicy {
    /// Must equal the name embedded in the component.
    pub name: String,
    /// Must equal the version embedded in the component.
    pub version: String,
    /// Path of the component, relative to the manifest.
    pub component: PathBuf,
    /// Hex sha256 of the component file.
    pub sha256: String,
    /// `enforce` (the default) or `monitor` (recorded, never counted).
    #[serde(default)]
    pub mode: Mode,
    /// `closed` (the default: a fault denies) or `open` (a fault is ignored).
    #[serde(default)]
    pub fail: FailMode,
    /// The capabilities it may import.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Which requests it judges.
    #[serde(default)]
    pub scope: Scope,
    /// Overrides of the engine's sandbox limits.
    #[serde(default)]
    pub limits: LimitOverrides,
    /// Passed to the policy's `init` as JSON.
    #[serde(default = "empty_table")]
    pub settings: toml::Table,
}

fn empty_table() -> toml::Table {
    toml::Table::new()
}

/// Why a manifest cannot be read or is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file cannot be read.
    #[error("cannot read bundle manifest {path}: {source}")]
    Read {
        /// The manifest.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, or TOML not shaped like a manifest. `detail` quotes the
    /// offending lines, for the operator's own terminal; `problem` and `at`
    /// carry no text of the file.
    #[error("bundle manifest {path} is invalid: {detail}")]
    Parse {
        /// The manifest.
        path: PathBuf,
        /// The parser's message, quoting the file.
        detail: String,
        /// What kind of problem, quoting nothing.
        problem: String,
        /// Line and column (1-based), when known.
        at: Option<(usize, usize)>,
    },
    /// TOML shaped like a manifest, with values that are not allowed.
    #[error("bundle manifest {path} is invalid: {}", joined(.problems))]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// Every problem, in the order of the file.
        problems: Vec<ManifestProblem>,
    },
}

impl ManifestError {
    /// The error without any text of the file (what kind of problem, and
    /// where), for a remote caller: one who can name a file but must not
    /// read it back through the error.
    ///
    /// `Invalid` is kept whole: it quotes fields of a file that parsed as a
    /// bundle manifest (every field known, the required ones present),
    /// which is not something else's secret.
    pub fn without_contents(&self) -> String {
        match self {
            ManifestError::Parse { path, problem, at: Some((line, column)), .. } => {
                format!("bundle manifest {} is invalid: {problem} at line {line}, column {column}", path.display())
            }
            ManifestError::Parse { path, problem, at: None, .. } => {
                format!("bundle manifest {} is invalid: {problem}", path.display())
            }
            other => other.to_string(),
        }
    }

    fn parse(path: &Path, text: &str, error: &toml::de::Error) -> Self {
        // TOML syntax messages are fixed grammar text; serde's schema
        // messages quote the file (unknown keys, wrong values), so those
        // are replaced by their kind.
        // The syntax error is the TOML parser's own: `error` may be a
        // schema error met first (an unknown key before an out-of-range
        // integer), whose message quotes the file.
        let (problem, span) = match text.parse::<toml::Table>() {
            Err(syntax) => {
                (format!("not valid TOML ({})", syntax.message().lines().collect::<Vec<_>>().join("; ")), syntax.span())
            }
            Ok(_) => (
                "not a bundle manifest (an unknown or missing field, or a value of the wrong type; \
                 `arbiter lint` shows which)"
                    .to_owned(),
                error.span(),
            ),
        };
        let at = span.map(|span| line_and_column(text, span.start));
        ManifestError::Parse { path: path.to_owned(), detail: error.to_string(), problem, at }
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn from_file(path: &Path) -> Result<Self, ManifestError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ManifestError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, path)
    }

    /// Parses and checks the manifest; `path` only names it in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::parse(path, text, &e))?;
        let problems = manifest.problems();
        if problems.is_empty() { Ok(manifest) } else { Err(ManifestError::Invalid { path: path.to_owned(), problems }) }
    }

    /// A one-policy bundle of a component, named, versioned and pinned as
    /// the component says it is (for testing a policy on its own). A
    /// component without an identity gets a placeholder the loader refuses.
    pub fn for_component(
        component: &Path,
        bytes: &[u8],
        settings: toml::Table,
        capabilities: Vec<Capability>,
        fail: FailMode,
    ) -> Manifest {
        let (name, version) = arbiter_component::ComponentInfo::read(bytes)
            .ok()
            .and_then(|info| info.metadata)
            .map_or(("unnamed".to_owned(), "0.0.0".to_owned()), |m| (m.name, m.version));
        let sha256 = arbiter_component::digest_of(bytes).trim_start_matches("sha256:").to_owned();
        Manifest {
            bundle: BundleHeader {
                name: "test".to_owned(),
                version: "0.0.0".to_owned(),
                contract: None,
                environments: None,
            },
            policies: vec![ManifestPolicy {
                name,
                version,
                component: component.to_owned(),
                sha256,
                mode: Mode::Enforce,
                fail,
                capabilities,
                scope: Scope::default(),
                limits: LimitOverrides::default(),
                settings,
            }],
        }
    }

    /// Every structural problem, each naming the field at fault.
    fn problems(&self) -> Vec<ManifestProblem> {
        let mut problems = Vec::new();
        if !is_name(&self.bundle.name) {
            problems.push(ManifestProblem::BundleName { name: self.bundle.name.clone() });
        }
        if let Some(contract) = &self.bundle.contract
            && !arbiter_component::CONTRACT_VERSIONS.contains(&contract.as_str())
        {
            problems.push(ManifestProblem::UnservedContract { contract: contract.clone() });
        }
        if self.bundle.environments.as_ref().is_some_and(Vec::is_empty) {
            problems.push(ManifestProblem::NoEnvironments);
        }
        if !is_semver(&self.bundle.version) {
            problems.push(ManifestProblem::BundleVersion { version: self.bundle.version.clone() });
        }
        if self.policies.is_empty() {
            problems.push(ManifestProblem::NoPolicies);
        }
        for (index, policy) in self.policies.iter().enumerate() {
            let at = || PolicyAt { index, name: policy.name.clone() };
            if !is_name(&policy.name) {
                problems.push(ManifestProblem::PolicyName { at: at() });
            }
            if self.policies[..index].iter().any(|p| p.name == policy.name) {
                problems.push(ManifestProblem::DuplicateName { at: at() });
            }
            if !is_semver(&policy.version) {
                problems.push(ManifestProblem::PolicyVersion { at: at(), version: policy.version.clone() });
            }
            if policy.sha256.len() != 64 || !policy.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.push(ManifestProblem::Sha256 { at: at() });
            }
            if policy.limits.deadline_ms == Some(0) || policy.limits.memory_mib == Some(0) {
                problems.push(ManifestProblem::Limits { at: at() });
            }
        }
        problems
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn is_semver(s: &str) -> bool {
    semver::Version::parse(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = r#"
        [bundle]
        name = "orders_daily"
        version = "1.0.0"

        [[policies]]
        name = "tool-scope"
        version = "0.1.0"
        component = "components/tool-scope.wasm"
        sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
        capabilities = ["log"]
        [policies.scope]
        environments = ["prod"]
        actions = ["tool_call"]
        tools = ["warehouse.*"]
        [policies.settings]
        allowed = ["a"]
    "#;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        Manifest::from_toml(text, Path::new("bundle.toml"))
    }

    #[test]
    fn parses_a_valid_manifest() {
        let manifest = parse(VALID).unwrap();
        let policy = &manifest.policies[0];
        assert_eq!(policy.mode, Mode::Enforce);
        assert_eq!(policy.fail, FailMode::Closed);
        assert_eq!(policy.capabilities, vec![Capability::Log]);
        assert_eq!(policy.scope.environments, Some(vec![Environment::Prod]));
    }

    #[test]
    fn names_the_field_of_each_problem() {
        let cases = [
            (VALID.replace("version = \"1.0.0\"", "version = \"1.0\""), "bundle.version"),
            (
                VALID.replace("version = \"1.0.0\"", "version = \"1.0.0\"\ncontract = \"9.0.0\""),
                "bundle.contract `9.0.0`",
            ),
            (VALID.replace("version = \"1.0.0\"", "version = \"1.0.0\"\nenvironments = []"), "bundle.environments"),
            (VALID.replace("sha256 = \"0000", "sha256 = \"zz00"), "sha256"),
            (VALID.replace("capabilities = [\"log\"]", "capabilities = [\"network\"]"), "network"),
            (VALID.replace("capabilities = [\"log\"]", "capabilities = [\"log\"]\nfial = \"open\""), "fial"),
            (VALID.replace("environments = [\"prod\"]", "environments = [\"qa\"]"), "qa"),
            (VALID.replace("version = \"0.1.0\"", "version = \"01.1.0\""), "version"),
            (
                format!(
                    "{VALID}\n[[policies]]\nname = \"tool-scope\"\nversion = \"0.1.0\"\ncomponent = \"x\"\nsha256 = \"{}\"\n",
                    "0".repeat(64)
                ),
                "earlier policy",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(&text).expect_err(needle).to_string();
            assert!(err.contains(needle), "expected `{needle}` in: {err}");
        }
    }

    #[test]
    fn every_scope_pattern_is_a_glob_of_the_one_dialect() {
        // `[` is a plain character there (docs/authoring.md#glob-patterns): no
        // pattern is refused, none silently matches nothing.
        for pattern in ["[a", "{a,b}", r"trailing\\", ""] {
            let text = VALID.replace("tools = [\"warehouse.*\"]", &format!("tools = [{pattern:?}]"));
            assert!(parse(&text).is_ok(), "{pattern:?}");
        }
    }

    #[test]
    fn reports_the_line_of_syntax_errors() {
        let err = parse("[bundle]\nname = \n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn without_contents_names_the_problem_and_place_but_quotes_nothing() {
        const SECRET: &str = "hunter2-AKIA0000SECRET";
        let cases = [
            // Not TOML at all: an env file.
            (format!("# credentials\nAWS_SECRET_ACCESS_KEY={SECRET}\n"), "not valid TOML", (2, 23)),
            // TOML, but every way serde would quote it: unknown key, wrong
            // type, unknown variant.
            (format!("{SECRET} = 1\n"), "not a bundle manifest", (1, 1)),
            (format!("[bundle]\nname = \"x\"\nversion = [\"{SECRET}\"]\n"), "not a bundle manifest", (3, 11)),
            (
                VALID.replace("capabilities = [\"log\"]", &format!("mode = \"{SECRET}\"")),
                "not a bundle manifest",
                (11, 16),
            ),
            // Found by the property tests (tests/manifest_props.rs): an
            // unknown key before a syntax error was reported, quoted.
            (format!("{SECRET} = 1\nx = 9223372036854775808\n"), "not valid TOML", (2, 5)),
        ];
        for (text, kind, (line, column)) in cases {
            let err = parse(&text).unwrap_err();
            let public = err.without_contents();
            assert!(!public.contains("hunter2"), "the secret leaks: {public}");
            assert!(public.contains(kind) && public.contains(&format!("at line {line}, column {column}")), "{public}");
            // The operator's own terminal still gets the quoted context.
            assert!(err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn every_problem_is_typed_naming_its_field_and_reads_as_before() {
        let text = VALID.replace("orders_daily", "Orders Daily").replace(&"0".repeat(64), "00");
        let Err(ManifestError::Invalid { problems, .. }) = parse(&text) else { panic!("accepted: {text}") };
        let at = PolicyAt { index: 0, name: "tool-scope".into() };
        assert_eq!(
            problems,
            [ManifestProblem::BundleName { name: "Orders Daily".into() }, ManifestProblem::Sha256 { at }]
        );
        let message = parse(&text).unwrap_err().to_string();
        assert_eq!(
            message,
            "bundle manifest bundle.toml is invalid: bundle.name `Orders Daily` must be lowercase letters, digits, \
             `-` or `_`; policies[0] (`tool-scope`).sha256 must be 64 hex digits"
        );
    }
}
