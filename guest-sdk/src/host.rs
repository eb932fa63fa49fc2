//! The host capabilities a policy may use. Each one used becomes an import
//! of the component, which the bundle must grant (`capabilities = [...]`).
//!
//! Natively (in unit tests) they are served by [`crate::testing`].

#[cfg(target_arch = "wasm32")]
use crate::bindings::arbiter::policy::{
    breakers as wit_breakers, budgets as wit_budgets, clock as wit_clock, history as wit_history, log as wit_log,
};

/// Capability `log`.
pub mod log {
    /// Severity of a log line.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Level {
        /// Detail for debugging a policy.
        Debug,
        /// Normal operation worth noting.
        Info,
        /// Something unexpected the policy handled.
        Warn,
        /// Something the policy could not handle.
        Error,
    }

    /// Logs `message` at [`Level::Debug`], attributed to the policy.
    pub fn debug(message: &str) {
        write(Level::Debug, message);
    }

    /// Logs `message` at [`Level::Info`], attributed to the policy.
    pub fn info(message: &str) {
        write(Level::Info, message);
    }

    /// Logs `message` at [`Level::Warn`], attributed to the policy.
    pub fn warn(message: &str) {
        write(Level::Warn, message);
    }

    /// Logs `message` at [`Level::Error`], attributed to the policy.
    pub fn error(message: &str) {
        write(Level::Error, message);
    }

    #[cfg(target_arch = "wasm32")]
    fn write(level: Level, message: &str) {
        use super::wit_log::Level as L;
        let level = match level {
            Level::Debug => L::Debug,
            Level::Info => L::Info,
            Level::Warn => L::Warn,
            Level::Error => L::Error,
        };
        super::wit_log::log(level, message);
    }

    #[cfg(not(target_arch = "wasm32"))]
    fn write(level: Level, message: &str) {
        // Natively, log lines are kept for tests to read (testing::take_logs).
        crate::testing::record_log(level, message);
    }
}

/// Capability `clock`: the decision's time as the host sees it (the trace
/// clock during replay).
pub mod clock {
    /// Milliseconds since the Unix epoch, UTC.
    #[cfg(target_arch = "wasm32")]
    pub fn now_ms() -> i64 {
        super::wit_clock::now_ms()
    }

    /// Milliseconds since the Unix epoch, UTC (set with
    /// [`crate::testing::set_now_ms`] in tests).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn now_ms() -> i64 {
        crate::testing::now_ms()
    }
}

/// Capability `budgets`: how much of a budget is spent.
pub mod budgets {
    use crate::{ChargeUnit, Window};

    /// Units committed or reserved on `scope` in the window containing the
    /// decision's time.
    #[cfg(target_arch = "wasm32")]
    pub fn used(scope: &str, window: Window, unit: ChargeUnit) -> u64 {
        super::wit_budgets::used(scope, window, unit)
    }

    /// Units committed or reserved on `scope` (set with
    /// [`crate::testing::set_used`] in tests).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn used(scope: &str, window: Window, unit: ChargeUnit) -> u64 {
        crate::testing::used(scope, window, unit)
    }
}

/// Capability `history`: the allowed tool calls of the request's run.
pub mod history {
    use crate::PastToolCall;

    /// Allowed tool calls of this run at or after `since_ms`, oldest first,
    /// optionally of one tool only.
    #[cfg(target_arch = "wasm32")]
    pub fn tool_calls(tool: Option<&str>, since_ms: i64) -> Vec<PastToolCall> {
        super::wit_history::tool_calls(tool, since_ms)
    }

    /// How many tool calls of this run were allowed at or after `since_ms`.
    #[cfg(target_arch = "wasm32")]
    pub fn count_tool_calls(since_ms: i64) -> u32 {
        super::wit_history::count_tool_calls(since_ms)
    }

    /// How many allowed calls of `tool` in this run, at or after
    /// `since_ms`, have a string argument `argument` that nearly repeats
    /// `text`: their token sets ([`crate::text::TokenSet`]) have a Jaccard
    /// similarity of at least `min_similarity`. The host answers from the
    /// run's history, by an index of the run's tokens. A threshold outside
    /// `[0, 1]` faults the policy.
    ///
    /// Natively (in tests) the answer comes from the calls added with
    /// [`crate::testing::record_tool_call`], by the host's own definition
    /// (`arbiter-text`); a bad threshold panics, which
    /// [`crate::testing::decide`] reports as a fault, as the host does.
    pub fn count_similar(tool: &str, argument: &str, text: &str, min_similarity: f64, since_ms: i64) -> u32 {
        #[cfg(target_arch = "wasm32")]
        return super::wit_history::count_similar(tool, argument, text, min_similarity, since_ms);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::count_similar(tool, argument, text, min_similarity, since_ms)
    }

    /// The oldest allowed call of this run at or after `since_ms` whose
    /// tool matches one of `tools` (globs) and one of whose string
    /// arguments named in `arguments` mentions one of `markers` at a word
    /// start ([`crate::text::mentions_at_word_start`]): its request id and
    /// the marker. The host answers from the run's history. At most 64 of
    /// each, 256 bytes each, else the policy faults.
    ///
    /// Natively (in tests), as [`count_similar`]: from the calls recorded,
    /// by the host's definition; lists past the bounds panic.
    pub fn first_mention(
        tools: &[String],
        arguments: &[String],
        markers: &[String],
        since_ms: i64,
    ) -> Option<crate::Mention> {
        #[cfg(target_arch = "wasm32")]
        return super::wit_history::first_mention(tools, arguments, markers, since_ms);
        #[cfg(not(target_arch = "wasm32"))]
        crate::testing::first_mention(tools, arguments, markers, since_ms)
    }

    /// Allowed tool calls of this run (added with
    /// [`crate::testing::record_tool_call`] in tests).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn tool_calls(tool: Option<&str>, since_ms: i64) -> Vec<PastToolCall> {
        crate::testing::tool_calls(tool, since_ms)
    }

    /// How many tool calls of this run were allowed at or after `since_ms`
    /// (of the run [`crate::testing::decide`] last decided, in tests).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn count_tool_calls(since_ms: i64) -> u32 {
        u32::try_from(crate::testing::tool_calls(None, since_ms).len()).unwrap_or(u32::MAX)
    }
}

/// Capability `breakers`: circuit-breaker states, fed by outcome reports.
pub mod breakers {
    use crate::{BreakerConfig, BreakerState};

    /// A breaker's state under `config` (the host faults the policy on a
    /// configuration [`BreakerConfig::validate`] refuses).
    #[cfg(target_arch = "wasm32")]
    pub fn state(key: &str, config: BreakerConfig) -> BreakerState {
        super::wit_breakers::state(key, config)
    }

    /// A breaker's state (set with [`crate::testing::set_breaker`] in tests;
    /// closed otherwise).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn state(key: &str, config: BreakerConfig) -> BreakerState {
        crate::testing::breaker(key, &config)
    }
}
