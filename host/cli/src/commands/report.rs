//! `arbiter report`: spend per pipeline, agent, team or model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use arbiter_state::{SpendDimension, StateStore};
use arbiter_types::parse_rfc3339_ms;

/// Report LLM spend (tokens, USD) from a state directory, by pipeline, agent, team or model.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// State directory (as given to `eval --state` or `serve --state`).
    #[arg(long)]
    state: PathBuf,
    /// Start (RFC 3339 or YYYY-MM-DD, UTC); whole UTC days are reported.
    #[arg(long)]
    since: String,
    /// End, exclusive [default: now].
    #[arg(long)]
    until: Option<String>,
    #[arg(long, value_enum, default_value = "pipeline")]
    by: By,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum By {
    Pipeline,
    Agent,
    Team,
    Model,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Table,
    Json,
}

fn parse_time(text: &str) -> anyhow::Result<i64> {
    let full = if text.len() == 10 { format!("{text}T00:00:00Z") } else { text.to_owned() };
    Ok(parse_rfc3339_ms(&full)?)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let since = parse_time(&args.since).context("--since")?;
    let until = match &args.until {
        Some(text) => parse_time(text).context("--until")?,
        None => crate::commands::eval::now_ms(),
    };
    let by = match args.by {
        By::Pipeline => SpendDimension::Pipeline,
        By::Agent => SpendDimension::Agent,
        By::Team => SpendDimension::Team,
        By::Model => SpendDimension::Model,
    };
    let state = crate::commands::eval::open_state(&args.state)?;
    let rows = state.spend(since, until, by)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Table => {
            let dimension = format!("{by:?}").to_lowercase();
            println!("{dimension:<32} {:>9} {:>12} {:>12} {:>10}", "requests", "tokens", "usd", "reconciled");
            for row in &rows {
                let usd = row.micro_usd as f64 / 1e6;
                println!("{:<32} {:>9} {:>12} {:>12.6} {:>10}", row.key, row.requests, row.tokens, usd, row.reconciled);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
