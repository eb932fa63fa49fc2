//! `arbiter build`: policy crates to checked Wasm components.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Build policy crates into Wasm components (wasm32-unknown-unknown, no WASI).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Policy crate directories.
    #[arg(required = true)]
    crates: Vec<PathBuf>,
    /// Where the components go, as <package>.wasm.
    #[arg(long, default_value = "components")]
    out: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    for dir in &args.crates {
        let built =
            arbiter_build::build_policy(dir, &args.out).with_context(|| format!("building {}", dir.display()))?;
        let meta = built.info.metadata.as_ref().map(|m| format!("{} {}", m.name, m.version)).unwrap_or_default();
        println!(
            "{meta}  {} bytes  {}  {}  imports: [{}]",
            built.info.size_bytes,
            built.info.digest,
            built.path.display(),
            built.info.imports.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
