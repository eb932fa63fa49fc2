//! A rolling-window series: bookings by time, and the total of any window
//! of them in O(log n) however many the window holds
//! (docs/decisions/0021-rolling-windows-in-log-time.md).
//!
//! Each booking carries the running total through it, so a window's total
//! is the difference of two running totals found by binary search. Time
//! normally only moves forward: a booking lands at the back (O(1)), old
//! ones leave from the front (O(1)), and neither touches the running
//! totals of the rest. Only a booking made in the past (a clock set back)
//! or rescaled by its usage report shifts the totals after it, which for a
//! report is the few bookings made since its request.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Bookings sorted by time (one entry per millisecond booked).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(from = "StoredSeries", into = "StoredSeries")]
pub(crate) struct RollingSeries {
    /// Longest window asked of this series: older bookings can go.
    max_window_ms: i64,
    /// (booked at, amount, running total through this entry), sorted by
    /// time. Running totals count from the series' first booking ever,
    /// so dropping the front changes none of them.
    entries: VecDeque<Entry>,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    at_ms: i64,
    amount: u64,
    through: u128,
}

/// The stored shape (the journal's snapshots predate running totals):
/// running totals are rebuilt on load, and bookings are sorted then,
/// whatever order a snapshot lists them in.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredSeries {
    max_window_ms: i64,
    entries: Vec<(i64, u64)>,
}

impl From<StoredSeries> for RollingSeries {
    fn from(stored: StoredSeries) -> Self {
        let mut series = RollingSeries { max_window_ms: stored.max_window_ms, entries: VecDeque::new() };
        let mut entries = stored.entries;
        entries.sort_by_key(|(at, _)| *at);
        for (at_ms, amount) in entries {
            series.change(at_ms, i128::from(amount));
        }
        series
    }
}

impl From<RollingSeries> for StoredSeries {
    fn from(series: RollingSeries) -> Self {
        StoredSeries {
            max_window_ms: series.max_window_ms,
            entries: series.entries.iter().map(|e| (e.at_ms, e.amount)).collect(),
        }
    }
}

impl RollingSeries {
    /// The total booked in `(from_ms, to_ms]`.
    pub(crate) fn total(&self, from_ms: i64, to_ms: i64) -> u64 {
        if to_ms <= from_ms {
            return 0;
        }
        let sum = self.through(to_ms).saturating_sub(self.through(from_ms));
        u64::try_from(sum).unwrap_or(u64::MAX)
    }

    /// The running total of every entry at or before `at_ms` (0 before the
    /// first entry kept: differences are all that is read).
    fn through(&self, at_ms: i64) -> u128 {
        let after = self.entries.partition_point(|e| e.at_ms <= at_ms);
        match after {
            0 => self.entries.front().map_or(0, |e| e.through - u128::from(e.amount)),
            n => self.entries[n - 1].through,
        }
    }

    /// Books `amount` at `at_ms`, for a window of `window_ms`.
    pub(crate) fn book(&mut self, at_ms: i64, amount: u64, window_ms: i64) {
        self.max_window_ms = self.max_window_ms.max(window_ms);
        self.change(at_ms, i128::from(amount));
    }

    /// Adds `delta` to the booking at `at_ms`, floored at zero. A booking
    /// no longer kept (it aged out of every window) is not brought back.
    pub(crate) fn adjust(&mut self, at_ms: i64, delta: i128) {
        if let Ok(index) = self.entries.binary_search_by_key(&at_ms, |e| e.at_ms) {
            self.shift(index, delta);
        }
    }

    /// Adds `delta` to the entry at `at_ms` (made if absent), floored at
    /// zero.
    fn change(&mut self, at_ms: i64, delta: i128) {
        let index = match self.entries.binary_search_by_key(&at_ms, |e| e.at_ms) {
            Ok(index) => index,
            Err(index) => {
                let through = self.through(at_ms);
                self.entries.insert(index, Entry { at_ms, amount: 0, through });
                index
            }
        };
        self.shift(index, delta);
    }

    /// Adds `delta` to the entry at `index`, floored at zero, and shifts
    /// the running totals from it on.
    fn shift(&mut self, index: usize, delta: i128) {
        let entry = &mut self.entries[index];
        let amount = add_floored(entry.amount, delta);
        let shift = i128::from(amount) - i128::from(entry.amount);
        entry.amount = amount;
        if shift != 0 {
            for later in self.entries.range_mut(index..) {
                later.through = later.through.saturating_add_signed(shift);
            }
        }
    }

    /// Drops the bookings no window can reach at `now_ms`; true if none
    /// are left.
    pub(crate) fn forget_before_window(&mut self, now_ms: i64) -> bool {
        let from = now_ms.saturating_sub(self.max_window_ms);
        while self.entries.front().is_some_and(|e| e.at_ms <= from) {
            self.entries.pop_front();
        }
        self.entries.is_empty()
    }
}

/// `value + delta`, floored at zero and capped at `u64::MAX`.
pub(crate) fn add_floored(value: u64, delta: i128) -> u64 {
    u64::try_from((i128::from(value) + delta).max(0)).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition the series must agree with: every booking, summed.
    fn naive(bookings: &[(i64, u64)], from: i64, to: i64) -> u64 {
        bookings.iter().filter(|(at, _)| *at > from && *at <= to).map(|(_, a)| a).sum()
    }

    #[test]
    fn a_window_totals_only_its_own_bookings() {
        let mut series = RollingSeries::default();
        for (at, amount) in [(10, 1), (20, 2), (30, 4), (40, 8)] {
            series.book(at, amount, 100);
        }
        assert_eq!(series.total(10, 30), 6, "(10, 30] holds 20 and 30");
        assert_eq!(series.total(0, 40), 15);
        assert_eq!(series.total(40, 100), 0);
        assert_eq!(series.total(30, 10), 0, "an empty interval");
    }

    #[test]
    fn a_booking_in_the_past_and_a_rescaled_one_shift_later_totals() {
        let mut series = RollingSeries::default();
        series.book(10, 5, 100);
        series.book(30, 5, 100);
        series.book(20, 7, 100);
        assert_eq!(series.total(15, 30), 12, "the clock set back: booked between the two");
        series.adjust(20, -100);
        assert_eq!(series.total(0, 30), 10, "floored at zero, not below");
        series.adjust(25, 50);
        assert_eq!(series.total(0, 30), 10, "no booking at 25: nothing made up");
    }

    #[test]
    fn forgotten_bookings_leave_the_rest_exact() {
        let mut series = RollingSeries::default();
        for at in 1..=10 {
            series.book(at * 10, 1, 30);
        }
        assert!(!series.forget_before_window(100));
        assert_eq!(series.total(70, 100), 3);
        assert_eq!(series.total(0, 100), 3, "only 80, 90 and 100 are kept");
        assert!(series.forget_before_window(1_000));
    }

    #[test]
    fn the_stored_shape_is_the_old_one_and_any_order_loads() {
        let old = r#"{"max_window_ms":100,"entries":[[30,4],[10,1],[20,2]]}"#;
        let series: RollingSeries = serde_json::from_str(old).unwrap();
        assert_eq!(series.total(10, 30), 6);
        let again = serde_json::to_string(&series).unwrap();
        assert_eq!(again, r#"{"max_window_ms":100,"entries":[[10,1],[20,2],[30,4]]}"#);
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        /// Any order of bookings, adjustments and forgetting agrees with
        /// summing what is kept.
        #[test]
        fn agrees_with_summing(
            ops in prop::collection::vec((0i64..200, 0u64..1_000, -1_500i128..1_500, 0u8..8), 1..120),
            queries in prop::collection::vec((-10i64..210, 0i64..120), 1..20),
        ) {
            let mut series = RollingSeries::default();
            let mut kept: Vec<(i64, u64)> = Vec::new();
            for (at, amount, delta, kind) in ops {
                match kind {
                    0 => if let Some(entry) = kept.iter_mut().find(|(t, _)| *t == at) {
                        series.adjust(at, delta);
                        entry.1 = add_floored(entry.1, delta);
                    } else {
                        series.adjust(at, delta);
                    },
                    1 => {
                        series.forget_before_window(at + 60);
                        kept.retain(|(t, _)| *t > at);
                    }
                    _ => {
                        series.book(at, amount, 60);
                        match kept.iter_mut().find(|(t, _)| *t == at) {
                            Some(entry) => entry.1 = add_floored(entry.1, i128::from(amount)),
                            None => kept.push((at, amount)),
                        }
                    }
                }
            }
            for (to, length) in queries {
                prop_assert_eq!(series.total(to - length, to), naive(&kept, to - length, to));
            }
        }
    }
}
