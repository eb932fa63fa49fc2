//! Circuit breakers: closed → open → half-open → closed or open again,
//! as in resilience4j, on the clock each operation is given.

use std::collections::{HashMap, VecDeque};

use arbiter_types::{BreakerConfig, BreakerWindow};
use serde::{Deserialize, Serialize};

/// What a breaker lets through now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum BreakerState {
    Closed,
    /// Open until this time (ms since the epoch).
    Open {
        until_ms: i64,
    },
    /// Probing: this many more calls may pass.
    HalfOpen {
        permits_left: u32,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Phase {
    Closed,
    Open { until_ms: i64 },
    HalfOpen { since_ms: i64, admitted: u32, succeeded: u32 },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Recorded {
    at_ms: i64,
    failed: bool,
    slow: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Breaker {
    phase: Phase,
    window: VecDeque<Recorded>,
    /// The config it was last used with, for gauges.
    #[serde(default)]
    config: Option<BreakerConfig>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker { phase: Phase::Closed, window: VecDeque::new(), config: None }
    }
}

impl Breaker {
    /// Applies the transitions that time alone causes.
    fn advance(&mut self, config: &BreakerConfig, now_ms: i64) {
        loop {
            match self.phase {
                Phase::Open { until_ms } if now_ms >= until_ms => {
                    self.phase = Phase::HalfOpen { since_ms: until_ms, admitted: 0, succeeded: 0 };
                }
                Phase::HalfOpen { since_ms, .. }
                    if config.max_half_open_seconds.is_some_and(|max| now_ms >= since_ms + i64::from(max) * 1000) =>
                {
                    let reopened = since_ms + i64::from(config.max_half_open_seconds.unwrap_or(0)) * 1000;
                    self.open(config, reopened);
                }
                _ => return,
            }
        }
    }

    fn open(&mut self, config: &BreakerConfig, at_ms: i64) {
        self.phase = Phase::Open { until_ms: at_ms + i64::from(config.open_seconds) * 1000 };
        self.window.clear();
    }

    pub(crate) fn state(&mut self, config: &BreakerConfig, now_ms: i64) -> BreakerState {
        self.advance(config, now_ms);
        match self.phase {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { until_ms } => BreakerState::Open { until_ms },
            Phase::HalfOpen { admitted, .. } => {
                BreakerState::HalfOpen { permits_left: config.half_open_calls.saturating_sub(admitted) }
            }
        }
    }

    /// Whether a call may pass now; a half-open breaker spends a permit.
    pub(crate) fn admits(&self, config: &BreakerConfig, now_ms: i64) -> bool {
        let mut probe = self.clone();
        !matches!(probe.state(config, now_ms), BreakerState::Open { .. } | BreakerState::HalfOpen { permits_left: 0 })
    }

    /// Its state at `now_ms` under the config it was last used with.
    pub(crate) fn gauge(&self, now_ms: i64) -> Option<BreakerState> {
        let config = self.config?;
        Some(self.clone().state(&config, now_ms))
    }

    /// Percent of the outcomes in the current window that failed; `None`
    /// before any.
    pub(crate) fn failure_percent(&self) -> Option<u32> {
        let failed = self.window.iter().filter(|r| r.failed).count();
        u32::try_from(failed * 100 / self.window.len().max(1)).ok().filter(|_| !self.window.is_empty())
    }

    pub(crate) fn admit(&mut self, config: &BreakerConfig, now_ms: i64) {
        self.config = Some(*config);
        self.advance(config, now_ms);
        if let Phase::HalfOpen { admitted, .. } = &mut self.phase {
            *admitted += 1;
        }
    }

    /// Records the outcome of a call this breaker admitted.
    pub(crate) fn record(&mut self, config: &BreakerConfig, now_ms: i64, failed: bool, latency_ms: Option<u64>) {
        self.config = Some(*config);
        self.advance(config, now_ms);
        let slow = matches!((config.slow_call_ms, latency_ms), (Some(limit), Some(ms)) if ms > u64::from(limit));
        match &mut self.phase {
            // A call admitted before the breaker opened: too late to count.
            Phase::Open { .. } => {}
            Phase::HalfOpen { succeeded, .. } => {
                if failed || slow {
                    self.open(config, now_ms);
                } else {
                    *succeeded += 1;
                    if *succeeded >= config.half_open_calls {
                        self.phase = Phase::Closed;
                        self.window.clear();
                    }
                }
            }
            Phase::Closed => {
                self.window.push_back(Recorded { at_ms: now_ms, failed, slow });
                match config.window {
                    BreakerWindow::Count(n) => {
                        while self.window.len() > n as usize {
                            self.window.pop_front();
                        }
                    }
                    BreakerWindow::Seconds(s) => {
                        let from = now_ms.saturating_sub(i64::from(s) * 1000);
                        while self.window.front().is_some_and(|r| r.at_ms <= from) {
                            self.window.pop_front();
                        }
                    }
                }
                if self.should_open(config) {
                    self.open(config, now_ms);
                }
            }
        }
    }

    fn should_open(&self, config: &BreakerConfig) -> bool {
        let calls = self.window.len() as u64;
        if calls < u64::from(config.minimum_calls.max(1)) {
            return false;
        }
        let rate_reached = |count: usize, percent: u8| (count as u64) * 100 >= u64::from(percent) * calls;
        let failures = self.window.iter().filter(|r| r.failed).count();
        let slow = self.window.iter().filter(|r| r.slow).count();
        rate_reached(failures, config.failure_rate_percent)
            || config.slow_call_rate_percent.is_some_and(|p| rate_reached(slow, p))
    }
}

/// Breakers by key, and which allowed requests await an outcome for which.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Breakers {
    breakers: HashMap<String, Breaker>,
    /// Request id → the breakers it passed, with their configs.
    pub(crate) awaiting: HashMap<String, (i64, Vec<(String, BreakerConfig)>)>,
}

impl Breakers {
    pub(crate) fn state(&mut self, key: &str, config: &BreakerConfig, now_ms: i64) -> BreakerState {
        self.breakers.get_mut(key).map_or(BreakerState::Closed, |b| b.state(config, now_ms))
    }

    pub(crate) fn admits(&self, key: &str, config: &BreakerConfig, now_ms: i64) -> bool {
        self.breakers.get(key).is_none_or(|b| b.admits(config, now_ms))
    }

    pub(crate) fn admit(&mut self, request_id: &str, guards: &[(String, BreakerConfig)], now_ms: i64) {
        for (key, config) in guards {
            self.breakers.entry(key.clone()).or_default().admit(config, now_ms);
        }
        self.awaiting.insert(request_id.to_owned(), (now_ms, guards.to_vec()));
    }

    /// Feeds an outcome to the breakers its request passed; false if no
    /// request of that id awaits one.
    pub(crate) fn record(&mut self, request_id: &str, now_ms: i64, failed: bool, latency_ms: Option<u64>) -> bool {
        let Some((_, guards)) = self.awaiting.remove(request_id) else { return false };
        for (key, config) in guards {
            self.breakers.entry(key).or_default().record(&config, now_ms, failed, latency_ms);
        }
        true
    }

    /// Every breaker's state at `now_ms`, by key.
    pub(crate) fn gauges(&self, now_ms: i64) -> Vec<(String, BreakerState)> {
        let mut gauges: Vec<(String, BreakerState)> =
            self.breakers.iter().filter_map(|(key, b)| Some((key.clone(), b.gauge(now_ms)?))).collect();
        gauges.sort_by(|a, b| a.0.cmp(&b.0));
        gauges
    }

    /// [`Breaker::failure_percent`] of every breaker with outcomes.
    pub(crate) fn failure_rates(&self) -> std::collections::BTreeMap<String, u32> {
        self.breakers.iter().filter_map(|(key, b)| Some((key.clone(), b.failure_percent()?))).collect()
    }

    /// Forgets requests whose outcome never came.
    pub(crate) fn expire(&mut self, now_ms: i64, ttl_ms: i64) {
        self.awaiting.retain(|_, (at, _)| *at + ttl_ms >= now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The orders_daily breaker: 5 of the last 10 outcomes, 50 % failures,
    /// open 60 s, 2 probes.
    const CONFIG: BreakerConfig = BreakerConfig {
        window: BreakerWindow::Count(10),
        minimum_calls: 5,
        failure_rate_percent: 50,
        slow_call_ms: Some(5_000),
        slow_call_rate_percent: Some(80),
        open_seconds: 60,
        half_open_calls: 2,
        max_half_open_seconds: Some(120),
    };

    enum Step {
        /// Outcome at time (s): failed?
        Outcome(i64, bool),
        SlowOutcome(i64),
        Admit(i64),
        /// Expected state at time (s).
        Expect(i64, BreakerState),
    }
    use Step::*;

    const OPEN_UNTIL_70: BreakerState = BreakerState::Open { until_ms: 70_000 };

    fn run(steps: &[Step]) {
        let mut b = Breaker::default();
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Outcome(t, failed) => b.record(&CONFIG, t * 1000, failed, None),
                SlowOutcome(t) => b.record(&CONFIG, t * 1000, false, Some(6_000)),
                Admit(t) => {
                    assert!(b.admits(&CONFIG, t * 1000), "step {i}: not admitted");
                    b.admit(&CONFIG, t * 1000);
                }
                Expect(t, expected) => assert_eq!(b.state(&CONFIG, t * 1000), expected, "step {i}"),
            }
        }
    }

    #[test]
    fn stays_closed_below_minimum_calls() {
        run(&[Outcome(1, true), Outcome(2, true), Outcome(3, true), Outcome(4, true), Expect(5, BreakerState::Closed)]);
    }

    #[test]
    fn closed_to_open_at_the_failure_rate() {
        run(&[
            Outcome(1, false),
            Outcome(2, true),
            Outcome(3, true),
            Outcome(4, false),
            Expect(9, BreakerState::Closed),
            Outcome(10, true),
            Expect(11, OPEN_UNTIL_70),
        ]);
    }

    #[test]
    fn below_the_rate_stays_closed_and_the_window_slides() {
        let mut steps: Vec<Step> = (1..=10).map(|t| Outcome(t, t % 3 == 0)).collect();
        steps.push(Expect(11, BreakerState::Closed));
        run(&steps);
    }

    #[test]
    fn slow_calls_open_it_too() {
        run(&[
            SlowOutcome(1),
            SlowOutcome(2),
            SlowOutcome(3),
            SlowOutcome(4),
            SlowOutcome(10),
            Expect(10, OPEN_UNTIL_70),
        ]);
    }

    fn opened_at_10() -> Vec<Step> {
        vec![Outcome(1, true), Outcome(2, true), Outcome(3, true), Outcome(4, true), Outcome(10, true)]
    }

    #[test]
    fn open_to_half_open_after_the_wait_then_closed_after_good_probes() {
        let mut steps = opened_at_10();
        steps.extend([
            Expect(69, OPEN_UNTIL_70),
            Expect(70, BreakerState::HalfOpen { permits_left: 2 }),
            Admit(74),
            Admit(75),
            Expect(76, BreakerState::HalfOpen { permits_left: 0 }),
            Outcome(77, false),
            Expect(77, BreakerState::HalfOpen { permits_left: 0 }),
            Outcome(78, false),
            Expect(79, BreakerState::Closed),
            // The window was cleared: one failure does not reopen it.
            Outcome(80, true),
            Expect(81, BreakerState::Closed),
        ]);
        run(&steps);
    }

    #[test]
    fn half_open_to_open_on_a_failed_probe() {
        let mut steps = opened_at_10();
        steps.extend([Admit(74), Outcome(75, true), Expect(76, BreakerState::Open { until_ms: 135_000 })]);
        run(&steps);
    }

    #[test]
    fn half_open_times_out_back_to_open() {
        let mut steps = opened_at_10();
        // Half-open from 70 s; no probe reports within 120 s: open again at 190 s for 60 s.
        steps.extend([
            Admit(71),
            Expect(189, BreakerState::HalfOpen { permits_left: 1 }),
            Expect(191, BreakerState::Open { until_ms: 250_000 }),
        ]);
        run(&steps);
    }

    #[test]
    fn outcomes_while_open_are_ignored() {
        let mut steps = opened_at_10();
        steps.extend([Outcome(20, false), Expect(21, OPEN_UNTIL_70)]);
        run(&steps);
    }

    #[test]
    fn time_windows_forget_old_outcomes() {
        let config = BreakerConfig { window: BreakerWindow::Seconds(30), ..CONFIG };
        let mut b = Breaker::default();
        for t in [1, 2, 3, 4] {
            b.record(&config, t * 1000, true, None);
        }
        b.record(&config, 40_000, true, None);
        assert_eq!(b.state(&config, 40_000), BreakerState::Closed, "the early failures left the window");
    }
}
