//! `arbiter inspect`: what a component is and what it may touch.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use arbiter_engine::{ComponentInfo, Expected, Grants, Identity, ImportKind, classify_import};

/// Show a policy component's name, version, contract, capabilities, exports, size, digest and review
/// description (what its settings mean, what it guards).
#[derive(clap::Args, Debug)]
pub struct Args {
    component: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Text,
    Json,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.component).with_context(|| format!("reading {}", args.component.display()))?;
    let info = ComponentInfo::read(&bytes).with_context(|| format!("inspecting {}", args.component.display()))?;
    let capabilities: Vec<String> = info
        .imports
        .iter()
        .map(|import| match classify_import(import) {
            ImportKind::Capability { capability, .. } => capability.name().to_owned(),
            ImportKind::ContractTypes { .. } => "(contract types)".to_owned(),
            ImportKind::OtherContractVersion(v) => format!("REFUSED: {import} (contract {v})"),
            ImportKind::Foreign => format!("REFUSED: {import}"),
        })
        .collect();
    // What the loader would refuse whatever the bundle grants: the same
    // check `arbiter build` and loading make.
    let problems: Vec<String> =
        match arbiter_engine::check(&info, &Expected { grants: Grants::Any, identity: Identity::Embedded }) {
            Ok(_) => vec![],
            Err(refused) => refused.iter().map(ToString::to_string).collect(),
        };
    // What a bundle may scope it to.
    let actions: Vec<&str> = info
        .contract_version
        .as_deref()
        .and_then(arbiter_engine::action_kinds)
        .unwrap_or_default()
        .into_iter()
        .map(|k| k.as_str())
        .collect();
    match args.format {
        Format::Json => {
            let mut value = serde_json::to_value(&info)?;
            value["capabilities"] = serde_json::json!(capabilities);
            value["actions"] = serde_json::json!(actions);
            value["problems"] = serde_json::json!(problems);
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        Format::Text => {
            let (name, version, sdk) = match &info.metadata {
                Some(m) => (m.name.as_str(), m.version.as_str(), m.sdk.as_str()),
                None => ("(none embedded)", "(none embedded)", "?"),
            };
            println!("component     {}", args.component.display());
            println!("name          {name}");
            println!("version       {version}");
            println!("sdk           {sdk}");
            println!("contract      arbiter:policy@{}", info.contract_version.as_deref().unwrap_or("(none)"));
            println!(
                "actions       {}",
                if actions.is_empty() { "(none: contract not served)".to_owned() } else { actions.join(", ") }
            );
            println!(
                "capabilities  {}",
                if capabilities.is_empty() { "(none)".to_owned() } else { capabilities.join(", ") }
            );
            for (i, problem) in problems.iter().enumerate() {
                println!("{:<13} {problem}", if i == 0 { "REFUSED" } else { "" });
            }
            println!("imports       {}", info.imports.join(", "));
            println!("exports       {}", info.exports.join(", "));
            println!("size          {} bytes", info.size_bytes);
            println!("digest        {}", info.digest);
            match &info.review {
                None => println!("review        (none embedded: lint judges every settings change as undescribed)"),
                Some(review) => {
                    let guards: Vec<&str> = review.guards.keys().map(|g| g.name()).collect();
                    println!(
                        "guards        {}",
                        if guards.is_empty() { "(none)".to_owned() } else { guards.join(", ") }
                    );
                    if let Some(budgets) = &review.budgets {
                        println!("budgets       scopes at {}, windows at {}", budgets.scopes, budgets.windows);
                    }
                    let mut label = "settings";
                    for (path, setting) in &review.settings {
                        let default = setting.default.as_ref().map(|d| format!(" (default {d})")).unwrap_or_default();
                        println!("{label:<13} {:<36} {}{default}", path.to_string(), setting.kind.describe());
                        label = "";
                    }
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
