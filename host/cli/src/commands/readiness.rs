//! `arbiter readiness`: the production-readiness checklist, item by item.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use arbiter_engine::lint::floating_pins;
use arbiter_engine::readiness::{Basis, Deployment, Score, Server, ServerFacts, assess, failure_modes};
use arbiter_engine::{Manifest, declarations};
use arbiter_server::Credentials;
use serde_json::json;

use super::deploy::admin_call;

/// Score the production-readiness checklist (the guide's 10 items and trust boundaries) from evidence.
///
/// Policies count for what their components declare they guard (failure modes, budget scopes, the
/// settings each guard needs) and what their settings hold, never for their names; a component that
/// is not the one the manifest pins declares nothing. Server items come from the live server's
/// effective settings (--server, read through the admin API: "observed") or from a deployment file
/// (--server-config: "self-declared"); each item says which.
#[derive(clap::Args, Debug)]
pub struct Args {
    manifest: PathBuf,
    /// A running server's HTTP address: its effective settings are read from
    /// `GET /v1/admin/settings` with the admin token.
    #[arg(long, conflicts_with = "server_config")]
    server: Option<String>,
    /// Admin token for --server.
    #[arg(long, env = "ARBITER_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The server's deployment settings, self-declared (TOML: state, audit_log, trusted_keys,
    /// admin_token, escalation_webhook, keep_bundles, credentials, anonymous, clock).
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
    let server = match (&args.server, &args.server_config) {
        (Some(url), _) => Some(observe(url, args.token.as_deref())?),
        (None, Some(path)) => Some(self_declared(path)?),
        (None, None) => None,
    };
    let dir = args.manifest.parent().map(Path::to_owned).unwrap_or_default();
    let declared = declarations(&manifest, &dir);
    let signed = arbiter_engine::signature::signature_path(&args.manifest).is_file();
    let items = assess(&manifest, &declared, signed, &floating_pins(&manifest), server.as_ref());
    match args.format {
        Format::Json => {
            let modes: Vec<_> = failure_modes(&manifest, &declared)
                .into_iter()
                .map(|(mode, policies)| json!({"failure_mode": mode, "policies": policies}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&json!({"items": items, "failure_modes": modes}))?);
        }
        Format::Text => {
            for (n, item) in items.iter().enumerate() {
                let basis = match item.basis {
                    Basis::Bundle => String::new(),
                    other => format!(" ({})", other.label()),
                };
                println!("{:>2}. {:<26} {}{basis}", n + 1, item.item, item.score.label());
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

/// The live server's effective settings.
fn observe(url: &str, token: Option<&str>) -> anyhow::Result<Server> {
    let token = token.context("--server needs the admin token (--token or ARBITER_ADMIN_TOKEN)")?;
    let value = admin_call(url, token, hyper::Method::GET, "/v1/admin/settings", None)
        .with_context(|| format!("reading the effective settings of {url}"))?;
    let facts: ServerFacts = serde_json::from_value(value)
        .with_context(|| format!("{url} answered /v1/admin/settings with something other than its settings"))?;
    Ok(Server { facts, basis: Basis::Observed })
}

/// A deployment file's claims, with the credentials file it names.
fn self_declared(path: &Path) -> anyhow::Result<Server> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let deployment: Deployment =
        toml::from_str(&text).with_context(|| format!("invalid deployment settings {}", path.display()))?;
    let identity = match &deployment.credentials {
        Some(file) => {
            let credentials = path.parent().unwrap_or(Path::new(".")).join(file);
            Some(Credentials::load(&credentials)?.identity())
        }
        None => None,
    };
    Ok(Server { facts: deployment.facts(identity), basis: Basis::SelfDeclared })
}
