//! The host's clock: wall time in milliseconds since the Unix epoch, held
//! monotone within the process so that state time (budget windows, breaker
//! windows, escalation expiry) never runs backwards when the wall clock is
//! stepped back.

use std::sync::atomic::{AtomicI64, Ordering};

/// The latest time [`now_ms`] returned in this process.
static LAST_NOW_MS: AtomicI64 = AtomicI64::new(0);

/// Milliseconds since the epoch; never earlier than a previous reading (a
/// wall-clock step back holds it still until the wall catches up).
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let wall = i64::try_from(since.as_millis()).unwrap_or(i64::MAX);
    LAST_NOW_MS.fetch_max(wall, Ordering::Relaxed).max(wall)
}

#[cfg(test)]
mod tests {
    #[test]
    fn readings_never_decrease_and_track_the_wall() {
        let wall = |()| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
        let before = i64::try_from(wall(())).unwrap();
        let readings: Vec<i64> = (0..1000).map(|_| super::now_ms()).collect();
        assert!(readings.windows(2).all(|w| w[0] <= w[1]));
        assert!(readings[0] >= before);
        // A reading ahead of the wall (a step back) holds later ones.
        super::LAST_NOW_MS.fetch_max(before + 3_600_000, std::sync::atomic::Ordering::Relaxed);
        assert_eq!(super::now_ms(), before + 3_600_000);
    }
}
