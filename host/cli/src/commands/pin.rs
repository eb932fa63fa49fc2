//! `arbiter pin`: record the digests of freshly built components in a
//! bundle manifest, keeping its comments and layout.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use arbiter_engine::ComponentInfo;

/// Update each policy's `sha256` in a bundle manifest from its component file.
#[derive(clap::Args, Debug)]
pub struct Args {
    manifest: PathBuf,
    /// Only report what would change; exit 1 if anything would.
    #[arg(long)]
    check: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(&args.manifest).with_context(|| format!("reading {}", args.manifest.display()))?;
    let mut doc: toml_edit::DocumentMut =
        text.parse().with_context(|| format!("parsing {}", args.manifest.display()))?;
    let base = args.manifest.parent().map(PathBuf::from).unwrap_or_default();
    let Some(policies) = doc.get_mut("policies").and_then(|p| p.as_array_of_tables_mut()) else {
        bail!("{} has no [[policies]]", args.manifest.display());
    };
    let mut changed = 0;
    for policy in policies.iter_mut() {
        let name = policy.get("name").and_then(|v| v.as_str()).unwrap_or("?").to_owned();
        let component = policy
            .get("component")
            .and_then(|v| v.as_str())
            .with_context(|| format!("policy `{name}` has no `component`"))?;
        let path = base.join(component);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let info = ComponentInfo::read(&bytes).with_context(|| format!("inspecting {}", path.display()))?;
        let digest = info.digest.trim_start_matches("sha256:").to_owned();
        if let Some(meta) = &info.metadata {
            let version = policy.get("version").and_then(|v| v.as_str()).unwrap_or("");
            if meta.version != version {
                eprintln!(
                    "note: `{name}` is version {version} in the manifest but {} in {}",
                    meta.version,
                    path.display()
                );
            }
        }
        if policy.get("sha256").and_then(|v| v.as_str()) != Some(digest.as_str()) {
            changed += 1;
            println!("{name}: sha256 {digest}");
            policy["sha256"] = toml_edit::value(digest);
        }
    }
    if changed == 0 {
        println!("all digests up to date");
        return Ok(ExitCode::SUCCESS);
    }
    if args.check {
        return Ok(ExitCode::FAILURE);
    }
    std::fs::write(&args.manifest, doc.to_string()).with_context(|| format!("writing {}", args.manifest.display()))?;
    Ok(ExitCode::SUCCESS)
}
