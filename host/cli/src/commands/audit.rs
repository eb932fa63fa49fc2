//! `arbiter audit verify`: check an audit log's chain and signed
//! checkpoints; `arbiter audit query`: filter its records.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use arbiter_server::{AuditState, Verified, VerifyError, audit_state_path, verify_audit_log};

/// Audit log tools.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Verify the hash chain and, with --key, the signed checkpoints: reports the first edited,
    /// inserted, removed or torn record, a forged or missing checkpoint, a cut the state file
    /// reveals, and how many records at the end no signature covers.
    Verify {
        log: PathBuf,
        /// Public key (`arbiter keygen`'s .pub) that may sign checkpoints (repeatable). Without
        /// one the chain is checked but nothing is authenticated.
        #[arg(long = "key")]
        keys: Vec<PathBuf>,
        /// The log's state file (a copy kept elsewhere is better evidence); by default
        /// <LOG>.state, when it exists.
        #[arg(long)]
        state: Option<PathBuf>,
    },
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
        Command::Verify { log, keys, state } => verify(&log, &keys, state.as_deref()),
    }
}

fn verify(log: &Path, keys: &[PathBuf], state: Option<&Path>) -> anyhow::Result<ExitCode> {
    let keys = keys.iter().map(|k| arbiter_engine::signature::read_public_key(k)).collect::<Result<Vec<_>, _>>()?;
    let explicit = state.is_some();
    let state_file = state.map_or_else(|| audit_state_path(log), Path::to_owned);
    let state = AuditState::read(&state_file)?;
    anyhow::ensure!(state.is_some() || !explicit, "no state file {}", state_file.display());
    let text = match std::fs::read_to_string(log) {
        Ok(text) => text,
        Err(e) => {
            let evidence = state.as_ref().map_or_else(String::new, |s| {
                format!("; its state file {} names record {} (at {})", state_file.display(), s.seq(), s.at())
            });
            anyhow::bail!("cannot read {}: {e}{evidence}", log.display());
        }
    };
    let verified = match verify_audit_log(&text, &keys, state.as_ref()) {
        Ok(verified) => verified,
        Err(problem) => {
            let verdict =
                if matches!(problem, VerifyError::NoCheckpoint { .. }) { "UNAUTHENTICATED" } else { "TAMPERED" };
            println!("{}: {verdict}: {problem}", log.display());
            return Ok(ExitCode::FAILURE);
        }
    };
    for line in report(&verified, !keys.is_empty(), &state_file) {
        println!("{}: {line}", log.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// What a log that verified proves, and what it does not.
fn report(verified: &Verified, keyed: bool, state_file: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    if !keyed {
        lines.push(format!(
            "{} records, chain intact but unauthenticated (no --key): a rewrite with a recomputed chain would pass",
            verified.records
        ));
        return lines;
    }
    lines.push(format!("{} records, chain intact", verified.records));
    if let Some(through) = verified.signed_through {
        lines.push(format!("signed through record {through} ({} checkpoints verified)", verified.checkpoints));
    }
    lines.push(match verified.unsigned_tail() {
        0 => "no unsigned tail: every record is covered by a signature".to_owned(),
        n => {
            format!("unsigned tail: {n} records after the last checkpoint could be cut or rewritten without detection")
        }
    });
    lines.push(match verified.state_record {
        Some(record) => format!("state file {}: its record {record} is in the log", state_file.display()),
        None => format!(
            "no state file {}: a cut that removes checkpoints is detected only past a promised one",
            state_file.display()
        ),
    });
    if verified.torn_tail {
        lines.push("a torn last record (a crash mid-write, never acknowledged) is ignored".to_owned());
    }
    lines
}
