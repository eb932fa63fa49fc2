//! Where the full bundle's time goes, policy by policy: each policy of the
//! reference bundle on the timed input, called natively and run in its
//! sandbox by the host, as medians of one run.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arbiter_types::Request;

use crate::engines::native::{Rules, rules, sdk_request};
use crate::engines::{Settings, full_bundle, wasm};

/// The median of `samples` (nanoseconds).
fn median(samples: &mut [u64]) -> f64 {
    samples.sort_unstable();
    samples.get(samples.len() / 2).map_or(f64::NAN, |&ns| ns as f64)
}

/// Calls `decide` for `duration`, after a tenth as long of warm-up.
fn repeat(duration: Duration, mut decide: impl FnMut()) {
    for end in [Instant::now() + duration / 10, Instant::now() + duration + duration / 10] {
        while Instant::now() < end {
            decide();
        }
    }
}

pub fn run(input: &[u8], seconds: f64) -> anyhow::Result<()> {
    let duration = Duration::from_secs_f64(seconds);
    let request = sdk_request(input)?;
    let natively: Vec<(&str, f64)> = rules(&Settings::read(&full_bundle())?, Rules::FullBundle)?
        .into_iter()
        .map(|(name, rule)| {
            let mut samples = Vec::new();
            repeat(duration, || {
                let started = Instant::now();
                std::hint::black_box(rule(std::hint::black_box(&request)));
                samples.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
            });
            (name, median(&mut samples))
        })
        .collect();

    // Sandboxed: the host's own timing of each policy it ran (lowering the
    // request, the call, lifting the verdict), and of the whole decision.
    let (bundle, state) = wasm::load(&full_bundle(), true)?;
    let mut by_policy: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut decisions = Vec::new();
    repeat(duration, || {
        let started = Instant::now();
        let Ok(parsed) = Request::from_json_slice(input) else { return };
        let decision = bundle.evaluate(&parsed, 0, &state);
        decisions.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
        for policy in decision.policies {
            by_policy.entry(policy.name).or_default().push(policy.elapsed_us.saturating_mul(1000));
        }
    });
    anyhow::ensure!(!decisions.is_empty(), "the timed input does not parse as a request");

    println!("| policy | native p50 µs | sandboxed p50 µs | sandboxed ÷ native |");
    println!("|---|---|---|---|");
    let (mut native_total, mut sandboxed_total) = (0.0, 0.0);
    for (name, native) in &natively {
        native_total += native;
        match by_policy.get_mut(*name) {
            Some(samples) => {
                let sandboxed = median(samples);
                sandboxed_total += sandboxed;
                println!("| {name} | {:.1} | {:.0} | {:.1} |", native / 1e3, sandboxed / 1e3, sandboxed / native);
            }
            None => println!("| {name} | {:.1} | out of scope, not run | — |", native / 1e3),
        }
    }
    let decision = median(&mut decisions);
    println!(
        "| the policies together | {:.1} | {:.0} | {:.1} |",
        native_total / 1e3,
        sandboxed_total / 1e3,
        sandboxed_total / native_total
    );
    println!("| the whole decision (parse, scope, policies, combine) | — | {:.1} | — |", decision / 1e3);
    Ok(())
}
