//! `arbiter lint`: review checks on a bundle, and its version bump.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use arbiter_engine::lint::{Bump, Effect, bump_between, changes, floating_pins};
use arbiter_engine::review::Review;
use arbiter_engine::{Bundle, Manifest, declarations};
use serde_json::json;

use crate::engine_args::EngineArgs;

/// Check a bundle: it loads (schema, digests, embedded names and versions, settings), pins no floating
/// model alias, and — with --base — bumps its version enough for what changed (docs/lint.md).
///
/// Settings changes are judged by the review description each policy's component embeds (what each
/// setting is: allow-list, deny-list, limit, detector switch, redesign, text) and reported as
/// tightening or loosening; a setting no description covers needs at least MINOR.
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
            let reviews = reviews(manifest, &args.manifest, &base, base_path);
            let changes = changes(&base, manifest, &reviews);
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
    let loosening =
        report["changes"].as_array().into_iter().flatten().filter(|c| c["effect"] == json!(Effect::Loosens)).count();
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => {
            for change in report["changes"].as_array().into_iter().flatten() {
                println!(
                    "change  {:<6} {:<9} {} [{}]",
                    change["bump"].as_str().unwrap_or("").to_uppercase(),
                    change["effect"].as_str().unwrap_or(""),
                    change["what"].as_str().unwrap_or(""),
                    change["rule"].as_str().unwrap_or("")
                );
            }
            for finding in &findings {
                println!("FINDING {finding}");
            }
            if loosening > 0 {
                println!("{loosening} change{} loosen a guardrail", if loosening == 1 { "" } else { "s" });
            }
            println!("{} finding{}", findings.len(), if findings.len() == 1 { "" } else { "s" });
        }
    }
    Ok(if findings.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The description each policy's settings are judged by: the new
/// component's, or the base's when the new one declares none or cannot be
/// read (a load finding already says why).
fn reviews(manifest: &Manifest, path: &Path, base: &Manifest, base_path: &Path) -> BTreeMap<String, Review> {
    let dir = |p: &Path| p.parent().map(Path::to_owned).unwrap_or_default();
    let mut reviews: BTreeMap<String, Review> = declarations(base, &dir(base_path))
        .into_iter()
        .filter_map(|(name, declared)| Some((name, declared.ok()??)))
        .collect();
    for (name, declared) in declarations(manifest, &dir(path)) {
        if let Ok(Some(review)) = declared {
            reviews.insert(name, review);
        }
    }
    reviews
}
