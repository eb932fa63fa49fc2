//! `arbiter readiness`: the production-readiness checklist, item by item.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use arbiter_engine::Manifest;
use arbiter_engine::lint::floating_pins;
use arbiter_engine::readiness::{Deployment, FAILURE_MODES, Identity, Score, assess};
use arbiter_server::{Credentials, Role};
use serde_json::json;

/// Score the production-readiness checklist (the guide's 10 items and trust boundaries) from what the bundle (and deployment) contain.
#[derive(clap::Args, Debug)]
pub struct Args {
    manifest: PathBuf,
    /// The server's deployment settings (TOML: state, audit_log, trusted_keys, admin_token,
    /// escalation_webhook, keep_bundles, credentials, anonymous, clock).
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
    let identity = match (&deployment, &args.server_config) {
        (Some(Deployment { credentials: Some(file), .. }), Some(config)) => {
            let path = config.parent().unwrap_or(std::path::Path::new(".")).join(file);
            Some(identity(&Credentials::load(&path)?))
        }
        _ => None,
    };
    let signed = arbiter_engine::signature::signature_path(&args.manifest).is_file();
    let items = assess(&manifest, signed, &floating_pins(&manifest), deployment.as_ref(), identity.as_ref());
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

/// What readiness needs to know of the credentials.
fn identity(credentials: &Credentials) -> Identity {
    let deciding: Vec<_> = credentials.iter().filter(|c| c.has(Role::Decide) || c.has(Role::Gateway)).collect();
    let mut mixed: Vec<String> =
        deciding.iter().filter(|c| c.has(Role::Admin) || c.has(Role::Approve)).map(|c| c.name.clone()).collect();
    mixed.sort();
    Identity {
        credentials: credentials.iter().count(),
        approvers: credentials.iter().filter(|c| c.has(Role::Approve)).count(),
        admins: credentials.iter().filter(|c| c.has(Role::Admin)).count(),
        mixed_roles: mixed,
        runs_pinned: deciding.iter().all(|c| c.grant().is_some_and(|g| g.pins_run())),
    }
}
