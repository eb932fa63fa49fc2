//! The per-instance state a policy's Store carries, and the host side of
//! the capability interfaces.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbiter_state::{DecisionReads, RunKey};
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder, UpdateDeadline};

/// Longest log line kept from a policy; the rest is cut, so a policy cannot
/// flood the host's logs.
const MAX_LOG_LINE: usize = 2048;

/// What the capabilities answer from during one decision.
#[derive(Debug)]
pub(crate) struct DecisionContext {
    pub(crate) now_ms: i64,
    pub(crate) run: RunKey,
    pub(crate) state: Arc<DecisionReads>,
}

pub(crate) struct SandboxState {
    limits: StoreLimits,
    /// Set when the policy asked for more memory than its cap allows, so a
    /// resulting trap is reported as a memory fault.
    pub(crate) memory_refused: bool,
    pub(crate) policy: Arc<str>,
    /// Present while a decision is being evaluated.
    pub(crate) decision: Option<Arc<DecisionContext>>,
    /// When the current call into the guest (init or evaluate) started.
    call_started: Instant,
    /// Time the current call has spent inside host functions.
    host_time: Duration,
}

impl SandboxState {
    pub(crate) fn new(policy: Arc<str>, memory_bytes: usize) -> Self {
        let limits = StoreLimitsBuilder::new()
            .memory_size(memory_bytes)
            .memories(1)
            .tables(8)
            .table_elements(100_000)
            .instances(16)
            .build();
        SandboxState {
            limits,
            memory_refused: false,
            policy,
            decision: None,
            call_started: Instant::now(),
            host_time: Duration::ZERO,
        }
    }

    /// Starts the wall-clock account of a call into the guest.
    pub(crate) fn start_call(&mut self) {
        self.call_started = Instant::now();
        self.host_time = Duration::ZERO;
    }

    /// Time of the current call charged to its deadline at `now`: wall time
    /// less the time spent waiting in host calls, of which at most
    /// `allowance` is forgiven.
    fn charged_at(&self, now: Instant, allowance: Duration) -> Duration {
        now.saturating_duration_since(self.call_started).saturating_sub(self.host_time.min(allowance))
    }

    /// Runs the body of a host function, adding its duration to the call's
    /// host time: waiting for the state store is not the policy's work.
    pub(crate) fn host_call<R>(&mut self, body: impl FnOnce(&Self) -> wasmtime::Result<R>) -> wasmtime::Result<R> {
        let started = Instant::now();
        let result = body(self);
        self.host_time = self.host_time.saturating_add(started.elapsed());
        result
    }

    pub(crate) fn decision(&self) -> wasmtime::Result<&DecisionContext> {
        self.decision.as_deref().ok_or_else(|| wasmtime::Error::msg("capability used outside a decision"))
    }

    /// A policy's log line, cut to [`MAX_LOG_LINE`] so a policy cannot
    /// flood the host's logs.
    pub(crate) fn log(&self, level: tracing::Level, message: &str) {
        let mut end = message.len().min(MAX_LOG_LINE);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let message = &message[..end];
        let policy = &*self.policy;
        match level {
            tracing::Level::ERROR => tracing::error!(target: "arbiter::policy", policy, "{message}"),
            tracing::Level::WARN => tracing::warn!(target: "arbiter::policy", policy, "{message}"),
            tracing::Level::INFO => tracing::info!(target: "arbiter::policy", policy, "{message}"),
            _ => tracing::debug!(target: "arbiter::policy", policy, "{message}"),
        }
    }
}

/// The deadline of each call into a policy, and how it maps to epoch ticks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    pub(crate) limit: Duration,
    pub(crate) tick: Duration,
    pub(crate) host_wait_allowance: Duration,
}

impl Deadline {
    /// Ticks to arm a call with: the limit rounded up, plus one because the
    /// first tick may come at once.
    pub(crate) fn initial_ticks(&self) -> u64 {
        ticks(self.limit, self.tick).saturating_add(1)
    }

    /// Called when the epoch deadline passes: the clock also ran while the
    /// guest waited in host calls, so stop the guest only if its charged
    /// time reached the limit, and otherwise re-arm for what is left.
    pub(crate) fn on_expiry(&self, state: &SandboxState) -> UpdateDeadline {
        self.update(state.charged_at(Instant::now(), self.host_wait_allowance))
    }

    fn update(&self, charged: Duration) -> UpdateDeadline {
        match self.limit.checked_sub(charged) {
            // Rounded up, so at most a tick late; if it fires early, this
            // check simply runs again.
            Some(left) if !left.is_zero() => UpdateDeadline::Continue(ticks(left, self.tick).max(1)),
            _ => UpdateDeadline::Interrupt,
        }
    }
}

/// Ticks that make up `duration`, rounded up.
fn ticks(duration: Duration, tick: Duration) -> u64 {
    u64::try_from(duration.as_nanos().div_ceil(tick.as_nanos().max(1))).unwrap_or(u64::MAX)
}

/// A capability call that could not reach the state store: the policy
/// stops, and the decision blames the store rather than the policy.
#[derive(Debug, thiserror::Error)]
#[error("state unavailable: {0}")]
pub(crate) struct StateUnavailable(arbiter_state::StateError);

pub(crate) fn state_error(e: arbiter_state::StateError) -> wasmtime::Error {
    wasmtime::Error::new(StateUnavailable(e))
}

/// A capability call the host will not answer as asked: the policy stops
/// with the question named.
#[derive(Debug, thiserror::Error)]
#[error("capability refused: {0}")]
pub(crate) struct CapabilityRefused(String);

pub(crate) fn capability_refused(why: impl ToString) -> wasmtime::Error {
    wasmtime::Error::new(CapabilityRefused(why.to_string()))
}

impl ResourceLimiter for SandboxState {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        self.memory_refused |= !allowed;
        Ok(allowed)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn deadline(limit_ms: u64, allowance_ms: u64) -> Deadline {
        Deadline {
            limit: Duration::from_millis(limit_ms),
            tick: MS,
            host_wait_allowance: Duration::from_millis(allowance_ms),
        }
    }

    fn is_interrupt(update: &UpdateDeadline) -> bool {
        matches!(update, UpdateDeadline::Interrupt)
    }

    fn continued(update: &UpdateDeadline) -> Option<u64> {
        match update {
            UpdateDeadline::Continue(ticks) => Some(*ticks),
            _ => None,
        }
    }

    #[test]
    fn the_deadline_extends_by_what_is_left_and_stops_at_the_limit() {
        let d = deadline(20, 1000);
        assert_eq!(continued(&d.update(Duration::ZERO)), Some(20));
        assert_eq!(continued(&d.update(5 * MS)), Some(15));
        // Less than a tick left still re-arms (for one tick), never zero.
        assert_eq!(continued(&d.update(20 * MS - Duration::from_micros(1))), Some(1));
        assert!(is_interrupt(&d.update(20 * MS)));
        assert!(is_interrupt(&d.update(Duration::from_secs(3600))));
        assert_eq!(d.initial_ticks(), 21);
    }

    #[test]
    fn host_time_is_forgiven_only_up_to_the_allowance() {
        let mut state = SandboxState::new(Arc::from("p"), 1 << 20);
        state.start_call();
        let started = state.call_started;
        state.host_time = 90 * MS;
        let now = started + 100 * MS;
        assert_eq!(state.charged_at(now, Duration::from_secs(1)), 10 * MS);
        assert_eq!(state.charged_at(now, 30 * MS), 70 * MS);
        assert_eq!(state.charged_at(now, Duration::ZERO), 100 * MS);
        // A new call starts a new account.
        state.start_call();
        assert_eq!(state.host_time, Duration::ZERO);
    }

    #[test]
    fn host_functions_add_their_duration_to_the_host_time() {
        let mut state = SandboxState::new(Arc::from("p"), 1 << 20);
        state.start_call();
        let slept = state.host_call(|_| {
            std::thread::sleep(2 * MS);
            Ok(())
        });
        assert!(slept.is_ok());
        assert!(state.host_time >= 2 * MS, "{:?}", state.host_time);
        // Failing calls count too (a store timeout is waiting all the same).
        let before = state.host_time;
        let failed: wasmtime::Result<()> = state.host_call(|_| {
            std::thread::sleep(MS);
            Err(wasmtime::Error::msg("unavailable"))
        });
        assert!(failed.is_err());
        assert!(state.host_time >= before + MS);
    }
}
