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
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Verify { log } => {
            let text = std::fs::read_to_string(&log).with_context(|| format!("reading {}", log.display()))?;
            match arbiter_server::verify_audit_log(&text) {
                Ok(count) => {
                    println!("{}: {count} records, chain intact", log.display());
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
