//! Budgets of the current period as bars, the one soonest to run out
//! first; breakers with their state and failure rate; budget alerts fired.

use std::fmt::Write;

use arbiter_state::{BreakerState, BudgetGauge};
use axum::extract::State;
use axum::response::Response;

use super::Refusal;
use super::html::{esc, page, time};
use crate::api::blocking;
use crate::state::{AppState, now_ms};

/// When `gauge` runs out at the rate it was used since its period began:
/// now if it has, `None` if nothing was used yet.
pub(crate) fn runs_out_at(gauge: &BudgetGauge, now: i64) -> Option<i64> {
    if gauge.used >= gauge.limit {
        return Some(now);
    }
    let elapsed = (now - gauge.period_start_ms).max(1) as f64;
    let rate = gauge.used as f64 / elapsed;
    (rate > 0.0).then(|| now + ((gauge.limit - gauge.used) as f64 / rate) as i64)
}

pub(crate) async fn view(State(state): State<AppState>, session: super::Session) -> Result<Response, Refusal> {
    let now = now_ms();
    let decider = state.decider.clone();
    let gauges = blocking(move || decider.state().gauges(now)).await??;
    let mut budgets: Vec<(Option<i64>, &BudgetGauge)> =
        gauges.budgets.iter().map(|g| (runs_out_at(g, now), g)).collect();
    budgets.sort_by_key(|(out, g)| (out.unwrap_or(i64::MAX), u64::MAX - g.used.saturating_mul(1000) / g.limit.max(1)));
    let mut body = String::from(
        "<h2>Budgets (current period)</h2><table id=\"budgets\"><tr><th>Scope</th><th>Window</th><th>Used</th>\
         <th></th><th>Runs out (at this rate)</th></tr>",
    );
    for (out, g) in &budgets {
        let percent = (g.used.saturating_mul(100) / g.limit.max(1)).min(100);
        // An SVG, not a styled div: the page's CSP allows no inline style.
        let color = if percent >= 100 {
            "#cf222e"
        } else if percent >= 80 {
            "#d4a72c"
        } else {
            "#2f81f7"
        };
        let out = match out {
            Some(at) if *at <= now => "now".to_owned(),
            Some(at) => time(*at, false),
            None => "—".to_owned(),
        };
        let _ = write!(
            body,
            "<tr class=\"budget\" data-scope=\"{0}\" data-percent=\"{percent}\"><td>{0}</td><td>{1}</td><td>{2} / {3} {4}</td>\
             <td><svg class=\"bar\" width=\"200\" height=\"14\"><title>{percent}%</title>\
             <rect width=\"200\" height=\"14\" fill=\"#e1e4e8\"/><rect width=\"{width}\" height=\"14\" fill=\"{color}\"/></svg> {percent}%</td><td>{out}</td></tr>",
            esc(&g.scope),
            esc(&g.window),
            g.used,
            g.limit,
            esc(&g.unit),
            width = percent * 2,
        );
    }
    body.push_str(
        "</table><h2>Breakers</h2><table id=\"breakers\"><tr><th>Breaker</th><th>State</th><th>Failure rate</th></tr>",
    );
    for (key, breaker) in &gauges.breakers {
        let (name, detail) = match breaker {
            BreakerState::Closed => ("closed", String::new()),
            BreakerState::Open { until_ms } => ("open", format!(" until {}", time(*until_ms, false))),
            BreakerState::HalfOpen { permits_left } => ("half_open", format!(" ({permits_left} probes left)")),
        };
        let rate = gauges.failure_percent.get(key).map_or("—".to_owned(), |p| format!("{p}%"));
        let _ = write!(
            body,
            "<tr class=\"breaker\" data-key=\"{0}\"><td>{0}</td><td class=\"state-{name}\">{name}{detail}</td><td>{rate}</td></tr>",
            esc(key)
        );
    }
    body.push_str("</table><h2>Budget alerts fired</h2><table id=\"alerts\"><tr><th>When</th><th>Budget</th><th>Threshold</th><th>Used</th></tr>");
    for alert in state.alerts.recent() {
        let _ = write!(
            body,
            "<tr class=\"alert\"><td>{}</td><td>{} ({})</td><td>{}%</td><td>{} / {}</td></tr>",
            time(alert.at_ms, false),
            esc(&alert.scope),
            esc(&alert.window),
            alert.threshold,
            alert.used,
            alert.limit
        );
    }
    body.push_str("</table>");
    Ok(page("Budgets & breakers", Some(&session), &body))
}
