//! Latency percentiles on one thread and throughput on N threads, measured
//! in a child process per engine so that its peak memory is its own.

use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::engines::{Decide, Engine};

#[derive(Debug, Serialize, Deserialize)]
pub struct Figures {
    pub p50_ns: f64,
    pub p99_ns: f64,
    pub per_second_1_thread: f64,
    pub per_second_2_threads: f64,
    /// Peak resident memory (VmHWM) of the process that decided: the
    /// measuring process, or the arbiter server for the served rows.
    pub peak_rss_kib: u64,
}

/// Per-call latency on one thread, after a warm-up of a tenth as long.
fn percentiles(decider: &mut dyn Decide, input: &[u8], duration: Duration) -> anyhow::Result<(f64, f64)> {
    let warm_up = Instant::now() + duration / 10;
    while Instant::now() < warm_up {
        decider.decide(input)?;
    }
    let mut samples: Vec<u64> = Vec::with_capacity(1 << 20);
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let started = Instant::now();
        decider.decide(input)?;
        samples.push(u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q) as usize] as f64;
    Ok((at(0.50), at(0.99)))
}

/// Decisions per second with `threads` threads deciding at once, each with
/// its own decider.
fn throughput(engine: &Engine, input: &[u8], threads: usize, duration: Duration) -> anyhow::Result<f64> {
    let decided = AtomicU64::new(0);
    let start = Barrier::new(threads);
    let elapsed = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| -> anyhow::Result<Duration> {
                    let mut decider = engine.instance()?;
                    decider.decide(input)?;
                    start.wait();
                    let began = Instant::now();
                    let mut count = 0u64;
                    while began.elapsed() < duration {
                        decider.decide(input)?;
                        count += 1;
                    }
                    decided.fetch_add(count, Ordering::Relaxed);
                    Ok(began.elapsed())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| anyhow::anyhow!("a measuring thread panicked"))?)
            .collect::<anyhow::Result<Vec<Duration>>>()
    })?;
    let longest = elapsed.into_iter().max().unwrap_or(duration).as_secs_f64();
    Ok(decided.load(Ordering::Relaxed) as f64 / longest)
}

pub fn measure(engine: &Engine, input: &[u8], duration: Duration) -> anyhow::Result<Figures> {
    let mut decider = engine.instance()?;
    let (p50_ns, p99_ns) = percentiles(decider.as_mut(), input, duration)?;
    Ok(Figures {
        p50_ns,
        p99_ns,
        per_second_1_thread: throughput(engine, input, 1, duration)?,
        per_second_2_threads: throughput(engine, input, 2, duration)?,
        peak_rss_kib: peak_rss_kib(engine.server_pid),
    })
}

fn peak_rss_kib(pid: Option<u32>) -> u64 {
    let path = pid.map_or_else(|| "/proc/self/status".to_owned(), |pid| format!("/proc/{pid}/status"));
    let status = std::fs::read_to_string(path).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
