//! A loaded bundle: its policies prepared and ready to decide requests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::collections::HashMap;

use arbiter_component::{ContractVersion, Expected, Grants, Identity, IdentitySource, check};
use arbiter_state::{DecisionReads, RunKey, StateStore};
use arbiter_types::{BundleRef, Decision, PolicyResult, Request, ToolDefinition, VerdictKind};
use ed25519_dalek::VerifyingKey;

use crate::combine::{Counted, Effects, STATE_UNAVAILABLE, combine};
use crate::component_file::ComponentFile;
use crate::contract::{Input, KnownTool, Requests};
use crate::engine::PolicyEngine;
use crate::forecast::registry_names;
use crate::load_problem::{LoadProblem, PolicyProblem};
use crate::manifest::{FailMode, Manifest, ManifestError, ManifestPolicy, Mode};
use crate::manifest_problem::ManifestProblem;
use crate::policy::PreparedPolicy;
use crate::sandbox::DecisionContext;
use crate::scope::ScopeMatcher;
use crate::signature::{SignatureError, verify_manifest};

/// Why a bundle cannot be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The manifest cannot be read or is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Policies of a valid manifest cannot be loaded: every problem found.
    #[error("bundle {manifest} cannot be loaded:\n{}", list(.problems))]
    Policies {
        /// The manifest.
        manifest: PathBuf,
        /// Each problem of each policy, in manifest order.
        problems: Vec<PolicyProblem>,
    },
    /// The manifest's signature does not verify.
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

/// The run a request belongs to, as history is kept.
pub(crate) fn run_of(request: &Request) -> RunKey {
    RunKey { pipeline: request.principal.pipeline.clone(), run: request.principal.run.clone() }
}

/// A loaded bundle: every policy compiled, checked and ready to evaluate;
/// immutable, shared by the decisions that use it.
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
            problems: vec![ManifestProblem::NotUtf8],
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
                Err(found) => problems
                    .extend(found.into_iter().map(|problem| PolicyProblem { policy: entry.name.clone(), problem })),
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

    /// The bundle's `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bundle's semantic version.
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
        let reads = Arc::new(DecisionReads::direct(Arc::clone(state)));
        let (mut decision, effects) = self.evaluate_with_effects(request, now_ms, &reads);
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
        state: &Arc<DecisionReads>,
    ) -> (Decision, Effects) {
        let context = Arc::new(DecisionContext { now_ms, run: run_of(request), state: Arc::clone(state) });
        if let Some(served) = &self.environments
            && !served.contains(&request.principal.environment)
        {
            return (self.wrong_environment(request, served), Effects::default());
        }
        let known = match known_tools(request, state) {
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
        let bundle = BundleRef { name: self.name.clone(), version: self.version.clone() };
        let mut decision = Decision::bare(request.id.clone(), combined.decision, combined.reasons, bundle);
        decision.escalation = combined.escalation;
        decision.policies = evaluated.into_iter().map(|(result, _)| result).collect();
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
    state: &DecisionReads,
) -> Result<HashMap<String, KnownTool>, arbiter_state::StateError> {
    let Some((server, names)) = registry_names(request) else { return Ok(HashMap::new()) };
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

/// Loads one policy of a manifest, or says everything wrong with it that
/// can be told before compiling it.
fn load_policy(
    engine: &PolicyEngine,
    entry: &ManifestPolicy,
    base: &Path,
    contract: Option<&str>,
) -> Result<BundlePolicy, Vec<LoadProblem>> {
    let file = ComponentFile::read(entry, base).map_err(|e| vec![LoadProblem::File(e)])?;
    let mut problems: Vec<LoadProblem> = file.check_pinned(entry).err().map(LoadProblem::File).into_iter().collect();
    let ComponentFile { bytes, info, .. } = file;
    let identity = Identity::Is { name: &entry.name, version: &entry.version, stated_by: IdentitySource::Manifest };
    let expected = Expected { grants: Grants::Only(&entry.capabilities), identity };
    let version = match check(&info, &expected) {
        Ok(version) => Some(version),
        Err(refused) => {
            problems.extend(refused.0.into_iter().map(LoadProblem::Component));
            None
        }
    };
    if let Some(version) = version {
        problems.extend(contract_problems(entry, version, contract));
    }
    if entry.limits.fuel.is_some() && engine.config().limits.fuel.is_none() {
        problems.push(LoadProblem::FuelWithoutMetering);
    }
    let Some(version) = version.filter(|_| problems.is_empty()) else {
        return Err(problems);
    };
    let settings =
        serde_json::to_string(&entry.settings).map_err(|e| vec![LoadProblem::SettingsNotJson(e.to_string())])?;
    let limits = entry.limits.apply(engine.config().limits);
    let prepared =
        PreparedPolicy::load_checked(engine, &entry.name, &bytes, info, version, &entry.capabilities, settings, limits)
            .map_err(|e| vec![LoadProblem::Load(e)])?;
    let scope = ScopeMatcher::new(entry.scope.clone());
    Ok(BundlePolicy { prepared, version: entry.version.clone(), mode: entry.mode, fail: entry.fail, scope })
}

/// What the policy's contract `version` cannot do that the manifest asks
/// of it: an action kind its scope names, or a bundle contract it is newer
/// than.
fn contract_problems(entry: &ManifestPolicy, version: ContractVersion, bundle: Option<&str>) -> Vec<LoadProblem> {
    let mut problems = Vec::new();
    if let Some(&kind) = entry.scope.actions.iter().flatten().find(|k| !version.expresses(**k)) {
        problems.push(LoadProblem::ActionNotExpressible { kind, contract: version });
    }
    // The manifest check admits only served versions as the bundle's.
    if let Some(bundle) = bundle
        && ContractVersion::of(bundle).is_some_and(|b| version > b)
    {
        problems.push(LoadProblem::NewerThanBundle { contract: version, bundle: bundle.to_owned() });
    }
    problems
}
