//! Who is calling. The operator issues credentials: an API key (kept only
//! as its SHA-256), a name, roles, approver groups, and for callers that
//! decide a grant of the principals they may act as. A caller never names
//! itself: its key does.
//!
//! ```toml
//! [[credential]]
//! name = "orders-monitor"
//! key_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! roles = ["decide"]
//! grant = { pipelines = ["orders_daily"], agents = ["monitor"], teams = ["data-platform"], environments = ["prod"] }
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arbiter_engine::readiness::Identity;
use arbiter_types::Principal;
use globset::{Glob, GlobMatcher};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a credential may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Ask for decisions for principals of its grant, and report the usage
    /// and outcome of its own decisions.
    Decide,
    /// Report usage and outcomes of any credential's decisions (a gateway
    /// or collector that sees the provider's answers).
    Report,
    /// Approve or reject escalations that name it, or one of its groups,
    /// among their approvers.
    Approve,
    /// Deploy, roll back and list bundles; read spend and escalations.
    Admin,
    /// Envoy: the principal headers of the requests it forwards are trusted
    /// (Envoy set them from what it verified), within its grant.
    Gateway,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Decide => "decide",
            Role::Report => "report",
            Role::Approve => "approve",
            Role::Admin => "admin",
            Role::Gateway => "gateway",
        }
    }
}

/// Why a credentials file cannot be used. Messages never quote the file:
/// it holds key digests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    #[error("cannot read credentials {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials {path}: line {line}, column {column}: {message}")]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },
    #[error("credentials {path}: credential `{name}`: {problem}")]
    Invalid { path: PathBuf, name: String, problem: String },
}

/// One principal field a grant allows: glob patterns (`*`, `?`, `[..]`).
#[derive(Debug, Clone)]
struct Allowed {
    patterns: Vec<String>,
    matchers: Vec<GlobMatcher>,
}

impl Allowed {
    fn new(patterns: Vec<String>) -> Result<Self, String> {
        if patterns.is_empty() {
            return Err("grants nothing (an empty list); use [\"*\"] to grant any".to_owned());
        }
        let matchers = patterns
            .iter()
            .map(|p| Glob::new(p).map(|g| g.compile_matcher()).map_err(|e| format!("pattern `{p}`: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(Allowed { patterns, matchers })
    }

    fn any() -> Self {
        Allowed::new(vec!["*".to_owned()]).unwrap_or(Allowed { patterns: vec![], matchers: vec![] })
    }

    fn allows(&self, value: &str) -> bool {
        self.matchers.iter().any(|m| m.is_match(value))
    }

    /// The value when the grant allows exactly one, literally: a field the
    /// caller may then leave out.
    fn only(&self) -> Option<&str> {
        match self.patterns.as_slice() {
            [one] if !one.contains(['*', '?', '[', '{', '\\']) => Some(one),
            _ => None,
        }
    }
}

/// The principals a credential may decide for.
#[derive(Debug, Clone)]
pub struct Grant {
    fields: [(&'static str, Allowed); 5],
}

fn field_of<'a>(principal: &'a Principal, name: &str) -> &'a str {
    match name {
        "pipeline" => &principal.pipeline,
        "agent" => &principal.agent,
        "team" => &principal.team,
        "environment" => principal.environment.as_str(),
        _ => &principal.run,
    }
}

impl Grant {
    /// The fields of `principal` the grant does not allow, named.
    pub fn check(&self, principal: &Principal) -> Result<(), String> {
        let outside: Vec<String> = self
            .fields
            .iter()
            .filter(|(name, allowed)| !allowed.allows(field_of(principal, name)))
            .map(|(name, allowed)| {
                format!("{name} `{}` (granted: {})", field_of(principal, name), allowed.patterns.join(", "))
            })
            .collect();
        if outside.is_empty() { Ok(()) } else { Err(outside.join("; ")) }
    }

    /// Whether the grant allows `value` as `field` (a field it does not
    /// name it allows whatever its value).
    pub fn allows(&self, field: &str, value: &str) -> bool {
        self.fields.iter().filter(|(name, _)| *name == field).all(|(_, allowed)| allowed.allows(value))
    }

    /// The one value of `field` the grant allows, if it allows only one.
    pub fn only(&self, field: &str) -> Option<&str> {
        self.fields.iter().find(|(name, _)| *name == field).and_then(|(_, allowed)| allowed.only())
    }

    /// Whether the run is pinned by the grant; a caller-chosen run gets
    /// fresh run budgets and history at will.
    pub fn pins_run(&self) -> bool {
        self.only("run").is_some()
    }
}

/// An operator-issued identity.
#[derive(Debug)]
pub struct Credential {
    pub name: String,
    roles: Vec<Role>,
    groups: Vec<String>,
    grant: Option<Grant>,
}

impl Credential {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn grant(&self) -> Option<&Grant> {
        self.grant.as_ref()
    }

    /// The roles, as the credentials file names them.
    pub fn role_names(&self) -> Vec<&'static str> {
        self.roles.iter().map(|r| r.as_str()).collect()
    }

    #[cfg(test)]
    pub(crate) fn for_tests(name: &str) -> Self {
        Credential { name: name.into(), roles: vec![Role::Approve], groups: vec![], grant: None }
    }

    /// Whether `approvers` names this credential or one of its groups.
    pub fn is_among(&self, approvers: &[String]) -> bool {
        approvers.iter().any(|a| *a == self.name || self.groups.contains(a))
    }
}

/// The credentials a server accepts.
#[derive(Debug, Default)]
pub struct Credentials {
    by_key: HashMap<[u8; 32], Arc<Credential>>,
    /// Requests without a key may decide (for any principal) and report
    /// their own decisions: a local demo, never a deployment.
    pub anonymous: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    #[serde(default, rename = "credential")]
    credentials: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    key_sha256: String,
    roles: Vec<Role>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    grant: Option<GrantEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantEntry {
    pipelines: Vec<String>,
    agents: Vec<String>,
    teams: Vec<String>,
    environments: Vec<String>,
    /// Any run when absent: runs are the caller's to choose unless pinned.
    #[serde(default)]
    runs: Option<Vec<String>>,
}

/// The name anonymous callers' decisions are kept under; no credential may
/// take it.
pub const ANONYMOUS: &str = "anonymous";

/// A new API key: 32 random bytes, hex, prefixed so it is recognisable in
/// a leak scan.
pub fn new_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("arb_{}", hex::encode(bytes)))
}

/// The SHA-256 of an API key, as a credentials file keeps it.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

impl Credentials {
    /// Reads a credentials file (TOML, `[[credential]]` entries).
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| CredentialsError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text, path)
    }

    pub fn from_toml(text: &str, path: &Path) -> Result<Self, CredentialsError> {
        let file: FileShape = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |span| line_column(text, span.start));
            CredentialsError::Syntax { path: path.to_owned(), line, column, message: e.message().to_owned() }
        })?;
        let mut credentials = Credentials::default();
        for entry in file.credentials {
            let name = entry.name.clone();
            let invalid =
                |problem: String| CredentialsError::Invalid { path: path.to_owned(), name: name.clone(), problem };
            let (digest, credential) = Self::credential(entry).map_err(invalid)?;
            if credentials.by_key.values().any(|c| c.name == credential.name) {
                return Err(invalid("the name is used twice".into()));
            }
            if credentials.by_key.insert(digest, Arc::new(credential)).is_some() {
                return Err(invalid("its key is another credential's key".into()));
            }
        }
        Ok(credentials)
    }

    fn credential(entry: Entry) -> Result<([u8; 32], Credential), String> {
        if !valid_name(&entry.name) || entry.name == ANONYMOUS {
            return Err("name: 1-64 characters of a-z, 0-9, `-`, `_`, `.`, `@`, and not `anonymous`".into());
        }
        let mut digest = [0u8; 32];
        hex::decode_to_slice(entry.key_sha256.trim(), &mut digest)
            .map_err(|_| "key_sha256: must be 64 hex digits (the SHA-256 of the key)".to_owned())?;
        if entry.roles.is_empty() {
            return Err("roles: must name at least one of decide, report, approve, admin, gateway".into());
        }
        let needs_grant = entry.roles.iter().any(|r| matches!(r, Role::Decide | Role::Gateway));
        let grant = match (entry.grant, needs_grant) {
            (Some(g), _) => Some(Grant {
                fields: [
                    ("pipeline", Allowed::new(g.pipelines).map_err(|e| format!("grant.pipelines: {e}"))?),
                    ("agent", Allowed::new(g.agents).map_err(|e| format!("grant.agents: {e}"))?),
                    ("team", Allowed::new(g.teams).map_err(|e| format!("grant.teams: {e}"))?),
                    ("environment", Allowed::new(g.environments).map_err(|e| format!("grant.environments: {e}"))?),
                    (
                        "run",
                        match g.runs {
                            Some(runs) => Allowed::new(runs).map_err(|e| format!("grant.runs: {e}"))?,
                            None => Allowed::any(),
                        },
                    ),
                ],
            }),
            (None, true) => {
                return Err("a credential with the decide or gateway role needs a grant (pipelines, agents, teams, environments)".into());
            }
            (None, false) => None,
        };
        let credential = Credential { name: entry.name, roles: entry.roles, groups: entry.groups, grant };
        Ok((digest, credential))
    }

    /// Adds the demo's operator (`arbiter serve` without `--bundle`): the
    /// orders_daily on-call approver, and admin, for `key`.
    pub fn add_demo_operator(&mut self, key: &str) {
        let credential = Credential {
            name: "demo-oncall".into(),
            roles: vec![Role::Approve, Role::Admin],
            groups: vec!["data-platform-oncall".into()],
            grant: None,
        };
        self.by_key.insert(key_digest(key), Arc::new(credential));
    }

    /// Adds an admin-only credential for a bearer token given on the
    /// command line or in the environment.
    pub fn add_admin_token(&mut self, token: &str) -> Result<(), String> {
        let credential = Credential { name: "admin".into(), roles: vec![Role::Admin], groups: vec![], grant: None };
        if self.by_key.values().any(|c| c.name == credential.name) {
            return Err("the admin token's credential name `admin` is taken in the credentials file".into());
        }
        if self.by_key.insert(key_digest(token), Arc::new(credential)).is_some() {
            return Err("the admin token is also a key of the credentials file".into());
        }
        Ok(())
    }

    /// The credential an API key belongs to.
    pub fn authenticate(&self, key: &str) -> Option<Arc<Credential>> {
        // A lookup by digest: timing reveals at most the digest's bucket,
        // never the key.
        self.by_key.get(&key_digest(key)).cloned()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// What readiness scores of the credentials: counts and names, no key.
    pub fn identity(&self) -> Identity {
        let deciding: Vec<_> = self.iter().filter(|c| c.has(Role::Decide) || c.has(Role::Gateway)).collect();
        let mut mixed: Vec<String> =
            deciding.iter().filter(|c| c.has(Role::Admin) || c.has(Role::Approve)).map(|c| c.name.clone()).collect();
        mixed.sort();
        Identity {
            credentials: self.iter().count(),
            approvers: self.iter().filter(|c| c.has(Role::Approve)).count(),
            admins: self.iter().filter(|c| c.has(Role::Admin)).count(),
            mixed_roles: mixed,
            runs_pinned: deciding.iter().all(|c| c.grant().is_some_and(|g| g.pins_run())),
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Credential> {
        self.by_key.values().map(Arc::as_ref)
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_types::Environment;

    fn hash(key: &str) -> String {
        hex::encode(key_digest(key))
    }

    fn load(text: &str) -> Result<Credentials, CredentialsError> {
        Credentials::from_toml(text, Path::new("credentials.toml"))
    }

    fn monitor() -> Credentials {
        load(&format!(
            r#"
            [[credential]]
            name = "orders-monitor"
            key_sha256 = "{}"
            roles = ["decide"]
            grant = {{ pipelines = ["orders_daily"], agents = ["monitor"], teams = ["data-platform"], environments = ["prod", "staging"] }}

            [[credential]]
            name = "alice"
            key_sha256 = "{}"
            roles = ["approve"]
            groups = ["data-platform-oncall"]
            "#,
            hash("k-monitor"),
            hash("k-alice")
        ))
        .unwrap()
    }

    fn principal(team: &str, environment: Environment) -> Principal {
        Principal {
            pipeline: "orders_daily".into(),
            agent: "monitor".into(),
            team: team.into(),
            environment,
            run: "r1".into(),
        }
    }

    #[test]
    fn keys_name_callers_and_grants_bound_their_principals() {
        let credentials = monitor();
        assert!(credentials.authenticate("k-nobody").is_none());
        let monitor = credentials.authenticate("k-monitor").unwrap();
        assert!(monitor.has(Role::Decide) && !monitor.has(Role::Approve));
        let grant = monitor.grant().unwrap();
        assert_eq!(grant.check(&principal("data-platform", Environment::Prod)), Ok(()));
        let refused = grant.check(&principal("finance", Environment::Dev)).unwrap_err();
        assert!(refused.contains("team `finance`") && refused.contains("environment `dev`"), "{refused}");
        assert_eq!(
            (grant.only("team"), grant.only("environment"), grant.pins_run()),
            (Some("data-platform"), None, false)
        );
        let alice = credentials.authenticate("k-alice").unwrap();
        assert!(alice.is_among(&["data-platform-oncall".into()]) && !alice.is_among(&["finance-oncall".into()]));
    }

    #[test]
    fn bad_files_are_refused_by_name_without_quoting_them() {
        let digest = hash("k");
        let cases = [
            (
                format!("[[credential]]\nname = \"x\"\nkey_sha256 = \"{digest}\"\nroles = [\"decide\"]\n"),
                "needs a grant",
            ),
            (format!("[[credential]]\nname = \"Bad Name\"\nkey_sha256 = \"{digest}\"\nroles = [\"admin\"]\n"), "name:"),
            (
                "[[credential]]\nname = \"x\"\nkey_sha256 = \"s3cret-key\"\nroles = [\"admin\"]\n".into(),
                "64 hex digits",
            ),
            (
                format!("[[credential]]\nname = \"x\"\nkey_sha256 = \"{digest}\"\nroles = [\"root\"]\n"),
                "unknown variant",
            ),
            (format!("[[credential]]\nname = \"x\"\nkey_sha256 = \"{digest}\"\nroles = []\n"), "at least one"),
            (
                format!(
                    "[[credential]]\nname = \"x\"\nkey_sha256 = \"{digest}\"\nroles = [\"decide\"]\ngrant = {{ pipelines = [], agents = [\"*\"], teams = [\"*\"], environments = [\"*\"] }}\n"
                ),
                "grant.pipelines: grants nothing",
            ),
            (
                format!(
                    "[[credential]]\nname = \"x\"\nkey_sha256 = \"{digest}\"\nroles = [\"admin\"]\n[[credential]]\nname = \"y\"\nkey_sha256 = \"{digest}\"\nroles = [\"admin\"]\n"
                ),
                "another credential's key",
            ),
            (
                format!("[[credential]]\nname = \"anonymous\"\nkey_sha256 = \"{digest}\"\nroles = [\"admin\"]\n"),
                "name:",
            ),
            ("password = hunter2 is not toml\n".into(), "line 1"),
        ];
        for (text, needle) in cases {
            let error = load(&text).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains(needle), "{text}\n=> {error}");
            assert!(!error.contains("hunter2") && !error.contains("s3cret"), "quotes the file: {error}");
        }
    }

    #[test]
    fn the_admin_token_is_an_admin_only_credential() {
        let mut credentials = monitor();
        credentials.add_admin_token("t0ken").unwrap();
        let admin = credentials.authenticate("t0ken").unwrap();
        assert!(admin.has(Role::Admin) && !admin.has(Role::Approve) && !admin.has(Role::Decide));
        assert!(credentials.add_admin_token("k-monitor").is_err(), "a second `admin`");
    }
}
