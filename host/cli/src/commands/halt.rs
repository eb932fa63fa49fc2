//! `arbiter halt` and `arbiter resume`: the kill switch of a running
//! server (which shares it with every replica on the same state).

use std::process::ExitCode;

use serde_json::json;

use super::deploy::ServerArgs;

/// Halt a pipeline, agent, team, run or everything: matching decisions are denied (`halted`) until resumed.
#[derive(clap::Args, Debug)]
pub struct HaltArgs {
    /// `all`, `pipeline:<name>`, `agent:<name>`, `team:<name>` or `run:<name>` (names exact, as in requests).
    scope: String,
    /// Why, shown in every denied decision and in the audit log.
    #[arg(long)]
    reason: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Lift a halt (needs the admin role).
#[derive(clap::Args, Debug)]
pub struct ResumeArgs {
    /// The scope exactly as halted.
    scope: String,
    #[command(flatten)]
    server: ServerArgs,
}

pub fn halt(args: HaltArgs) -> anyhow::Result<ExitCode> {
    let body = json!({"scope": args.scope, "reason": args.reason});
    let halted = args.server.post("/v1/halts", body)?;
    println!(
        "halted {} by {}: {}",
        halted["halted"].as_str().unwrap_or("?"),
        halted["by"].as_str().unwrap_or("?"),
        args.reason
    );
    Ok(ExitCode::SUCCESS)
}

pub fn resume(args: ResumeArgs) -> anyhow::Result<ExitCode> {
    args.server.post("/v1/halts/resume", json!({"scope": args.scope}))?;
    println!("resumed {}", args.scope);
    Ok(ExitCode::SUCCESS)
}
