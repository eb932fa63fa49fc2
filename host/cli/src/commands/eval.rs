//! `arbiter eval`: one request through a bundle.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use arbiter_engine::{Bundle, Decider};
use arbiter_types::Request;

use crate::clock_args::ClockArg;
use crate::engine_args::EngineArgs;
use crate::state_args::StateArgs;

/// Evaluate a decide request (JSON, shared/DESIGN.md §8) against a bundle and print the decision.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Bundle manifest (TOML).
    #[arg(long)]
    bundle: PathBuf,
    /// Request file, or `-` for standard input.
    request: PathBuf,
    /// Successive evaluations share state (budgets, breakers, history,
    /// spend) kept where `--state` says; in memory for this one call otherwise.
    #[command(flatten)]
    state: StateArgs,
    /// Decide at the server's clock (now), or at the request's own
    /// `timestamp` (recorded requests, demos).
    #[arg(long, value_enum, default_value = "server")]
    clock: ClockArg,
    /// Output format: the whole decision, or one line per request.
    #[arg(long, value_enum, default_value = "json")]
    format: Format,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Json,
    Brief,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let body = read_input(&args.request)?;
    let request =
        Request::from_json_slice(&body).with_context(|| format!("invalid request {}", args.request.display()))?;
    let engine = args.engine.engine()?;
    let bundle = Bundle::load(&engine, &args.bundle)?;
    let decider = Decider::new(Arc::new(bundle), args.state.open()?);
    let at = match args.clock {
        ClockArg::Server => arbiter_types::clock::now_ms(),
        ClockArg::Request => request.timestamp_ms.unwrap_or_else(arbiter_types::clock::now_ms),
    };
    let decision = decider.decide(&request, at);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&decision)?),
        Format::Brief => {
            let reasons: Vec<String> =
                decision.reasons.iter().map(|r| format!("{} ({}): {}", r.code, r.policy, r.message)).collect();
            println!("{:<8} {:<12} {}", decision.decision.as_str(), decision.id, reasons.join("; "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn read_input(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::stdin().read_to_end(&mut body).context("reading standard input")?;
        Ok(body)
    } else {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    }
}
