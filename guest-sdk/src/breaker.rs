//! What the host accepts as a circuit-breaker configuration.

use crate::{BreakerConfig, BreakerWindow};

impl BreakerConfig {
    /// Checks the configuration as the host does when a policy asks for a
    /// breaker's state or guards a verdict with it: a positive window,
    /// rates from 1 to 100 percent, at least one half-open call. The host
    /// faults a policy that passes one it refuses (`policy_fault`), so a
    /// policy checks its settings with this at load.
    pub fn validate(&self) -> Result<(), String> {
        let percent = |p: u8| (1..=100).contains(&p);
        if matches!(self.window, BreakerWindow::Count(0) | BreakerWindow::Seconds(0)) {
            return Err("a breaker window must be positive".to_owned());
        }
        if !percent(self.failure_rate_percent) || self.slow_call_rate_percent.is_some_and(|p| !percent(p)) {
            return Err("breaker rates are percentages from 1 to 100".to_owned());
        }
        if self.half_open_calls == 0 {
            return Err("a breaker must admit at least one half-open call".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            window: BreakerWindow::Count(10),
            minimum_calls: 5,
            failure_rate_percent: 50,
            slow_call_ms: None,
            slow_call_rate_percent: None,
            open_seconds: 60,
            half_open_calls: 2,
            max_half_open_seconds: None,
        }
    }

    #[test]
    fn refuses_what_the_host_refuses() {
        assert_eq!(config().validate(), Ok(()));
        let refused = [
            BreakerConfig { window: BreakerWindow::Count(0), ..config() },
            BreakerConfig { window: BreakerWindow::Seconds(0), ..config() },
            BreakerConfig { failure_rate_percent: 0, ..config() },
            BreakerConfig { failure_rate_percent: 101, ..config() },
            BreakerConfig { slow_call_rate_percent: Some(0), ..config() },
            BreakerConfig { half_open_calls: 0, ..config() },
        ];
        for bad in refused {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
