//! `arbiter audit verify`: check an audit log's hash chain.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Audit log tools.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Verify the hash chain: reports the first edited, inserted, removed or torn record.
    Verify { log: PathBuf },
    /// Print the records (JSON lines) that match every given filter.
    Query {
        log: PathBuf,
        #[arg(long)]
        run: Option<String>,
        #[arg(long)]
        pipeline: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        /// allow, deny or escalate.
        #[arg(long)]
        verdict: Option<String>,
        /// A reason code.
        #[arg(long)]
        code: Option<String>,
        /// Records at or after this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// Records before this time.
        #[arg(long)]
        until: Option<String>,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Query { log, run, pipeline, agent, verdict, code, since, until } => {
            let text = std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
            let time = |t: &Option<String>| t.as_deref().map(arbiter_types::parse_day_or_rfc3339_ms).transpose();
            let (since, until) = (time(&since).context("--since")?, time(&until).context("--until")?);
            let mut shown = 0;
            for line in text.lines() {
                let Ok(record) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                let principal = &record["request"]["principal"];
                let is = |value: &serde_json::Value, wanted: &Option<String>| {
                    wanted.as_ref().is_none_or(|w| value == w.as_str())
                };
                let at = record["at"].as_str().and_then(|t| arbiter_types::parse_rfc3339_ms(t).ok());
                let codes = record["decision"]["reasons"].as_array().cloned().unwrap_or_default();
                let matches = is(&principal["run"], &run)
                    && is(&principal["pipeline"], &pipeline)
                    && is(&principal["agent"], &agent)
                    && is(&record["decision"]["decision"], &verdict)
                    && code.as_ref().is_none_or(|c| codes.iter().any(|r| r["code"] == c.as_str()))
                    && since.is_none_or(|s| at.is_some_and(|a| a >= s))
                    && until.is_none_or(|u| at.is_some_and(|a| a < u));
                if matches {
                    println!("{line}");
                    shown += 1;
                }
            }
            eprintln!("{shown} records");
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { log } => {
            let text = std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
            match arbiter_server::verify_audit_log(&text) {
                Ok(verified) => {
                    let torn =
                        if verified.torn_tail { " (a torn last record from a crash mid-write is ignored)" } else { "" };
                    println!("{}: {} records, chain intact{torn}", log.display(), verified.records);
                    Ok(ExitCode::SUCCESS)
                }
                Err(problem) => {
                    println!("{}: TAMPERED: {problem}", log.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
