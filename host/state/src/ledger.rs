//! Budgets: windowed totals and the reservations booked against them.

use std::collections::HashMap;

use arbiter_types::{CalendarUnit, Charge, ChargeUnit, Window};
use serde::{Deserialize, Serialize};

use crate::calendar::period_start;
use crate::ops::CommitRefused;
use crate::rolling::{RollingSeries, add_floored};

/// Run and calendar totals are kept this long after their last booking.
pub(crate) const TOTAL_RETENTION_MS: i64 = 62 * 86_400_000;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Ledger {
    /// Run- and calendar-window totals.
    totals: HashMap<String, Total>,
    /// Rolling-window bookings per series (unit and scope).
    rolling: HashMap<String, RollingSeries>,
    /// Unreconciled reservations by request id.
    reservations: HashMap<String, Reservation>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Total {
    used: u64,
    last_ms: i64,
    /// The limit of the last charge booked here, for gauges.
    #[serde(default)]
    limit: u64,
}

/// A budget of the current calendar period, for metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetGauge {
    pub scope: String,
    /// `minute`, `hour`, `day` or `month`.
    pub window: String,
    /// `tokens` or `micro_usd`.
    pub unit: String,
    pub used: u64,
    pub limit: u64,
    /// Start of the current period (ms since the epoch): what a budget
    /// alert fires once per, and where the burn rate is measured from.
    #[serde(default)]
    pub period_start_ms: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Reservation {
    pub(crate) created_ms: i64,
    pub(crate) bookings: Vec<Booking>,
    /// What the bookings were sized for (the LLM worst case), to scale them
    /// to actual usage.
    pub(crate) reserved_tokens: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Booking {
    pub(crate) place: Place,
    pub(crate) amount: u64,
}

impl Booking {
    /// The change that replaces this booking's share of `reserved_tokens`
    /// with its share of `actual_tokens`. None for a booking not sized on
    /// tokens (a charged tool call): a usage report must not refund or
    /// multiply it.
    pub(crate) fn reconciliation_delta(&self, actual_tokens: u64, reserved_tokens: u64) -> i128 {
        if reserved_tokens == 0 {
            return 0;
        }
        let actual = u128::from(self.amount) * u128::from(actual_tokens) / u128::from(reserved_tokens);
        actual as i128 - i128::from(self.amount)
    }
}

/// Where a charge is booked: a run or calendar total, or an entry of a
/// rolling series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum Place {
    Total(String),
    Rolling { series: String, at_ms: i64 },
}

fn unit_name(unit: ChargeUnit) -> &'static str {
    match unit {
        ChargeUnit::Tokens => "tokens",
        ChargeUnit::MicroUsd => "micro_usd",
    }
}

/// A rolling window's length in ms.
pub(crate) fn rolling_window_ms(secs: u32) -> i64 {
    i64::from(secs) * 1000
}

/// Where a charge made at `now_ms` is booked.
pub(crate) fn place_of(scope: &str, window: Window, unit: ChargeUnit, now_ms: i64) -> Place {
    let unit = unit_name(unit);
    match window {
        Window::Run => Place::Total(format!("{unit}|{scope}|run")),
        Window::Calendar(cal) => {
            Place::Total(format!("{unit}|{scope}|{cal:?}:{}", period_start(cal, now_ms)).to_ascii_lowercase())
        }
        Window::RollingSeconds(_) => Place::Rolling { series: format!("{unit}|{scope}"), at_ms: now_ms },
    }
}

impl Ledger {
    /// Units booked on `scope` in the window containing `now_ms`.
    pub(crate) fn used(&self, scope: &str, window: Window, unit: ChargeUnit, now_ms: i64) -> u64 {
        match (place_of(scope, window, unit, now_ms), window) {
            (Place::Total(key), _) => self.totals.get(&key).map_or(0, |t| t.used),
            (Place::Rolling { series, .. }, Window::RollingSeconds(secs)) => {
                let from = now_ms.saturating_sub(rolling_window_ms(secs));
                self.rolling.get(&series).map_or(0, |s| s.total(from, now_ms))
            }
            (Place::Rolling { .. }, _) => 0,
        }
    }

    /// Whether a reservation is open under `request_id`.
    pub(crate) fn is_open(&self, request_id: &str) -> bool {
        self.reservations.contains_key(request_id)
    }

    /// Checks every charge against its limit (charges on the same window
    /// add up), and books them all, or none.
    pub(crate) fn reserve(
        &mut self,
        request_id: &str,
        charges: &[Charge],
        reserved_tokens: u64,
        now_ms: i64,
    ) -> Result<(), CommitRefused> {
        let mut pending: Vec<(Place, &Charge, u64)> = Vec::new();
        for charge in charges {
            let place = place_of(&charge.scope, charge.window, charge.unit, now_ms);
            let earlier: u64 = pending.iter().filter(|(p, _, _)| *p == place).map(|(_, _, a)| a).sum();
            let used = self.used(&charge.scope, charge.window, charge.unit, now_ms).saturating_add(earlier);
            if used.saturating_add(charge.amount) > charge.limit {
                return Err(CommitRefused::BudgetExhausted {
                    scope: charge.scope.clone(),
                    used,
                    amount: charge.amount,
                    limit: charge.limit,
                });
            }
            pending.push((place, charge, charge.amount));
        }
        let mut bookings = Vec::with_capacity(pending.len());
        for (place, charge, amount) in pending {
            self.book(&place, charge.window, amount, now_ms);
            if let Place::Total(key) = &place
                && let Some(total) = self.totals.get_mut(key)
            {
                total.limit = charge.limit;
            }
            bookings.push(Booking { place, amount });
        }
        if !bookings.is_empty() {
            self.reservations
                .insert(request_id.to_owned(), Reservation { created_ms: now_ms, bookings, reserved_tokens });
        }
        Ok(())
    }

    /// Books `amount` at `place` for a charge on `window`.
    fn book(&mut self, place: &Place, window: Window, amount: u64, now_ms: i64) {
        match (place, window) {
            (Place::Rolling { series, at_ms }, Window::RollingSeconds(secs)) => {
                self.rolling.entry(series.clone()).or_default().book(*at_ms, amount, rolling_window_ms(secs));
            }
            _ => self.add(place, i128::from(amount), now_ms),
        }
    }

    /// Adds `delta` to what is booked at `place`, floored at zero.
    fn add(&mut self, place: &Place, delta: i128, now_ms: i64) {
        match place {
            Place::Total(key) => {
                let total = self.totals.entry(key.clone()).or_default();
                total.used = add_floored(total.used, delta);
                total.last_ms = total.last_ms.max(now_ms);
            }
            Place::Rolling { series, at_ms } => {
                if let Some(series) = self.rolling.get_mut(series) {
                    series.adjust(*at_ms, delta);
                }
            }
        }
    }

    /// Budgets of the calendar periods containing `now_ms`. Run budgets are
    /// left out: one series per run would grow without bound.
    pub(crate) fn gauges(&self, now_ms: i64) -> Vec<BudgetGauge> {
        let mut gauges: Vec<BudgetGauge> = self
            .totals
            .iter()
            .filter_map(|(key, total)| calendar_gauge(key, total.used, total.limit, now_ms))
            .collect();
        sort_gauges(&mut gauges);
        gauges
    }

    pub(crate) fn reservation(&self, request_id: &str) -> Option<&Reservation> {
        self.reservations.get(request_id)
    }

    /// Replaces a reservation with actual usage: every booking is scaled by
    /// `actual_tokens / reserved_tokens`. Returns the scale applied, as
    /// (numerator, denominator), or `None` if there was no reservation.
    pub(crate) fn reconcile(&mut self, request_id: &str, actual_tokens: u64, now_ms: i64) -> Option<(u64, u64)> {
        let reservation = self.reservations.remove(request_id)?;
        for booking in &reservation.bookings {
            let delta = booking.reconciliation_delta(actual_tokens, reservation.reserved_tokens);
            self.add(&booking.place, delta, now_ms);
        }
        Some((actual_tokens, reservation.reserved_tokens.max(1)))
    }

    /// Finalises reservations older than `ttl_ms` at their reserved amount,
    /// and drops bookings no window can reach any more.
    pub(crate) fn expire(&mut self, now_ms: i64, ttl_ms: i64) {
        self.reservations.retain(|_, r| r.created_ms + ttl_ms >= now_ms);
        self.totals.retain(|_, t| t.last_ms + TOTAL_RETENTION_MS >= now_ms);
        self.rolling.retain(|_, series| !series.forget_before_window(now_ms));
    }
}

/// The gauge of a calendar total (key as [`place_of`] makes it), if it is
/// of the period containing `now_ms`.
pub(crate) fn calendar_gauge(key: &str, used: u64, limit: u64, now_ms: i64) -> Option<BudgetGauge> {
    let mut parts = key.splitn(3, '|');
    let (unit, scope, window) = (parts.next()?, parts.next()?, parts.next()?);
    let (unit_name, start) = window.split_once(':')?;
    let cal = [CalendarUnit::Minute, CalendarUnit::Hour, CalendarUnit::Day, CalendarUnit::Month]
        .into_iter()
        .find(|c| format!("{c:?}").to_ascii_lowercase() == unit_name)?;
    let start = start.parse::<i64>().ok()?;
    (start == period_start(cal, now_ms)).then(|| BudgetGauge {
        scope: scope.to_owned(),
        window: unit_name.to_owned(),
        unit: unit.to_owned(),
        used,
        limit,
        period_start_ms: start,
    })
}

pub(crate) fn sort_gauges(gauges: &mut [BudgetGauge]) {
    gauges.sort_by(|a, b| (&a.scope, &a.window, &a.unit).cmp(&(&b.scope, &b.window, &b.unit)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_types::CalendarUnit;

    fn charge(scope: &str, window: Window, amount: u64, limit: u64) -> Charge {
        Charge { scope: scope.into(), window, unit: ChargeUnit::Tokens, amount, limit }
    }

    const DAY: Window = Window::Calendar(CalendarUnit::Day);

    #[test]
    fn reserves_all_or_nothing() {
        let mut ledger = Ledger::default();
        ledger.reserve("a", &[charge("run:1", Window::Run, 50, 60), charge("team", DAY, 50, 1000)], 50, 0).unwrap();
        let refused = ledger
            .reserve("b", &[charge("team", DAY, 20, 1000), charge("run:1", Window::Run, 20, 60)], 20, 1)
            .unwrap_err();
        assert!(matches!(refused, CommitRefused::BudgetExhausted { ref scope, used: 50, .. } if scope == "run:1"));
        assert_eq!(ledger.used("team", DAY, ChargeUnit::Tokens, 2), 50, "nothing of the refused commit stays");
    }

    #[test]
    fn charges_on_one_scope_in_one_commit_add_up() {
        let mut ledger = Ledger::default();
        let refused = ledger.reserve("a", &[charge("s", Window::Run, 40, 60), charge("s", Window::Run, 40, 60)], 80, 0);
        assert!(refused.is_err());
    }

    #[test]
    fn calendar_windows_reset_at_utc_boundaries() {
        let mut ledger = Ledger::default();
        let day = 86_400_000;
        ledger.reserve("a", &[charge("p", DAY, 100, 100)], 100, day - 1).unwrap();
        assert!(ledger.reserve("b", &[charge("p", DAY, 1, 100)], 1, day - 1).is_err());
        ledger.reserve("c", &[charge("p", DAY, 100, 100)], 100, day).unwrap();
    }

    #[test]
    fn gauges_show_current_calendar_budgets_only() {
        let mut ledger = Ledger::default();
        ledger
            .reserve("a", &[charge("pipeline:p", DAY, 10, 100), charge("run:p/1", Window::Run, 10, 50)], 10, 0)
            .unwrap();
        let gauges = ledger.gauges(1);
        assert_eq!(gauges.len(), 1);
        assert_eq!(
            (gauges[0].scope.as_str(), gauges[0].window.as_str(), gauges[0].used, gauges[0].limit),
            ("pipeline:p", "day", 10, 100)
        );
        assert!(ledger.gauges(86_400_000).is_empty(), "yesterday's budget is not today's");
    }

    #[test]
    fn rolling_windows_slide() {
        let mut ledger = Ledger::default();
        let w = Window::RollingSeconds(10);
        ledger.reserve("a", &[charge("s", w, 5, 10)], 5, 0).unwrap();
        ledger.reserve("b", &[charge("s", w, 5, 10)], 5, 5_000).unwrap();
        assert!(ledger.reserve("c", &[charge("s", w, 1, 10)], 1, 9_999).is_err());
        ledger.reserve("d", &[charge("s", w, 5, 10)], 5, 10_000).unwrap();
        ledger.expire(10_000, 3_600_000);
        assert_eq!(ledger.used("s", w, ChargeUnit::Tokens, 10_000), 10);
    }

    #[test]
    fn reconciliation_replaces_the_reservation() {
        let mut ledger = Ledger::default();
        let money = Charge { unit: ChargeUnit::MicroUsd, ..charge("team", DAY, 1_000, 10_000) };
        ledger.reserve("a", &[charge("run:1", Window::Run, 24_000, 60_000), money], 24_000, 0).unwrap();
        assert_eq!(ledger.reconcile("a", 21_500, 1), Some((21_500, 24_000)));
        assert_eq!(ledger.used("run:1", Window::Run, ChargeUnit::Tokens, 2), 21_500);
        assert_eq!(ledger.used("team", DAY, ChargeUnit::MicroUsd, 2), 895);
        assert_eq!(ledger.reconcile("a", 1, 3), None, "a second report finds no reservation");
    }

    #[test]
    fn a_usage_report_cannot_rescale_a_charge_not_sized_on_tokens() {
        let mut ledger = Ledger::default();
        let per_call = Charge { unit: ChargeUnit::MicroUsd, ..charge("team", DAY, 100, 1_000) };
        ledger.reserve("tool", &[per_call], 0, 0).unwrap();
        ledger.reconcile("tool", 0, 1);
        assert_eq!(ledger.used("team", DAY, ChargeUnit::MicroUsd, 2), 100, "not refunded");
    }

    #[test]
    fn expired_reservations_keep_their_amount() {
        let mut ledger = Ledger::default();
        ledger.reserve("a", &[charge("run:1", Window::Run, 100, 1000)], 100, 0).unwrap();
        ledger.expire(10_000, 5_000);
        assert!(ledger.reservation("a").is_none());
        assert_eq!(ledger.used("run:1", Window::Run, ChargeUnit::Tokens, 10_000), 100);
    }
}
