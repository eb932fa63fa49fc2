//! The host capabilities a policy may use. Each one used becomes an import
//! of the component, which the bundle must grant (`capabilities = [...]`).
//!
//! Natively (in unit tests) they are served by [`crate::testing`].

#[cfg(target_arch = "wasm32")]
use crate::bindings::arbiter::policy::{clock as wit_clock, log as wit_log};

/// Capability `log`.
pub mod log {
    /// Severity of a log line.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Level {
        Debug,
        Info,
        Warn,
        Error,
    }

    pub fn debug(message: &str) {
        write(Level::Debug, message);
    }

    pub fn info(message: &str) {
        write(Level::Info, message);
    }

    pub fn warn(message: &str) {
        write(Level::Warn, message);
    }

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
