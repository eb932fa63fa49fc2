//! UTC calendar arithmetic for windows.

use arbiter_types::CalendarUnit;
use time::{Date, OffsetDateTime, Time};

/// Start (ms since the epoch) of the UTC calendar period containing `ms`.
pub fn period_start(unit: CalendarUnit, ms: i64) -> i64 {
    let secs = ms.div_euclid(1000);
    match unit {
        CalendarUnit::Minute => secs.div_euclid(60) * 60_000,
        CalendarUnit::Hour => secs.div_euclid(3600) * 3_600_000,
        CalendarUnit::Day => secs.div_euclid(86_400) * 86_400_000,
        CalendarUnit::Month => {
            let Ok(t) = OffsetDateTime::from_unix_timestamp(secs) else { return 0 };
            Date::from_calendar_date(t.year(), t.month(), 1)
                .map(|d| d.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp() * 1000)
                .unwrap_or(0)
        }
    }
}

/// Start of the UTC day containing `ms`.
pub(crate) fn day_start(ms: i64) -> i64 {
    period_start(CalendarUnit::Day, ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        arbiter_types::parse_rfc3339_ms(text).unwrap()
    }

    #[test]
    fn aligns_to_utc_periods() {
        let t = ms("2026-11-26T23:59:59.999Z");
        assert_eq!(period_start(CalendarUnit::Minute, t), ms("2026-11-26T23:59:00Z"));
        assert_eq!(period_start(CalendarUnit::Hour, t), ms("2026-11-26T23:00:00Z"));
        assert_eq!(period_start(CalendarUnit::Day, t), ms("2026-11-26T00:00:00Z"));
        assert_eq!(period_start(CalendarUnit::Month, t), ms("2026-11-01T00:00:00Z"));
        assert_eq!(period_start(CalendarUnit::Day, ms("2026-11-27T00:00:00Z")), ms("2026-11-27T00:00:00Z"));
    }
}
