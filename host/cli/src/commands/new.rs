//! `arbiter new`: a policy crate that builds, tests and runs on its own,
//! outside this repository: the policy, its native tests, its review
//! description and its cases (run natively and by `arbiter test`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

/// The SDK this `arbiter` was built with (its source tree).
const BUILT_WITH_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../guest-sdk");

const TEMPLATES: [(&str, &str); 5] = [
    ("Cargo.toml", include_str!("../../templates/policy/Cargo.toml.tmpl")),
    ("src/lib.rs", include_str!("../../templates/policy/lib.rs.tmpl")),
    ("review.toml", include_str!("../../templates/policy/review.toml")),
    ("cases.json", include_str!("../../templates/policy/cases.json")),
    (".gitignore", include_str!("../../templates/policy/gitignore")),
];

/// Create a new policy crate in DIR (which must not exist or be empty).
#[derive(clap::Args, Debug)]
pub struct Args {
    dir: PathBuf,
    /// The policy's name [default: DIR's name]: lowercase letters, digits
    /// and `-`, starting with a letter.
    #[arg(long)]
    name: Option<String>,
    /// The `arbiter-sdk` crate to depend on [default: the one this arbiter
    /// was built from].
    #[arg(long)]
    sdk: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let name = match &args.name {
        Some(name) => name.clone(),
        None => args.dir.file_name().and_then(|n| n.to_str()).context("DIR has no name: pass --name")?.to_owned(),
    };
    check_name(&name)?;
    let sdk = args.sdk.clone().unwrap_or_else(|| PathBuf::from(BUILT_WITH_SDK));
    let sdk = std::fs::canonicalize(&sdk)
        .ok()
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .with_context(|| format!("no arbiter-sdk crate at {}: pass --sdk <path to guest-sdk>", sdk.display()))?;
    if args.dir.exists() && std::fs::read_dir(&args.dir)?.next().is_some() {
        bail!("{} exists and is not empty", args.dir.display());
    }
    let sdk_text = sdk.to_str().context("the SDK's path is not UTF-8")?;
    for (file, template) in TEMPLATES {
        let text = template
            .replace("{{name}}", &name)
            .replace("{{type}}", &type_name(&name))
            .replace("{{sdk}}", &sdk_text.replace('\\', "/"));
        write(&args.dir.join(file), &text)?;
    }
    println!("created policy `{name}` in {}", args.dir.display());
    println!("  cargo test                                        # unit tests and cases.json, natively");
    println!("  arbiter build . --out components");
    println!("  arbiter test components/{name}.wasm cases.json   # the component, in the real engine");
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// A crate name that is also a component and bundle name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && name.len() <= 64;
    if !valid {
        bail!("`{name}` is not a policy name: lowercase letters, digits and `-`, starting with a letter (64 at most)");
    }
    Ok(())
}

/// `deny-drops` → `DenyDrops`.
fn type_name(name: &str) -> String {
    name.split('-')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect::<String>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["deny-drops", "p", "pii2-scan"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Deny", "2fa", "deny_drops", "deny-", "dény", "a b", "../x", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(type_name("deny-drops"), "DenyDrops");
        assert_eq!(type_name("p2-x"), "P2X");
    }
}
