//! Budget alerts: when an allowed decision takes a budget past one of its
//! thresholds (e.g. 50, 80, 100 % of the limit), the webhook is told once
//! per window, whichever replica saw it: the first to claim
//! `<budget>|<period>|<threshold>` in the shared state sends it. Checked
//! off the decision path, after the answer.
//!
//! Calendar windows fire once per period and run windows once per run (the
//! run is part of their scope); rolling windows have no period to fire once
//! in and are not alerted on.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use arbiter_types::{Charge, Window};
use globset::{Glob, GlobMatcher};
use serde_json::json;

use crate::state::{AppState, now_ms};

/// Fired alerts the console lists.
const KEPT: usize = 200;
/// A run window's claim lasts as long as its total is kept.
const RUN_CLAIM_MS: i64 = 62 * 86_400_000;
/// Longest calendar period (a month), for how long a claim is kept.
const LONGEST_PERIOD_MS: i64 = 31 * 86_400_000;

/// Thresholds for the budgets whose scope matches a glob, as given by
/// `--budget-alert 'team:*=50,80,100'`.
#[derive(Debug, Clone)]
pub struct AlertRule {
    scope: GlobMatcher,
    thresholds: Vec<u32>,
}

impl AlertRule {
    /// `<scope glob>=<percent>,<percent>...`
    pub fn parse(text: &str) -> Result<Self, String> {
        let (scope, thresholds) = text
            .rsplit_once('=')
            .ok_or_else(|| format!("budget alert `{text}`: expected <scope glob>=<percent>,..."))?;
        let scope = Glob::new(scope).map_err(|e| format!("budget alert `{text}`: {e}"))?.compile_matcher();
        let mut thresholds = thresholds
            .split(',')
            .map(|t| t.trim().parse::<u32>().ok().filter(|t| (1..=1000).contains(t)))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| format!("budget alert `{text}`: thresholds are percents from 1 to 1000"))?;
        thresholds.sort_unstable();
        thresholds.dedup();
        Ok(AlertRule { scope, thresholds })
    }
}

/// An alert that fired.
#[derive(Debug, Clone)]
pub(crate) struct Fired {
    pub(crate) at_ms: i64,
    pub(crate) scope: String,
    pub(crate) window: String,
    pub(crate) threshold: u32,
    pub(crate) used: u64,
    pub(crate) limit: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Alerts {
    rules: Vec<AlertRule>,
    fired: Mutex<VecDeque<Fired>>,
}

/// What a charge's window is called, and the period its alerts fire once in.
fn period(window: Window, now: i64) -> Option<(String, i64, i64)> {
    match window {
        Window::Calendar(unit) => {
            let start = arbiter_state::period_start(unit, now);
            Some((format!("{unit:?}").to_ascii_lowercase(), start, start + LONGEST_PERIOD_MS))
        }
        Window::Run => Some(("run".into(), 0, now + RUN_CLAIM_MS)),
        Window::RollingSeconds(_) => None,
    }
}

impl Alerts {
    pub(crate) fn new(rules: Vec<AlertRule>) -> Self {
        Alerts { rules, fired: Mutex::default() }
    }

    /// Thresholds for `scope`: the first rule that matches it.
    fn thresholds(&self, scope: &str) -> Option<&[u32]> {
        self.rules.iter().find(|r| r.scope.is_match(scope)).map(|r| r.thresholds.as_slice())
    }

    /// Newest first.
    pub(crate) fn recent(&self) -> Vec<Fired> {
        self.fired.lock().unwrap_or_else(PoisonError::into_inner).iter().rev().cloned().collect()
    }

    /// Checks the budgets an allowed decision charged, in the background.
    pub(crate) fn check(&self, state: &AppState, charges: &[Charge]) {
        let watched: Vec<Charge> = charges.iter().filter(|c| self.thresholds(&c.scope).is_some()).cloned().collect();
        if watched.is_empty() {
            return;
        }
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            for charge in watched {
                if let Err(e) = state.alerts.check_one(&state, &charge, now_ms()) {
                    tracing::warn!("budget alert check failed: {e}");
                }
            }
        });
    }

    fn check_one(&self, state: &AppState, charge: &Charge, now: i64) -> Result<(), arbiter_state::StateError> {
        let (Some(thresholds), Some((window, start, until))) =
            (self.thresholds(&charge.scope), period(charge.window, now))
        else {
            return Ok(());
        };
        let store = state.decider.state();
        let used = store.used(&charge.scope, charge.window, charge.unit, now)?;
        let percent = used.saturating_mul(100) / charge.limit.max(1);
        for &threshold in thresholds.iter().filter(|&&t| percent >= u64::from(t)) {
            let unit =
                serde_json::to_value(charge.unit).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            let key = format!("alert|{}|{window}|{unit}|{start}|{threshold}", charge.scope);
            if !store.claim(&key, until, now)? {
                continue;
            }
            let fired = Fired {
                at_ms: now,
                scope: charge.scope.clone(),
                window: window.clone(),
                threshold,
                used,
                limit: charge.limit,
            };
            self.fire(state, &fired, &unit);
        }
        Ok(())
    }

    fn fire(&self, state: &AppState, fired: &Fired, unit: &str) {
        state.metrics.budget_alert(fired.threshold);
        state.audit_event(
            "budget_alert",
            json!({"scope": fired.scope, "window": fired.window, "threshold": fired.threshold, "used": fired.used,
                   "limit": fired.limit}),
        );
        if let Some(webhook) = &state.webhook {
            // `text` is what a Slack incoming webhook shows; the rest is
            // for anything else reading the JSON.
            webhook.send(json!({
                "event": "budget_alert",
                "text": format!(
                    "arbiter: budget `{}` ({}, {unit}) passed {}%: {} of {} used",
                    fired.scope, fired.window, fired.threshold, fired.used, fired.limit
                ),
                "budget": {"scope": fired.scope, "window": fired.window, "unit": unit, "threshold_percent": fired.threshold,
                           "used": fired.used, "limit": fired.limit},
                "at": arbiter_types::format_rfc3339_ms(fired.at_ms),
            }));
        }
        let mut kept = self.fired.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() >= KEPT {
            kept.pop_front();
        }
        kept.push_back(fired.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_a_glob_and_sorted_thresholds() {
        let rule = AlertRule::parse("team:*=100,50,80,80").unwrap();
        assert!(rule.scope.is_match("team:data-platform") && !rule.scope.is_match("pipeline:x"));
        assert_eq!(rule.thresholds, vec![50, 80, 100]);
        for bad in ["team:*", "team:*=", "team:*=0", "team:*=eighty", "[=50"] {
            assert!(AlertRule::parse(bad).is_err(), "{bad}");
        }
    }
}
