//! `arbiter replay`: recorded traces through a bundle, on the trace clock.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use arbiter_engine::{Bundle, Decider, replay};
use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::engine_args::EngineArgs;

/// Replay JSONL traces (decide / usage / outcome events) or audit logs through a bundle, each file on
/// fresh state; with --against, show which decisions a bundle change alters.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Bundle manifest (TOML).
    #[arg(long)]
    bundle: PathBuf,
    /// A previous bundle: replay through both and report the decisions that differ.
    #[arg(long)]
    against: Option<PathBuf>,
    /// With --against: exit 1 when any decision differs.
    #[arg(long)]
    fail_on_diff: bool,
    /// Trace files, or audit logs (their decision records are replayed).
    #[arg(required = true)]
    traces: Vec<PathBuf>,
    /// Print only mismatches and the summary.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    engine: EngineArgs,
}

/// Audit logs become decide-only traces: each decision record's request at
/// its event time. Traces pass through unchanged.
fn as_trace(text: &str) -> String {
    let is_audit = text
        .lines()
        .next()
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .is_some_and(|v| v.get("kind").is_some());
    if !is_audit {
        return text.to_owned();
    }
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record["kind"] == "decision")
        .map(|record| {
            let at = record["request"]["timestamp"].as_str().or(record["at"].as_str()).unwrap_or_default().to_owned();
            let mut request = record["request"].clone();
            if let Some(body) = request.as_object_mut() {
                body.remove("escalation_id");
            }
            format!("{}\n", json!({"op": "decide", "at": at, "request": request}))
        })
        .collect()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(old) = &args.against {
        return diff(&args, old);
    }
    let engine = args.engine.engine()?;
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in &args.traces {
        let text = as_trace(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?);
        let decider = Decider::in_memory(Bundle::load(&engine, &args.bundle)?);
        let events = replay(&decider, &text).with_context(|| format!("replaying {}", path.display()))?;
        for event in events {
            match event.passed {
                Some(true) => passed += 1,
                Some(false) => failed += 1,
                None => {}
            }
            if !args.quiet || event.passed == Some(false) {
                let line = json!({"trace": path.display().to_string(), "line": event.line, "ok": event.passed, "result": event.result});
                println!("{line}");
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Replays every input through the old and the new bundle (fresh state for
/// each) and reports the decisions that differ, grouped.
fn diff(args: &Args, old: &Path) -> anyhow::Result<ExitCode> {
    let engine = args.engine.engine()?;
    let (old_bundle, new_bundle) = (Bundle::load(&engine, old)?, Bundle::load(&engine, &args.bundle)?);
    let (old_bundle, new_bundle) = (std::sync::Arc::new(old_bundle), std::sync::Arc::new(new_bundle));
    let mut groups: BTreeMap<String, usize> = BTreeMap::new();
    let (mut compared, mut differ) = (0usize, 0usize);
    for path in &args.traces {
        let text = as_trace(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?);
        let run = |bundle: &std::sync::Arc<Bundle>| {
            let state =
                std::sync::Arc::new(arbiter_state::InMemoryStore::in_memory(arbiter_state::StoreConfig::default()));
            replay(&Decider::new(std::sync::Arc::clone(bundle), state), &text)
        };
        let before =
            run(&old_bundle).with_context(|| format!("replaying {} through the old bundle", path.display()))?;
        let after = run(&new_bundle).with_context(|| format!("replaying {} through the new bundle", path.display()))?;
        for (was, now) in before.iter().zip(&after).filter(|(w, _)| w.result["op"] == "decide") {
            compared += 1;
            if was.result == now.result {
                continue;
            }
            differ += 1;
            let key = format!(
                "{} -> {} {}",
                was.result["decision"].as_str().unwrap_or("?"),
                now.result["decision"].as_str().unwrap_or("?"),
                now.result["codes"]
            );
            let count = groups.entry(key).or_default();
            *count += 1;
            if *count <= 3 || !args.quiet {
                let line = json!({"trace": path.display().to_string(), "line": was.line, "old": was.result, "new": now.result});
                println!("{line}");
            }
        }
    }
    for (group, count) in &groups {
        println!("{count:>6}  {group}");
    }
    println!("{compared} decisions compared, {differ} differ");
    Ok(if differ > 0 && args.fail_on_diff { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
