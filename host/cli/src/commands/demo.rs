//! `arbiter serve` with no `--bundle`: the orders_daily demo, so a first
//! run ends with a console to open. Its state starts with the sample
//! requests decided (an escalation waiting, budgets used, a breaker open)
//! and anonymous decisions allowed; the console key is made fresh and
//! printed once.

use std::path::PathBuf;

use anyhow::Context;
use arbiter_engine::Decider;
use arbiter_server::ANONYMOUS;
use arbiter_state::OutcomeStatus;
use arbiter_types::Request;
use serde_json::json;

/// The demo bundle, relative to a checkout of the repository.
pub const BUNDLE: &str = "examples/orders_daily/bundle.toml";

pub fn bundle() -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(BUNDLE);
    anyhow::ensure!(
        path.is_file(),
        "no --bundle, and no demo bundle at ./{BUNDLE}: run from the repository (after ./scripts/demo.sh), or give --bundle"
    );
    Ok(path)
}

/// Decides the sample requests and a few more, as an anonymous caller now.
pub fn seed(decider: &Decider, now_ms: i64) -> anyhow::Result<()> {
    let dir = PathBuf::from(BUNDLE).with_file_name("requests");
    let mut samples: Vec<_> =
        std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?.flatten().collect();
    samples.sort_by_key(|e| e.path());
    for sample in samples {
        let text = std::fs::read(sample.path())?;
        let request = Request::from_json_slice(&text).with_context(|| format!("{}", sample.path().display()))?;
        decider.decide_as(ANONYMOUS, &request, now_ms);
    }
    let principal = |run: &str| {
        json!({"pipeline": "orders_daily", "agent": "monitor", "team": "data-platform", "environment": "prod",
               "run": run})
    };
    // Three runs' LLM calls: the day budgets show use.
    for i in 0..3 {
        let llm = json!({"id": format!("demo-llm-{i}"), "principal": principal(&format!("demo-run-{i}")),
            "action": {"kind": "llm_request", "model": "claude-sonnet-4-5-20250929", "prompt_tokens": 40_000,
                       "max_output_tokens": 2_000}});
        decider.decide_as(ANONYMOUS, &Request::from_json_value(&llm)?, now_ms);
    }
    // A tool whose calls keep failing: its breaker opens.
    for i in 0..5 {
        let id = format!("demo-query-{i}");
        let call = json!({"id": id, "principal": principal("demo-run-0"), "action": {"kind": "tool_call",
            "tool": "warehouse.query", "arguments": {"sql": "select 1"}}});
        decider.decide_as(ANONYMOUS, &Request::from_json_value(&call)?, now_ms);
        let _ = decider.report_outcome_as(ANONYMOUS, &id, OutcomeStatus::Failure, Some(30_000), now_ms);
    }
    Ok(())
}
