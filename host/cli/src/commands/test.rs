//! `arbiter test`: data-driven cases (request → expected decision and codes)
//! against a bundle or a single component.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use arbiter_engine::{Bundle, Decider, lone_policy_bundle};
use arbiter_types::cases::{CaseFile, LonePolicy};

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

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let engine = args.engine.engine()?;
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in &args.cases {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file = CaseFile::from_json(&text)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("invalid case file {}", path.display()))?;
        // Cases are independent: each file starts from empty state.
        let decider = Decider::in_memory(load_target(&engine, &args.target, file.policy)?);
        for case in file.cases {
            let request = case
                .request()
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
    Ok(lone_policy_bundle(engine, target, &lone.unwrap_or_default())?)
}
