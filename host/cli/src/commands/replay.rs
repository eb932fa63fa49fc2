//! `arbiter replay`: recorded traces through a bundle, on the trace clock.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use arbiter_engine::{Bundle, Decider, replay};
use serde_json::json;

use crate::engine_args::EngineArgs;

/// Replay JSONL traces (decide / usage / outcome events) through a bundle, each file on fresh state.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Bundle manifest (TOML).
    #[arg(long)]
    bundle: PathBuf,
    /// Trace files.
    #[arg(required = true)]
    traces: Vec<PathBuf>,
    /// Print only mismatches and the summary.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let engine = args.engine.engine()?;
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in &args.traces {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let decider = Decider::in_memory(Bundle::load(&engine, &args.bundle)?);
        let events = replay(&decider, &text).with_context(|| format!("replaying {}", path.display()))?;
        for event in events {
            match event.passed {
                Some(true) => passed += 1,
                Some(false) => failed += 1,
                None => {}
            }
            if !args.quiet || event.passed == Some(false) {
                let line = json!({"trace": path.display().to_string(), "line": event.line, "ok": event.passed, "result": event.result});
                println!("{line}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
