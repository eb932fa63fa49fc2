//! `arbiter readiness`: the production-readiness checklist, item by item.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use arbiter_engine::Manifest;
use arbiter_engine::lint::floating_pins;
use arbiter_engine::readiness::{Deployment, FAILURE_MODES, Score, assess};
use serde_json::json;

/// Score the 10-item production-readiness checklist from what the bundle (and deployment) contain.
#[derive(clap::Args, Debug)]
pub struct Args {
    manifest: PathBuf,
    /// The server's deployment settings (TOML: state, audit_log, trusted_keys, admin_token,
    /// escalation_webhook, keep_bundles).
    #[arg(long)]
    server_config: Option<PathBuf>,
    /// Exit 1 when any item scores below this.
    #[arg(long, value_enum)]
    fail_below: Option<Threshold>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Threshold {
    NeedsWork,
    Ready,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Text,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let manifest = Manifest::from_file(&args.manifest)?;
    let deployment: Option<Deployment> = match &args.server_config {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            Some(toml::from_str(&text).with_context(|| format!("invalid deployment settings {}", path.display()))?)
        }
        None => None,
    };
    let signed = arbiter_engine::signature::signature_path(&args.manifest).is_file();
    let items = assess(&manifest, signed, &floating_pins(&manifest), deployment.as_ref());
    match args.format {
        Format::Json => {
            let modes: Vec<_> =
                FAILURE_MODES.iter().map(|(mode, policy)| json!({"failure_mode": mode, "policy": policy})).collect();
            println!("{}", serde_json::to_string_pretty(&json!({"items": items, "failure_modes": modes}))?);
        }
        Format::Text => {
            for (n, item) in items.iter().enumerate() {
                println!("{:>2}. {:<26} {}", n + 1, item.item, item.score.label());
                for evidence in &item.evidence {
                    println!("      - {evidence}");
                }
            }
        }
    }
    let threshold = match args.fail_below {
        None => return Ok(ExitCode::SUCCESS),
        Some(Threshold::NeedsWork) => Score::NeedsWork,
        Some(Threshold::Ready) => Score::Ready,
    };
    Ok(if items.iter().all(|i| i.score >= threshold) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
