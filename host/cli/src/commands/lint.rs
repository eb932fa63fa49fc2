//! `arbiter lint`: review checks on a bundle, and its version bump.

use std::path::PathBuf;
use std::process::ExitCode;

use arbiter_engine::lint::{Bump, bump_between, changes, floating_pins};
use arbiter_engine::{Bundle, Manifest};
use serde_json::json;

use crate::engine_args::EngineArgs;

/// Check a bundle: it loads (schema, digests, embedded names and versions, settings), pins no floating
/// model alias, and — with --base — bumps its version enough for what changed (docs/lint.md).
#[derive(clap::Args, Debug)]
pub struct Args {
    manifest: PathBuf,
    /// The previous bundle manifest, to check the semver bump against.
    #[arg(long)]
    base: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    #[command(flatten)]
    engine: EngineArgs,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Text,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut findings: Vec<String> = Vec::new();
    let manifest = match Manifest::from_file(&args.manifest) {
        Ok(manifest) => Some(manifest),
        Err(e) => {
            findings.push(e.to_string());
            None
        }
    };
    if manifest.is_some()
        && let Err(e) = Bundle::load(&args.engine.engine()?, &args.manifest)
    {
        findings.push(e.to_string());
    }
    let mut report = json!({"manifest": args.manifest.display().to_string()});
    if let Some(manifest) = &manifest {
        findings.extend(floating_pins(manifest));
        if let Some(base_path) = &args.base {
            let base = Manifest::from_file(base_path)?;
            let changes = changes(&base, manifest);
            let required = changes.iter().map(|c| c.bump).max().unwrap_or(Bump::None);
            let actual = bump_between(&base.bundle.version, &manifest.bundle.version).unwrap_or(Bump::None);
            if actual < required || (required > Bump::None && actual == Bump::None) {
                findings.push(format!(
                    "version {} -> {} is a {actual} bump; these changes need at least {required}: {}",
                    base.bundle.version,
                    manifest.bundle.version,
                    changes
                        .iter()
                        .filter(|c| c.bump == required)
                        .map(|c| c.what.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ));
            }
            report["base"] = base_path.display().to_string().into();
            report["changes"] = serde_json::to_value(&changes)?;
            report["required_bump"] = serde_json::to_value(required)?;
            report["actual_bump"] = serde_json::to_value(actual)?;
        }
    }
    report["findings"] = json!(findings);
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => {
            for change in report["changes"].as_array().into_iter().flatten() {
                println!(
                    "change  {:<6} {}",
                    change["bump"].as_str().unwrap_or(""),
                    change["what"].as_str().unwrap_or("")
                );
            }
            for finding in &findings {
                println!("FINDING {finding}");
            }
            println!("{} finding{}", findings.len(), if findings.len() == 1 { "" } else { "s" });
        }
    }
    Ok(if findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
