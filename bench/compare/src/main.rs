//! `arbiter-compare`: the five stateless orders_daily rules decided by each
//! engine on the same inputs, on this machine, in one run; prints one
//! Markdown table with ratios (docs/benchmarks.md).
//!
//! First every engine decides every case of `cases.json` and must give the
//! expected verdict (Cedar: its own column, for the part it expresses); then
//! each engine is measured in a child process of its own.

mod engines;
mod measure;
mod per_policy;

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde::Deserialize;

use engines::{ENGINES, Outcome};
use measure::Figures;

#[derive(Parser, Debug)]
#[command(about = "Compare arbiter with the native floor, regorus and Cedar on the same rules and inputs")]
struct Args {
    /// Seconds per measurement (latency, then throughput on 1 and 2 threads).
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Only check that every engine gives the expected verdicts.
    #[arg(long)]
    check: bool,
    /// Instead of the table, time each policy of the full bundle on the
    /// timed input, natively and sandboxed (the host's own per-policy
    /// timing, which is whole microseconds).
    #[arg(long)]
    per_policy: bool,
    /// Measure one engine and print its figures as JSON (the child side).
    #[arg(long, hide = true)]
    engine: Option<String>,
}

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    request: serde_json::Value,
    expect: Outcome,
    /// What Cedar, which expresses only part of the rules, answers; `None`
    /// where it has nothing to say (LLM requests).
    cedar: Option<Outcome>,
    /// What arrives through Envoy as an MCP call decides; `None` for LLM
    /// requests.
    gateway: Option<Outcome>,
}

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn paths() -> (PathBuf, PathBuf) {
    (here().join("bundle.toml"), here().join("rules"))
}

fn cases() -> anyhow::Result<Vec<Case>> {
    Ok(serde_json::from_str::<Cases>(&std::fs::read_to_string(here().join("cases.json"))?)?.cases)
}

/// The timed input: the first case, a tool call with ~1 KB of arguments.
fn timed_input(cases: &[Case]) -> anyhow::Result<Vec<u8>> {
    let first = cases.first().ok_or_else(|| anyhow::anyhow!("cases.json has no case"))?;
    Ok(serde_json::to_vec(&first.request)?)
}

fn check(cases: &[Case]) -> anyhow::Result<()> {
    let (bundle, rules) = paths();
    let mut wrong = Vec::new();
    for (name, _) in ENGINES {
        let engine = engines::build(name, &bundle, &rules)?;
        let mut decider = engine.instance()?;
        for case in cases {
            let expected = match (engine.cedar_subset, engine.envoy_subset) {
                (true, _) => case.cedar,
                (_, true) => case.gateway,
                _ => Some(case.expect),
            };
            let Some(expected) = expected else { continue };
            let got = decider
                .decide(&serde_json::to_vec(&case.request)?)
                .with_context(|| format!("{name} cannot decide {}", case.name))?;
            if got != expected {
                wrong.push(format!("{name}: {}: expected {expected:?}, got {got:?}", case.name));
            }
        }
    }
    anyhow::ensure!(wrong.is_empty(), "engines disagree with the expected verdicts:\n{}", wrong.join("\n"));
    println!("all {} engines give the expected verdict on all {} cases", ENGINES.len(), cases.len());
    Ok(())
}

fn child(name: &str, seconds: f64, input: &[u8]) -> anyhow::Result<()> {
    let (bundle, rules) = paths();
    let engine = engines::build(name, &bundle, &rules)?;
    let figures = measure::measure(&engine, input, Duration::from_secs_f64(seconds))?;
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

fn measure_in_child(name: &str, seconds: f64) -> anyhow::Result<Figures> {
    let output =
        Command::new(std::env::current_exe()?).args(["--engine", name, "--seconds", &seconds.to_string()]).output()?;
    anyhow::ensure!(output.status.success(), "{name}: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().ok_or_else(|| anyhow::anyhow!("{name}: no figures"))?;
    Ok(serde_json::from_str(line)?)
}

fn table(results: &[(&str, &'static str, Figures)]) {
    let p50 = |name: &str| results.iter().find(|(n, ..)| *n == name).map_or(f64::NAN, |(_, _, f)| f.p50_ns);
    let (native, regorus, vm) = (p50("native"), p50("regorus"), p50("regorus-vm"));
    println!(
        "| engine | rules | p50 µs | p99 µs | decisions/s, 1 thread | 2 threads | peak RSS MiB | p50 × native | regorus ÷ this | regorus VM ÷ this |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for (name, rules, f) in results {
        println!(
            "| {name} | {rules} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {:.2} | {:.1} | {:.1} |",
            f.p50_ns / 1e3,
            f.p99_ns / 1e3,
            f.per_second_1_thread,
            f.per_second_2_threads,
            f.peak_rss_kib as f64 / 1024.0,
            f.p50_ns / native,
            regorus / f.p50_ns,
            vm / f.p50_ns,
        );
    }
    let (arbiter, full_bundle, native_full_bundle) =
        (p50("arbiter"), p50("arbiter-full-bundle"), p50("native-full-bundle"));
    let verdict = |ok: bool| if ok { "met" } else { "missed" };
    println!();
    println!("goals for arbiter in-process on this input (issue #16):");
    println!(
        "- the five rules ≤ 1.5× the native floor: {:.2}× — {}",
        arbiter / native,
        verdict(arbiter <= 1.5 * native)
    );
    println!(
        "- the full bundle ≤ 2× the native floor of the five rules: {:.2}× — {}",
        full_bundle / native,
        verdict(full_bundle <= 2.0 * native)
    );
    println!(
        "- the full bundle ≤ 2× the same policies natively: {:.2}× — {}",
        full_bundle / native_full_bundle,
        verdict(full_bundle <= 2.0 * native_full_bundle)
    );
    println!(
        "- ≥ 10× faster than the regorus interpreter: {:.1}× — {}",
        regorus / arbiter,
        verdict(regorus >= 10.0 * arbiter)
    );
    println!("- ≥ 5× faster than the regorus VM: {:.1}× — {}", vm / arbiter, verdict(vm >= 5.0 * arbiter));
}

fn run(args: &Args) -> anyhow::Result<()> {
    let cases = cases()?;
    let input = timed_input(&cases)?;
    if let Some(name) = &args.engine {
        return child(name, args.seconds, &input);
    }
    if args.per_policy {
        return per_policy::run(&input, args.seconds);
    }
    check(&cases)?;
    if args.check {
        return Ok(());
    }
    println!("input: `{}` ({} bytes of request JSON); {} s per measurement", cases[0].name, input.len(), args.seconds);
    let mut results = Vec::new();
    for (name, rules) in ENGINES {
        results.push((name, rules, measure_in_child(name, args.seconds)?));
    }
    table(&results);
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("arbiter-compare: {e:#}");
            ExitCode::FAILURE
        }
    }
}
