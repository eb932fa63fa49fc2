//! `arbiter credential`: issue an API key and the credentials-file entry
//! that names it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use arbiter_server::{Credentials, key_digest, new_key};

use super::signing::write_secret;

/// Issue a credential: writes a new API key to <key-out> (mode 0600) and prints its `[[credential]]` entry
/// (the key's SHA-256, never the key) for the server's credentials file.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The caller's name (a-z, 0-9, `-`, `_`, `.`, `@`): audit records and reports name it.
    #[arg(long)]
    name: String,
    /// decide, report, approve, admin or gateway (repeatable).
    #[arg(long = "role", required = true)]
    roles: Vec<String>,
    /// Approver groups it belongs to (repeatable).
    #[arg(long = "group")]
    groups: Vec<String>,
    /// Grant: pipeline patterns (repeatable; needed with decide or gateway).
    #[arg(long = "pipeline")]
    pipelines: Vec<String>,
    #[arg(long = "agent")]
    agents: Vec<String>,
    #[arg(long = "team")]
    teams: Vec<String>,
    #[arg(long = "environment")]
    environments: Vec<String>,
    /// Run patterns; any run when absent (run budgets are then advisory).
    #[arg(long = "run")]
    runs: Vec<String>,
    /// Where the key is written; it must not exist yet.
    #[arg(long)]
    key_out: PathBuf,
}

fn list(values: &[String]) -> String {
    format!("[{}]", values.iter().map(|v| toml::Value::from(v.as_str()).to_string()).collect::<Vec<_>>().join(", "))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let key = new_key().context("no randomness for a key")?;
    let mut entry = format!(
        "[[credential]]\nname = {}\nkey_sha256 = \"{}\"\nroles = {}\n",
        toml::Value::from(args.name.as_str()),
        hex::encode(key_digest(&key)),
        list(&args.roles)
    );
    if !args.groups.is_empty() {
        entry.push_str(&format!("groups = {}\n", list(&args.groups)));
    }
    let grant = [
        ("pipelines", &args.pipelines),
        ("agents", &args.agents),
        ("teams", &args.teams),
        ("environments", &args.environments),
    ];
    if grant.iter().any(|(_, v)| !v.is_empty()) || !args.runs.is_empty() {
        let mut fields: Vec<String> = grant.iter().map(|(k, v)| format!("{k} = {}", list(v))).collect();
        if !args.runs.is_empty() {
            fields.push(format!("runs = {}", list(&args.runs)));
        }
        entry.push_str(&format!("grant = {{ {} }}\n", fields.join(", ")));
    }
    // The entry is checked as the server will read it before the key is kept.
    Credentials::from_toml(&entry, std::path::Path::new("(new credential)"))?;
    write_secret(&args.key_out, &format!("{key}\n"))?;
    eprintln!("key written to {} (give it to {} only)", args.key_out.display(), args.name);
    print!("{entry}");
    Ok(ExitCode::SUCCESS)
}
