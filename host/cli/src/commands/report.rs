//! `arbiter report`: spend per pipeline, agent, team or model.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use arbiter_state::{ModelPrice, SpendDimension, aggregate};
use arbiter_types::parse_day_or_rfc3339_ms;

use crate::state_args::StateArgs;

/// Report LLM spend (tokens, USD) from a state directory, by pipeline, agent, team or model.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    state: StateArgs,
    /// Start (RFC 3339 or YYYY-MM-DD, UTC); whole UTC days are reported.
    #[arg(long)]
    since: String,
    /// End, exclusive [default: now].
    #[arg(long)]
    until: Option<String>,
    #[arg(long, value_enum, default_value = "pipeline")]
    by: By,
    /// Price table (TOML: `[models."<id>"] input_per_mtok = 3.0, output_per_mtok = 15.0`)
    /// to cost the tokens in USD.
    #[arg(long)]
    prices: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceTable {
    models: BTreeMap<String, ModelPrice>,
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

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let since = parse_day_or_rfc3339_ms(&args.since).context("--since")?;
    let until = match &args.until {
        Some(text) => parse_day_or_rfc3339_ms(text).context("--until")?,
        None => arbiter_types::clock::now_ms(),
    };
    let by = match args.by {
        By::Pipeline => SpendDimension::Pipeline,
        By::Agent => SpendDimension::Agent,
        By::Team => SpendDimension::Team,
        By::Model => SpendDimension::Model,
    };
    let prices = match &args.prices {
        None => BTreeMap::new(),
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str::<PriceTable>(&text)
                .with_context(|| format!("invalid price table {}", path.display()))?
                .models
        }
    };
    anyhow::ensure!(args.state.is_set(), "--state is required: the directory or Redis URL `serve --state` uses");
    let state = args.state.open()?;
    let rows = aggregate(&state.spend(since, until)?, by, &prices);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        Format::Table => {
            let dimension = format!("{by:?}").to_lowercase();
            println!(
                "{dimension:<30} {:>8} {:>10} {:>12} {:>12} {:>12} {:>12}",
                "requests", "reconciled", "prompt", "output", "usd_priced", "usd_charged"
            );
            for r in &rows {
                println!(
                    "{:<30} {:>8} {:>10} {:>12} {:>12} {:>12.6} {:>12.6}",
                    r.key,
                    r.requests,
                    r.reconciled,
                    r.prompt_tokens,
                    r.output_tokens,
                    r.priced_usd,
                    r.charged_micro_usd as f64 / 1e6
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
