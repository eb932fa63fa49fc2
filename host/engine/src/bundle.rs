//! A loaded bundle: its policies prepared and ready to decide requests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arbiter_state::{RunKey, StateStore};

use std::collections::HashMap;

use arbiter_types::{Action, BundleRef, Decision, PolicyResult, Request, ToolCall, ToolDefinition, VerdictKind};

use crate::combine::{Counted, Effects, STATE_UNAVAILABLE, combine};
use crate::component_info::ComponentInfo;
use crate::contract::{Input, KnownTool, Requests};
use crate::engine::PolicyEngine;
use crate::manifest::{FailMode, Manifest, ManifestError, ManifestPolicy, Mode};
use crate::policy::{LoadError, PreparedPolicy, check_contract};
use crate::sandbox::DecisionContext;
use crate::scope::ScopeMatcher;
use crate::signature::{SignatureError, verify_manifest};
use ed25519_dalek::VerifyingKey;

/// One problem with one policy of a bundle.
#[derive(Debug, thiserror::Error)]
#[error("policy `{policy}`: {problem}")]
pub struct PolicyProblem {
    pub policy: String,
    pub problem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("bundle {manifest} cannot be loaded:\n{}", list(.problems))]
    Policies { manifest: PathBuf, problems: Vec<PolicyProblem> },
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

fn list(problems: &[PolicyProblem]) -> String {
    problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n")
}

/// A bundle's policy with what the manifest says about it.
#[derive(Debug)]
struct BundlePolicy {
    prepared: PreparedPolicy,
    version: String,
    mode: Mode,
    fail: FailMode,
    scope: ScopeMatcher,
}

#[derive(Debug)]
pub struct Bundle {
    name: String,
    version: String,
    environments: Option<Vec<arbiter_types::Environment>>,
    policies: Vec<BundlePolicy>,
}

impl Bundle {
    /// Loads every policy of a manifest. Nothing is half-loaded: either all
    /// policies check out and are prepared, or the error lists every
    /// problem found.
    pub fn load(engine: &PolicyEngine, manifest_path: &Path) -> Result<Self, BundleError> {
        Self::load_trusted(engine, manifest_path, &[])
    }

    /// Loads a bundle that must be signed by one of `trusted` (any bundle
    /// when `trusted` is empty). The manifest is read once, so what is
    /// verified is what is loaded.
    pub fn load_trusted(
        engine: &PolicyEngine,
        manifest_path: &Path,
        trusted: &[VerifyingKey],
    ) -> Result<Self, BundleError> {
        let bytes = std::fs::read(manifest_path)
            .map_err(|source| ManifestError::Read { path: manifest_path.to_owned(), source })?;
        if !trusted.is_empty() {
            verify_manifest(manifest_path, &bytes, trusted)?;
        }
        let text = String::from_utf8(bytes).map_err(|_| ManifestError::Invalid {
            path: manifest_path.to_owned(),
            message: "not UTF-8 text".to_owned(),
        })?;
        let manifest = Manifest::from_toml(&text, manifest_path)?;
        let base = manifest_path.parent().unwrap_or(Path::new("."));
        Self::from_manifest(engine, manifest, base, manifest_path)
    }

    /// Loads a parsed manifest whose component paths are relative to `base`.
    pub fn from_manifest(
        engine: &PolicyEngine,
        manifest: Manifest,
        base: &Path,
        manifest_path: &Path,
    ) -> Result<Self, BundleError> {
        let mut policies = Vec::new();
        let mut problems = Vec::new();
        let contract = manifest.bundle.contract.as_deref();
        for entry in manifest.policies {
            match load_policy(engine, &entry, base, contract) {
                Ok(policy) => policies.push(policy),
                Err(problem) => problems.push(PolicyProblem { policy: entry.name.clone(), problem }),
            }
        }
        if !problems.is_empty() {
            return Err(BundleError::Policies { manifest: manifest_path.to_owned(), problems });
        }
        Ok(Bundle {
            name: manifest.bundle.name,
            version: manifest.bundle.version,
            environments: manifest.bundle.environments,
            policies,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// Names and versions of the bundle's policies, in manifest order.
    pub fn policies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.policies.iter().map(|p| (p.prepared.name(), p.version.as_str()))
    }

    /// Evaluates every applicable policy and combines the enforced verdicts;
    /// commits nothing (see [`crate::Decider`]). The decision's time is
    /// `now_ms`, whatever the request says: the caller chooses the clock
    /// (the server's, or a trace's when replaying), never the request.
    /// Capabilities answer from `state` at that time.
    pub fn evaluate(&self, request: &Request, now_ms: i64, state: &Arc<dyn StateStore>) -> Decision {
        let (mut decision, effects) = self.evaluate_with_effects(request, now_ms, state);
        if decision.decision == VerdictKind::Allow {
            apply(&mut decision, effects);
        }
        decision
    }

    /// Like [`Bundle::evaluate`], with the allowing policies' effects kept
    /// apart (and not applied) whatever the decision.
    pub(crate) fn evaluate_with_effects(
        &self,
        request: &Request,
        now_ms: i64,
        state: &Arc<dyn StateStore>,
    ) -> (Decision, Effects) {
        let run = RunKey { pipeline: request.principal.pipeline.clone(), run: request.principal.run.clone() };
        let context = Arc::new(DecisionContext { now_ms, run, state: Arc::clone(state) });
        if let Some(served) = &self.environments
            && !served.contains(&request.principal.environment)
        {
            return (self.wrong_environment(request, served), Effects::default());
        }
        let known = match known_tools(request, state.as_ref()) {
            Ok(known) => known,
            Err(e) => return (self.state_unavailable(request, &e), Effects::default()),
        };
        let requests = Requests::new(Input { request, now_ms, known: &known });
        let evaluated: Vec<(PolicyResult, FailMode)> = self
            .policies
            .iter()
            .filter(|p| p.scope.matches(request))
            .map(|p| {
                let (outcome, elapsed_us) = match p.scope.listing_for(request) {
                    None => p.prepared.evaluate(&requests, &context),
                    Some(narrowed) => {
                        let input = Input { request: &narrowed, now_ms, known: &known };
                        p.prepared.evaluate(&Requests::new(input), &context)
                    }
                };
                let result = PolicyResult {
                    name: p.prepared.name().to_owned(),
                    version: p.version.clone(),
                    digest: p.prepared.info().digest.clone(),
                    enforced: p.mode == Mode::Enforce,
                    outcome,
                    elapsed_us,
                };
                (result, p.fail)
            })
            .collect();
        let combined = combine(evaluated.iter().map(|(result, fail)| Counted { result, fail: *fail }));
        let decision = Decision {
            id: request.id.clone(),
            decision: combined.decision,
            reasons: combined.reasons,
            escalation: combined.escalation,
            obligations: vec![],
            charges: vec![],
            breakers: vec![],
            bundle: BundleRef { name: self.name.clone(), version: self.version.clone() },
            policies: evaluated.into_iter().map(|(result, _)| result).collect(),
            approved_by: None,
        };
        (decision, combined.effects)
    }
}

impl Bundle {
    /// A decision that needed the tool registry, which the store could not
    /// give: fail closed.
    fn state_unavailable(&self, request: &Request, error: &arbiter_state::StateError) -> Decision {
        let reason = arbiter_types::DecisionReason {
            policy: "arbiter".to_owned(),
            code: STATE_UNAVAILABLE.to_owned(),
            message: format!("the tool registry cannot be read: {error}"),
        };
        let bundle = BundleRef { name: self.name.clone(), version: self.version.clone() };
        Decision::bare(request.id.clone(), VerdictKind::Deny, vec![reason], bundle)
    }

    fn wrong_environment(&self, request: &Request, served: &[arbiter_types::Environment]) -> Decision {
        let served: Vec<&str> = served.iter().map(|e| e.as_str()).collect();
        let reason = arbiter_types::DecisionReason {
            policy: "arbiter".to_owned(),
            code: "wrong_environment".to_owned(),
            message: format!(
                "bundle {} serves {}, not {}",
                self.name,
                served.join(", "),
                request.principal.environment.as_str()
            ),
        };
        let bundle = BundleRef { name: self.name.clone(), version: self.version.clone() };
        Decision::bare(request.id.clone(), VerdictKind::Deny, vec![reason], bundle)
    }
}

/// What the tool registry knows of the tools an MCP action names: the
/// listed tools, or the called one; nothing for other actions (no read).
fn known_tools(
    request: &Request,
    state: &dyn StateStore,
) -> Result<HashMap<String, KnownTool>, arbiter_state::StateError> {
    let (server, names): (&str, Vec<String>) = match &request.action {
        Action::ToolListing(listing) => (&listing.server, listing.tools.iter().map(|t| t.name.clone()).collect()),
        other => match other.tool_call() {
            Some(ToolCall { server: Some(server), tool, .. }) => (server, vec![tool.clone()]),
            _ => return Ok(HashMap::new()),
        },
    };
    let views = state.tool_views(server, &names)?;
    Ok(names
        .into_iter()
        .zip(views)
        .map(|(name, view)| {
            // The store keeps what arbiter parsed: a definition it cannot
            // read back is treated as never listed.
            let current = view.current.and_then(|c| {
                let value = serde_json::from_str(&c.definition).ok()?;
                ToolDefinition::from_mcp(&value).ok()
            });
            (name, KnownTool { current, first_digest: view.first.map(|f| f.digest), listed_by: view.listed_by })
        })
        .collect())
}

/// Makes a decision carry the effects it commits.
pub(crate) fn apply(decision: &mut Decision, effects: Effects) {
    decision.obligations = effects.obligations;
    decision.charges = effects.charges;
    decision.breakers = effects.breakers;
}

fn load_policy(
    engine: &PolicyEngine,
    entry: &ManifestPolicy,
    base: &Path,
    contract: Option<&str>,
) -> Result<BundlePolicy, String> {
    let path = base.join(&entry.component);
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read component {}: {e}", path.display()))?;
    let info = ComponentInfo::read(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut mismatches = Vec::new();
    let expected_digest = format!("sha256:{}", entry.sha256.to_ascii_lowercase());
    if info.digest != expected_digest {
        mismatches.push(format!(
            "digest mismatch: the manifest pins {expected_digest}, {} is {}",
            path.display(),
            info.digest
        ));
    }
    match &info.metadata {
        None => mismatches.push(
            "the component embeds no name and version (build it with arbiter-sdk and `arbiter build`)".to_owned(),
        ),
        Some(meta) => {
            if meta.name != entry.name {
                mismatches.push(format!("the manifest names it `{}`, the component says `{}`", entry.name, meta.name));
            }
            if meta.version != entry.version {
                mismatches
                    .push(format!("the manifest says version {}, the component says {}", entry.version, meta.version));
            }
        }
    }
    match check_contract(&info, &entry.capabilities) {
        Err(e) => mismatches.push(e.to_string()),
        Ok(version) => {
            if let Some(kind) = entry.scope.actions.iter().flatten().find(|k| !version.expresses(**k)) {
                mismatches.push(format!(
                    "scope.actions names {}, which contract {} cannot hand it",
                    kind.as_str(),
                    version.as_str()
                ));
            }
            let served = |v: &str| crate::CONTRACT_VERSIONS.iter().position(|s| *s == v);
            if let Some(bundle) = contract
                && served(version.as_str()) > served(bundle)
            {
                mismatches
                    .push(format!("targets contract {}, newer than the bundle's contract {bundle}", version.as_str()));
            }
        }
    }
    if entry.limits.fuel.is_some() && engine.config().limits.fuel.is_none() {
        mismatches.push("limits.fuel is set but the engine runs without fuel metering".to_owned());
    }
    if !mismatches.is_empty() {
        return Err(mismatches.join("; "));
    }
    let settings =
        serde_json::to_string(&entry.settings).map_err(|e| format!("settings cannot be encoded as JSON: {e}"))?;
    let limits = entry.limits.apply(engine.config().limits);
    let prepared =
        PreparedPolicy::load_inspected(engine, &entry.name, &bytes, info, &entry.capabilities, settings, limits)
            .map_err(|e: LoadError| e.to_string())?;
    let scope = ScopeMatcher::new(entry.scope.clone());
    Ok(BundlePolicy { prepared, version: entry.version.clone(), mode: entry.mode, fail: entry.fail, scope })
}
