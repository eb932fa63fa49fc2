//! The production-readiness checklist, scored from evidence: what each
//! policy's component declares it guards (its review description) and what
//! its settings actually hold, never what a policy is called; and how the
//! server runs, as observed from the live server's admin API or as
//! self-declared in a deployment file — every item says which.

use std::collections::BTreeMap;

use arbiter_review::{Guard, Review, holds_something};
use serde::{Deserialize, Serialize};

use crate::declared::Declared;
use crate::manifest::{FailMode, Manifest, ManifestPolicy, Mode};

/// How far a checklist item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Score {
    /// Nothing of it in place.
    #[serde(rename = "Not Started")]
    NotStarted,
    /// Part of it in place.
    #[serde(rename = "Needs Work")]
    NeedsWork,
    /// In place.
    Ready,
}

impl Score {
    /// The score as the checklist writes it (`Needs Work`).
    pub fn label(self) -> &'static str {
        match self {
            Score::NotStarted => "Not Started",
            Score::NeedsWork => "Needs Work",
            Score::Ready => "Ready",
        }
    }
}

/// Where an item's evidence comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Basis {
    /// The bundle: its manifest and what its components declare.
    Bundle,
    /// A deployment file's word about the server, unchecked.
    SelfDeclared,
    /// Read from the running server's admin API.
    Observed,
}

impl Basis {
    /// Where the evidence comes from, as the report writes it.
    pub fn label(self) -> &'static str {
        match self {
            Basis::Bundle => "bundle",
            Basis::SelfDeclared => "self-declared",
            Basis::Observed => "observed",
        }
    }
}

/// One scored item of the readiness checklist.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// The checklist item (`Cost management`).
    pub item: &'static str,
    /// How far it is.
    pub score: Score,
    /// Where the evidence comes from.
    pub basis: Basis,
    /// What the score rests on, one line each.
    pub evidence: Vec<String>,
}

/// How the server runs the bundle, as a TOML file of `arbiter serve`'s
/// settings (`--server-config`); absent fields are "not configured". What
/// it says is self-declared: `arbiter readiness --server` observes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// `--state`: a journal directory or a Redis URL; absent means memory.
    #[serde(default)]
    pub state: Option<String>,
    /// `--audit-log`: the audit log's path.
    #[serde(default)]
    pub audit_log: Option<String>,
    /// `--trusted-key` files: bundles must be signed by one.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// Whether `ARBITER_ADMIN_TOKEN` is set (one admin credential).
    #[serde(default)]
    pub admin_token: bool,
    /// `--escalation-webhook`: where escalations are announced.
    #[serde(default)]
    pub escalation_webhook: Option<String>,
    /// `--keep-bundles`: activated bundles kept for rollback.
    #[serde(default)]
    pub keep_bundles: Option<usize>,
    /// `arbiter serve --credentials` (a path, relative to this file).
    #[serde(default)]
    pub credentials: Option<String>,
    /// `--anonymous`: requests without a key decide.
    #[serde(default)]
    pub anonymous: bool,
    /// `--clock`: `server` (the default) or `request`.
    #[serde(default)]
    pub clock: Option<String>,
}

/// What the server's credentials grant (no key, no digest: names and
/// counts only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Credentials issued, in all.
    pub credentials: usize,
    /// Credentials with the approve role.
    pub approvers: usize,
    /// Credentials with the admin role.
    pub admins: usize,
    /// Credentials holding admin or approve together with decide: one key
    /// that an agent holds could then approve or deploy.
    pub mixed_roles: Vec<String>,
    /// Whether every credential that decides has its run pinned by its
    /// grant; otherwise runs are caller-chosen.
    pub runs_pinned: bool,
}

/// Where budgets, breakers and history live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateBackend {
    /// In the server's memory: lost at restart.
    Memory,
    /// An embedded journal on local disk (`--state DIR`).
    Journal,
    /// Redis, shared by replicas (`--state redis://…`).
    Redis,
}

impl StateBackend {
    /// The backend `--state <spec>` opens: a Redis URL, a journal
    /// directory, or memory when absent.
    pub fn of(spec: Option<&str>) -> Self {
        match spec {
            None => StateBackend::Memory,
            Some(s) if s.starts_with("redis://") || s.starts_with("rediss://") => StateBackend::Redis,
            Some(_) => StateBackend::Journal,
        }
    }
}

/// The server's effective settings that readiness scores: what `GET
/// /v1/admin/settings` answers. No secret is in it (no key, token, URL or
/// path), only whether each thing is configured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFacts {
    /// The active bundle's name and version (unknown when self-declared).
    #[serde(default)]
    pub bundle: Option<(String, String)>,
    /// Where state lives.
    pub state: StateBackend,
    /// Whether decisions are recorded in an audit log.
    pub audit_log: bool,
    /// Checkpoints signed (`--audit-key`).
    #[serde(default)]
    pub audit_signed: bool,
    /// Decisions that cannot be recorded are denied (`--audit-required`).
    #[serde(default)]
    pub audit_required: bool,
    /// Keys a deployed bundle must be signed by.
    pub trusted_keys: usize,
    /// Whether escalations are announced to a webhook.
    pub escalation_webhook: bool,
    /// Activated bundles kept for rollback; `None` when reload is off.
    pub keep_bundles: Option<usize>,
    /// Whether requests without a key decide (`--anonymous`).
    pub anonymous: bool,
    /// `server` or `request`.
    pub clock: String,
    /// What the credentials grant.
    pub identity: Identity,
}

impl Deployment {
    /// What the file claims, with the identity its credentials file grants.
    pub fn facts(&self, identity: Option<Identity>) -> ServerFacts {
        let mut identity = identity.unwrap_or_default();
        // `--admin-token` adds one admin credential.
        if self.admin_token {
            identity.credentials += 1;
            identity.admins += 1;
        }
        ServerFacts {
            bundle: None,
            state: StateBackend::of(self.state.as_deref()),
            audit_log: self.audit_log.is_some(),
            audit_signed: false,
            audit_required: false,
            trusted_keys: self.trusted_keys.len(),
            escalation_webhook: self.escalation_webhook.is_some(),
            keep_bundles: Some(self.keep_bundles.unwrap_or(5)),
            anonymous: self.anonymous,
            clock: self.clock.clone().unwrap_or_else(|| "server".to_owned()),
            identity,
        }
    }
}

/// What readiness knows of the server, and how.
#[derive(Debug, Clone)]
pub struct Server {
    /// What is known of the server.
    pub facts: ServerFacts,
    /// How it is known.
    pub basis: Basis,
}

/// A policy of the bundle with what its component declares.
struct Declaring<'m> {
    entry: &'m ManifestPolicy,
    review: Option<&'m Review>,
    settings: toml::Value,
}

impl Declaring<'_> {
    fn enforced(&self) -> bool {
        self.entry.mode == Mode::Enforce
    }

    /// Whether it declares `guard` and its settings hold what the guard
    /// needs.
    fn holds(&self, guard: Guard) -> bool {
        let Some(paths) = self.review.and_then(|r| r.guards.get(&guard)) else { return false };
        paths.is_empty() || paths.iter().any(|p| p.select(&self.settings).into_iter().any(holds_something))
    }

    fn declares(&self, guard: Guard) -> bool {
        self.review.is_some_and(|r| r.guards.contains_key(&guard))
    }

    /// The strings its settings hold at the paths of `guard`.
    fn guarded(&self, guard: Guard) -> Vec<String> {
        let paths = self.review.and_then(|r| r.guards.get(&guard)).map(Vec::as_slice).unwrap_or_default();
        paths.iter().flat_map(|p| strings(p.select(&self.settings))).collect()
    }
}

fn strings(values: Vec<&toml::Value>) -> Vec<String> {
    values
        .into_iter()
        .flat_map(|v| match v {
            toml::Value::Array(items) => items.iter().filter_map(|i| i.as_str().map(str::to_owned)).collect(),
            toml::Value::String(s) => vec![s.clone()],
            _ => Vec::new(),
        })
        .collect()
}

/// The bundle's policies as their components describe them; evidence lines
/// for those whose declarations could not be read.
fn declaring<'m>(
    manifest: &'m Manifest,
    declared: &'m BTreeMap<String, Declared>,
) -> (Vec<Declaring<'m>>, Vec<String>) {
    let mut unread = Vec::new();
    let policies = manifest
        .policies
        .iter()
        .map(|entry| {
            let review = match declared.get(&entry.name) {
                Some(Ok(review)) => review.as_ref(),
                Some(Err(problem)) => {
                    unread.push(format!("`{}` declares nothing readable: {problem}", entry.name));
                    None
                }
                None => None,
            };
            Declaring { entry, review, settings: toml::Value::Table(entry.settings.clone()) }
        })
        .collect();
    (policies, unread)
}

/// Each of the guide's failure modes with the enforced policies whose
/// declarations and settings guard it.
pub fn failure_modes(manifest: &Manifest, declared: &BTreeMap<String, Declared>) -> Vec<(&'static str, Vec<String>)> {
    let (policies, _) = declaring(manifest, declared);
    Guard::FAILURE_MODES.iter().map(|&mode| (mode.name(), guarding(&policies, mode))).collect()
}

fn guarding(policies: &[Declaring<'_>], guard: Guard) -> Vec<String> {
    policies.iter().filter(|p| p.enforced() && p.holds(guard)).map(|p| p.entry.name.clone()).collect()
}

/// Scores a control one guard stands for: Ready when an enforced,
/// fail-closed policy holds it.
fn control(policies: &[Declaring<'_>], guard: Guard, evidence: &mut Vec<String>) -> Score {
    let holding: Vec<&Declaring<'_>> = policies.iter().filter(|p| p.holds(guard)).collect();
    // A declaration its settings leave idle matters only when nothing else holds the guard.
    for idle in policies.iter().filter(|p| holding.is_empty() && p.declares(guard)) {
        evidence.push(format!("`{}` declares {} but its settings hold nothing for it", idle.entry.name, guard.name()));
    }
    let enforced: Vec<&&Declaring<'_>> = holding.iter().filter(|p| p.enforced()).collect();
    if enforced.is_empty() {
        evidence.push(match holding.first() {
            Some(p) => format!("{}: `{}` only monitors (not enforced)", guard.name(), p.entry.name),
            None => format!("no policy declares {}", guard.name()),
        });
        return if holding.is_empty() { Score::NotStarted } else { Score::NeedsWork };
    }
    for p in &enforced {
        let fails = if p.entry.fail == FailMode::Open { ", but fails open" } else { "" };
        evidence.push(format!("{}: `{}` {} enforced{fails}", guard.name(), p.entry.name, p.entry.version));
    }
    if enforced.iter().any(|p| p.entry.fail == FailMode::Closed) { Score::Ready } else { Score::NeedsWork }
}

fn no_server() -> (Score, Vec<String>) {
    (Score::NotStarted, vec!["nothing known of the server (give --server URL, or --server-config)".to_owned()])
}

/// Scores every item of the checklist.
pub fn assess(
    manifest: &Manifest,
    declared: &BTreeMap<String, Declared>,
    signed: bool,
    floating_pins: &[String],
    server: Option<&Server>,
) -> Vec<Item> {
    let (policies, unread) = declaring(manifest, declared);
    let facts = server.map(|s| &s.facts);
    let server_basis = server.map_or(Basis::Bundle, |s| s.basis);
    let mut items = Vec::new();
    let mut push = |item, score, basis, evidence| items.push(Item { item, score, basis, evidence });

    // 1. Environment strategy.
    let mut evidence = Vec::new();
    let scoped = manifest.policies.iter().filter(|p| p.scope.environments.is_some()).count();
    let mut score = control(&policies, Guard::EnvironmentIsolation, &mut evidence);
    if score == Score::NotStarted && (scoped > 0 || manifest.bundle.environments.is_some()) {
        evidence.push(format!(
            "{scoped} policies scoped by environment; the bundle serves {:?}",
            manifest.bundle.environments
        ));
        score = Score::NeedsWork;
    }
    push("environment strategy", score, Basis::Bundle, evidence);

    // 2. Rollback plan.
    let (score, evidence) = match facts {
        None => no_server(),
        Some(f) => match f.keep_bundles {
            None => (Score::NotStarted, vec!["bundle reload is off: nothing to roll back to".to_owned()]),
            Some(keep) => {
                let mut evidence = vec![format!("server keeps {keep} activated bundles for `arbiter rollback`")];
                if f.identity.admins == 0 {
                    evidence.push("no admin credential: rollback through the API is disabled".to_owned());
                }
                (if keep >= 2 && f.identity.admins > 0 { Score::Ready } else { Score::NeedsWork }, evidence)
            }
        },
    };
    push("rollback plan", score, server_basis, evidence);

    // 3. Failure-mode inventory.
    let mut evidence: Vec<String> = Guard::FAILURE_MODES
        .iter()
        .map(|&mode| match guarding(&policies, mode).as_slice() {
            [] => format!("{}: NOT COVERED", mode.name()),
            names => {
                format!("{}: {}", mode.name(), names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
            }
        })
        .collect();
    let missing = evidence.iter().filter(|c| c.ends_with("NOT COVERED")).count();
    let score = match missing {
        0 => Score::Ready,
        n if n == Guard::FAILURE_MODES.len() => Score::NotStarted,
        _ => Score::NeedsWork,
    };
    evidence.extend(unread);
    push("failure-mode inventory", score, Basis::Bundle, evidence);

    // 4. Cost management: per pipeline, per agent and per time period.
    let (score, evidence) = cost(&policies);
    push("cost management", score, Basis::Bundle, evidence);

    // 5. Circuit breakers.
    let mut evidence = Vec::new();
    let score = control(&policies, Guard::FailureRateHalt, &mut evidence);
    push("circuit breakers", score, Basis::Bundle, evidence);

    // 6. Compliance verification: residency, access control, audit logging.
    let mut evidence = Vec::new();
    let residency = control(&policies, Guard::DataResidency, &mut evidence);
    let score = match facts {
        _ if residency == Score::NotStarted => Score::NotStarted,
        None => {
            evidence.push("audit logging and access control unknown (no --server or --server-config)".to_owned());
            Score::NeedsWork
        }
        Some(f) => {
            evidence.push(if f.audit_log { "audit log on".to_owned() } else { "no audit log".to_owned() });
            evidence.push(format!("{} credentials; anonymous: {}", f.identity.credentials, f.anonymous));
            let controlled = f.audit_log && f.identity.credentials > 0 && !f.anonymous;
            if controlled { residency } else { Score::NeedsWork }
        }
    };
    push("compliance verification", score, if facts.is_some() { server_basis } else { Basis::Bundle }, evidence);

    // 7. Version control.
    let mut evidence = vec![format!(
        "bundle {} {}, {} policies pinned by sha256",
        manifest.bundle.name,
        manifest.bundle.version,
        manifest.policies.len()
    )];
    evidence.push(if signed { "manifest signed".to_owned() } else { "manifest NOT signed".to_owned() });
    let pinned_models = control(&policies, Guard::ModelPinning, &mut evidence) == Score::Ready;
    evidence.extend(floating_pins.iter().cloned());
    if let Some(f) = facts {
        evidence.push(format!("server trusts {} signing keys", f.trusted_keys));
        if let Some((name, version)) = &f.bundle {
            let same = name == &manifest.bundle.name && version == &manifest.bundle.version;
            evidence.push(format!("server runs {name} {version}{}", if same { "" } else { ", NOT this bundle" }));
        }
    }
    let trusted = facts.is_some_and(|f| f.trusted_keys > 0);
    let score = if signed && pinned_models && floating_pins.is_empty() && trusted {
        Score::Ready
    } else if signed || pinned_models {
        Score::NeedsWork
    } else {
        Score::NotStarted
    };
    push("version control", score, if facts.is_some() { server_basis } else { Basis::Bundle }, evidence);

    // 8. Observability baseline.
    let (score, evidence) = match facts {
        None => no_server(),
        Some(f) => {
            let mut evidence = vec!["Prometheus /metrics always on".to_owned()];
            evidence.push(match (f.audit_log, f.audit_signed) {
                (true, true) => "audit log hash-chained, checkpoints signed".to_owned(),
                (true, false) => "audit log hash-chained".to_owned(),
                (false, _) => "no audit log".to_owned(),
            });
            let persistent = f.state != StateBackend::Memory;
            if !persistent {
                evidence.push("state in memory: budgets and breakers reset on restart".to_owned());
            }
            (if f.audit_log && persistent { Score::Ready } else { Score::NeedsWork }, evidence)
        }
    };
    push("observability baseline", score, server_basis, evidence);

    // 9. Human review gates.
    let (score, evidence) = review_gates(&policies);
    push("human review gates", score, Basis::Bundle, evidence);

    // 10. Escalation path.
    let mut evidence = Vec::new();
    let approvers: Vec<String> = policies
        .iter()
        .filter(|p| p.enforced())
        .flat_map(|p| {
            p.review
                .map(|r| r.approvers.as_slice())
                .unwrap_or_default()
                .iter()
                .flat_map(|a| strings(a.select(&p.settings)))
        })
        .collect();
    let score = if approvers.is_empty() {
        evidence.push("no enforced policy names approvers".to_owned());
        Score::NotStarted
    } else {
        evidence.push(format!("approvers: {}", approvers.join(", ")));
        match facts {
            Some(f) if f.identity.approvers > 0 && f.escalation_webhook && f.state != StateBackend::Memory => {
                evidence.push("approver credentials issued; new escalations notify a webhook".to_owned());
                evidence.push("kill switch: halts kept in the state store (shared, survive restarts)".to_owned());
                Score::Ready
            }
            Some(f) => {
                if f.state == StateBackend::Memory {
                    evidence
                        .push("kill switch in memory: a halt is lost on restart and not seen by replicas".to_owned());
                }
                if f.identity.approvers == 0 {
                    evidence.push("no credential with the approve role: nobody can approve".to_owned());
                }
                if !f.escalation_webhook {
                    evidence.push("no escalation webhook: approvers are not told".to_owned());
                }
                Score::NeedsWork
            }
            None => {
                evidence.push("nothing known of the server".to_owned());
                Score::NeedsWork
            }
        }
    };
    push("escalation path", score, if facts.is_some() { server_basis } else { Basis::Bundle }, evidence);

    // 11. Trust boundaries: the guide's "guardrail bypass", from the caller's
    // side: whose clock, whose identity, whose roles.
    let (score, evidence) = match facts {
        None => no_server(),
        Some(f) => trust_boundaries(f),
    };
    push("trust boundaries", score, server_basis, evidence);
    items
}

/// The guide's budgets: per pipeline, per agent, and per time period.
fn cost(policies: &[Declaring<'_>]) -> (Score, Vec<String>) {
    let mut evidence = Vec::new();
    let budgeting: Vec<&Declaring<'_>> =
        policies.iter().filter(|p| p.review.is_some_and(|r| r.budgets.is_some())).collect();
    if budgeting.is_empty() {
        return (Score::NotStarted, vec!["no policy declares budgets".to_owned()]);
    }
    let (mut scopes, mut windows) = (Vec::new(), Vec::new());
    for p in &budgeting {
        let Some(budgets) = p.review.and_then(|r| r.budgets.as_ref()) else { continue };
        let (per, within) = (strings(budgets.scopes.select(&p.settings)), strings(budgets.windows.select(&p.settings)));
        let enforced = if p.enforced() { "" } else { " (only monitors)" };
        evidence.push(format!(
            "`{}`{enforced}: budgets per {} over {}",
            p.entry.name,
            per.join(", "),
            within.join(", ")
        ));
        if p.enforced() {
            scopes.extend(per);
            windows.extend(within);
        }
    }
    let mut missing = Vec::new();
    for level in ["pipeline", "agent"] {
        if !scopes.iter().any(|s| s == level) {
            missing.push(format!("no per-{level} budget"));
        }
    }
    if !windows.iter().any(|w| w != "run") {
        missing.push("no time-period budget".to_owned());
    }
    let score = if missing.is_empty() { Score::Ready } else { Score::NeedsWork };
    evidence.extend(missing);
    (score, evidence)
}

/// Every allowed tool that looks irreversible must be gated.
fn review_gates(policies: &[Declaring<'_>]) -> (Score, Vec<String>) {
    let mut evidence = Vec::new();
    let score = control(policies, Guard::IrreversibleActions, &mut evidence);
    if score == Score::NotStarted {
        return (score, evidence);
    }
    let enforced = policies.iter().filter(|p| p.enforced());
    let gated: Vec<String> = enforced.clone().flat_map(|p| p.guarded(Guard::IrreversibleActions)).collect();
    let allowed: Vec<String> = enforced.flat_map(|p| p.guarded(Guard::GuardrailBypass)).collect();
    evidence.push(format!("irreversible tools gated: {}", gated.join(", ")));
    let risky = ["drop", "delete", "truncate", "alter", "write", "create_incident", "exec"];
    let ungated: Vec<&String> = allowed
        .iter()
        .filter(|t| risky.iter().any(|r| t.contains(r)))
        .filter(|t| !gated.iter().any(|g| arbiter_glob::matches(g, t)))
        .collect();
    if ungated.is_empty() {
        evidence.push("every allowed tool that looks irreversible is gated".to_owned());
        (score, evidence)
    } else {
        let list: Vec<&str> = ungated.iter().map(|s| s.as_str()).collect();
        evidence.push(format!("allowed but not gated: {}", list.join(", ")));
        (Score::NeedsWork, evidence)
    }
}

fn trust_boundaries(f: &ServerFacts) -> (Score, Vec<String>) {
    let mut evidence = Vec::new();
    let server_clock = f.clock == "server";
    evidence.push(if server_clock {
        "server clock: request timestamps are recorded, never trusted".to_owned()
    } else {
        "REQUEST CLOCK: callers choose budget windows and expiries (replays and tests only)".to_owned()
    });
    if f.anonymous {
        evidence.push("ANONYMOUS decisions: any caller names its own principal".to_owned());
    }
    let identity = &f.identity;
    if identity.credentials == 0 {
        evidence.push("no credentials: callers are not identified".to_owned());
        return (Score::NotStarted, evidence);
    }
    evidence.push(format!("{} credentials, {} may approve", identity.credentials, identity.approvers));
    if !identity.mixed_roles.is_empty() {
        evidence.push(format!("decide together with admin or approve: {}", identity.mixed_roles.join(", ")));
    }
    evidence.push(if identity.runs_pinned {
        "every deciding credential's run is pinned: run budgets are hard limits".to_owned()
    } else {
        "runs are caller-chosen: only pipeline, agent, team and period budgets are hard limits against a hostile agent"
            .to_owned()
    });
    let ready = server_clock && !f.anonymous && identity.mixed_roles.is_empty();
    (if ready { Score::Ready } else { Score::NeedsWork }, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A policy block of a manifest.
    fn policy(name: &str, settings: &str) -> String {
        format!(
            "[[policies]]\nname = \"{name}\"\nversion = \"1.0.0\"\ncomponent = \"{name}.wasm\"\nsha256 = \"{}\"\n[policies.settings]\n{settings}\n",
            "0".repeat(64)
        )
    }

    fn manifest(policies: &[String]) -> Manifest {
        let text = format!("[bundle]\nname = \"b\"\nversion = \"1.0.0\"\n{}", policies.concat());
        Manifest::from_toml(&text, Path::new("m")).unwrap()
    }

    /// What each policy declares: the named reference policy's review
    /// description, or nothing.
    fn declared(of: &[(&str, Option<&str>)]) -> BTreeMap<String, Declared> {
        of.iter().map(|(name, review)| (name.to_string(), Ok(review.map(|r| Review::parse(r).unwrap())))).collect()
    }

    const BREAKER: &str = include_str!("../../../policies/circuit-breaker/review.toml");
    const BUDGET: &str = include_str!("../../../policies/token-budget/review.toml");
    const BREAKER_SETTINGS: &str =
        "window_calls = 10\nminimum_calls = 5\nfailure_rate_percent = 50\nopen_seconds = 60\nhalf_open_calls = 2";

    fn score(items: &[Item], item: &str) -> (Score, Vec<String>) {
        let found = items.iter().find(|i| i.item == item).unwrap();
        (found.score, found.evidence.clone())
    }

    #[test]
    fn a_renamed_policy_keeps_its_score() {
        let bundle = manifest(&[policy("breaker-v2", BREAKER_SETTINGS)]);
        let items = assess(&bundle, &declared(&[("breaker-v2", Some(BREAKER))]), false, &[], None);
        let (breakers, evidence) = score(&items, "circuit breakers");
        assert_eq!(breakers, Score::Ready, "{evidence:?}");
        assert!(evidence.iter().any(|e| e.contains("`breaker-v2` 1.0.0 enforced")), "{evidence:?}");
        let (_, inventory) = score(&items, "failure-mode inventory");
        assert!(inventory.contains(&"error propagation: `breaker-v2`".to_owned()), "{inventory:?}");
    }

    #[test]
    fn a_do_nothing_policy_with_a_reference_name_scores_nothing() {
        let bundle = manifest(&[policy("circuit-breaker", ""), policy("token-budget", "")]);
        let items = assess(&bundle, &declared(&[("circuit-breaker", None), ("token-budget", None)]), false, &[], None);
        assert_eq!(score(&items, "circuit breakers").0, Score::NotStarted);
        assert_eq!(score(&items, "cost management").0, Score::NotStarted);
        assert_eq!(score(&items, "failure-mode inventory").0, Score::NotStarted);
        assert!(score(&items, "failure-mode inventory").1.contains(&"error propagation: NOT COVERED".to_owned()));
        // Nor does one whose component could not be read or is not the pinned one.
        let path = Path::new("cb.wasm").to_owned();
        let unread = BTreeMap::from([(
            "circuit-breaker".to_owned(),
            Err(crate::DeclaredError::File(crate::ComponentFileError::DigestMismatch {
                pinned: "sha256:aa".into(),
                path,
                found: "sha256:bb".into(),
            })),
        )]);
        let items = assess(&manifest(&[policy("circuit-breaker", BREAKER_SETTINGS)]), &unread, false, &[], None);
        let (score, evidence) = score(&items, "failure-mode inventory");
        assert_eq!(score, Score::NotStarted);
        assert!(evidence.iter().any(
            |e| e == "`circuit-breaker` declares nothing readable: digest mismatch: the manifest pins sha256:aa, cb.wasm is sha256:bb"
        ));
    }

    fn budgets(per: &[(&str, &str)]) -> String {
        per.iter()
            .map(|(per, window)| {
                format!("[[policies.settings.budgets]]\nper = \"{per}\"\nwindow = \"{window}\"\nlimit = 1000\n")
            })
            .collect()
    }

    #[test]
    fn a_bundle_without_a_per_agent_budget_is_not_ready_on_cost_management() {
        let cost = |per: &[(&str, &str)]| {
            let bundle = manifest(&[policy("spend", "").replace("[policies.settings]\n", &budgets(per))]);
            score(&assess(&bundle, &declared(&[("spend", Some(BUDGET))]), false, &[], None), "cost management")
        };
        // The shipped bundle's budgets before it gained a per-agent one.
        let (score, evidence) = cost(&[("run", "run"), ("pipeline", "day"), ("team", "day")]);
        assert_eq!(score, Score::NeedsWork);
        assert!(evidence.contains(&"no per-agent budget".to_owned()), "{evidence:?}");
        assert_eq!(cost(&[("agent", "day"), ("pipeline", "day")]).0, Score::Ready);
        let (score, evidence) = cost(&[("run", "run"), ("agent", "day")]);
        assert_eq!((score, evidence.last().unwrap().as_str()), (Score::NeedsWork, "no per-pipeline budget"));
        let (score, evidence) = cost(&[("run", "run")]);
        assert_eq!(score, Score::NeedsWork);
        assert!(evidence.contains(&"no time-period budget".to_owned()), "{evidence:?}");
    }

    #[test]
    fn a_guard_counts_only_while_its_settings_hold_something() {
        let review = include_str!("../../../policies/human-review/review.toml");
        let gates = |settings: &str| {
            let bundle = manifest(&[policy("gate", settings)]);
            score(&assess(&bundle, &declared(&[("gate", Some(review))]), false, &[], None), "human review gates")
        };
        let (idle, evidence) = gates("approvers = [\"oncall\"]\nvalid_for_seconds = 60\nirreversible_tools = []");
        assert_eq!(idle, Score::NotStarted);
        assert!(evidence[0].contains("declares irreversible actions but its settings hold nothing"), "{evidence:?}");
        let (gated, _) = gates("approvers = [\"oncall\"]\nvalid_for_seconds = 60\nirreversible_tools = [\"db.drop\"]");
        assert_eq!(gated, Score::Ready);
    }

    fn observed() -> ServerFacts {
        ServerFacts {
            bundle: Some(("b".into(), "1.0.0".into())),
            state: StateBackend::Journal,
            audit_log: true,
            audit_signed: true,
            audit_required: false,
            trusted_keys: 1,
            escalation_webhook: true,
            keep_bundles: Some(5),
            anonymous: false,
            clock: "server".into(),
            identity: Identity { credentials: 3, approvers: 1, admins: 1, mixed_roles: vec![], runs_pinned: false },
        }
    }

    #[test]
    fn server_items_say_how_they_are_known() {
        let bundle = manifest(&[policy("p", "")]);
        let basis = |server: Option<&Server>, item: &str| {
            let items = assess(&bundle, &BTreeMap::new(), false, &[], server);
            let found = items.into_iter().find(|i| i.item == item).unwrap();
            (found.score, found.basis)
        };
        let live = Server { facts: observed(), basis: Basis::Observed };
        assert_eq!(basis(Some(&live), "observability baseline"), (Score::Ready, Basis::Observed));
        let file = Deployment {
            state: Some("/var/lib/arbiter".into()),
            audit_log: Some("a.jsonl".into()),
            ..Deployment::default()
        };
        let declared = Server { facts: file.facts(None), basis: Basis::SelfDeclared };
        assert_eq!(basis(Some(&declared), "observability baseline"), (Score::Ready, Basis::SelfDeclared));
        assert_eq!(basis(None, "observability baseline"), (Score::NotStarted, Basis::Bundle));
        let in_memory =
            Server { facts: ServerFacts { state: StateBackend::Memory, ..observed() }, basis: Basis::Observed };
        assert_eq!(basis(Some(&in_memory), "observability baseline").0, Score::NeedsWork);
        // The server runs another bundle: said in version control.
        let other = Server {
            facts: ServerFacts { bundle: Some(("b".into(), "0.9.0".into())), ..observed() },
            basis: Basis::Observed,
        };
        let items = assess(&bundle, &BTreeMap::new(), false, &[], Some(&other));
        assert!(score(&items, "version control").1.contains(&"server runs b 0.9.0, NOT this bundle".to_owned()));
    }

    #[test]
    fn trust_boundaries_score_the_clock_identity_and_roles() {
        let (score, evidence) = trust_boundaries(&observed());
        assert_eq!(score, Score::Ready);
        assert!(evidence.iter().any(|e| e.contains("runs are caller-chosen")), "{evidence:?}");
        let pinned = ServerFacts { identity: Identity { runs_pinned: true, ..observed().identity }, ..observed() };
        assert!(trust_boundaries(&pinned).1.iter().any(|e| e.contains("run budgets are hard limits")));
        assert_eq!(trust_boundaries(&ServerFacts { clock: "request".into(), ..observed() }).0, Score::NeedsWork);
        assert_eq!(trust_boundaries(&ServerFacts { anonymous: true, ..observed() }).0, Score::NeedsWork);
        let mixed = ServerFacts {
            identity: Identity { mixed_roles: vec!["agent-with-admin".into()], ..observed().identity },
            ..observed()
        };
        let (score, evidence) = trust_boundaries(&mixed);
        assert_eq!(score, Score::NeedsWork);
        assert!(evidence.iter().any(|e| e.contains("agent-with-admin")), "{evidence:?}");
        let nobody = ServerFacts { identity: Identity::default(), ..observed() };
        assert_eq!(trust_boundaries(&nobody).0, Score::NotStarted, "no credentials: callers are not identified");
    }
}
