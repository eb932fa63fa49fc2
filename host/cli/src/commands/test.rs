//! `arbiter test`: data-driven cases (request → expected decision and codes)
//! against a bundle or a single component.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use arbiter_engine::{Bundle, Decider, FailMode, Manifest};
use arbiter_types::{Decision, Request, VerdictKind};
use serde::Deserialize;

use crate::engine_args::EngineArgs;

/// Run test cases (JSON) against a bundle manifest (.toml) or a policy component (.wasm).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A bundle manifest, or a component tested alone with the cases file's `policy` settings.
    target: PathBuf,
    /// Case files.
    #[arg(required = true)]
    cases: Vec<PathBuf>,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    /// How to load a lone component: its settings and capabilities.
    #[serde(default)]
    policy: Option<LonePolicy>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LonePolicy {
    #[serde(default)]
    settings: toml::Table,
    #[serde(default)]
    capabilities: Vec<arbiter_engine::Capability>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    request: serde_json::Value,
    expect: Expectation,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub decision: VerdictKind,
    #[serde(default)]
    pub codes: Vec<String>,
    #[serde(default)]
    pub clamp_max_output_tokens: Option<u64>,
}

impl Expectation {
    /// `None` when the decision meets the expectation, else what differs.
    pub fn mismatch(&self, decision: &Decision) -> Option<String> {
        let mut expected_codes: Vec<&str> = self.codes.iter().map(String::as_str).collect();
        expected_codes.sort_unstable();
        let codes = decision.codes();
        let clamp = decision.clamp_max_output_tokens();
        (decision.decision != self.decision || codes != expected_codes || clamp != self.clamp_max_output_tokens).then(
            || {
                format!(
                    "expected {} {expected_codes:?}{}, got {} {codes:?}{}",
                    self.decision.as_str(),
                    clamp_text(self.clamp_max_output_tokens),
                    decision.decision.as_str(),
                    clamp_text(clamp)
                )
            },
        )
    }
}

fn clamp_text(clamp: Option<u64>) -> String {
    clamp.map(|n| format!(" clamp {n}")).unwrap_or_default()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let engine = args.engine.engine()?;
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in &args.cases {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: CaseFile =
            serde_json::from_str(&text).with_context(|| format!("invalid case file {}", path.display()))?;
        // Cases are independent: each file starts from empty state.
        let decider = Decider::in_memory(load_target(&engine, &args.target, file.policy)?);
        for case in file.cases {
            let request = Request::from_json_value(&case.request)
                .with_context(|| format!("{}: case `{}` has an invalid request", path.display(), case.name))?;
            // Cases are recorded requests: each runs at its own timestamp.
            let at = request.timestamp_ms.unwrap_or_else(arbiter_types::clock::now_ms);
            let decision = decider.decide(&request, at);
            match case.expect.mismatch(&decision) {
                None => {
                    passed += 1;
                    println!("ok    {}", case.name);
                }
                Some(difference) => {
                    failed += 1;
                    println!("FAIL  {}: {difference}", case.name);
                    for reason in &decision.reasons {
                        println!("        {}: {} ({})", reason.policy, reason.code, reason.message);
                    }
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn load_target(
    engine: &arbiter_engine::PolicyEngine,
    target: &Path,
    lone: Option<LonePolicy>,
) -> anyhow::Result<Bundle> {
    if target.extension().is_some_and(|e| e == "toml") {
        anyhow::ensure!(lone.is_none(), "`policy` in a case file applies only when testing a lone component");
        return Ok(Bundle::load(engine, target)?);
    }
    let bytes = std::fs::read(target).with_context(|| format!("reading {}", target.display()))?;
    let lone = lone.unwrap_or(LonePolicy { settings: toml::Table::new(), capabilities: vec![] });
    let manifest = Manifest::for_component(target, &bytes, lone.settings, lone.capabilities, FailMode::Closed);
    Ok(Bundle::from_manifest(engine, manifest, Path::new("."), target)?)
}
