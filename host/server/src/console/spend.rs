//! Spend over time: LLM tokens per UTC day of the last two weeks, stacked
//! by team, pipeline or model, as an SVG drawn here (nothing to fetch).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use arbiter_state::SpendEntry;
use axum::extract::{Query, State};
use axum::response::Response;

use super::Refusal;
use super::html::{esc, page};
use crate::api::blocking;
use crate::state::{AppState, now_ms};

const DAYS: i64 = 14;
const DAY_MS: i64 = 86_400_000;
/// Series drawn; the rest are summed as `other`.
const COLORS: [&str; 7] = ["#2f81f7", "#1f883d", "#d4a72c", "#cf222e", "#8250df", "#0a9396", "#bc4c00"];
const WIDTH: i64 = 760;
const HEIGHT: i64 = 260;
/// Room for the axis labels.
const LEFT: i64 = 70;
const BOTTOM: i64 = 30;

fn key<'a>(entry: &'a SpendEntry, by: &str) -> &'a str {
    match by {
        "pipeline" => &entry.pipeline,
        "model" => &entry.model,
        _ => &entry.team,
    }
}

pub(crate) async fn view(
    State(state): State<AppState>,
    session: super::Session,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, Refusal> {
    let by = query.get("by").map(String::as_str).filter(|b| matches!(*b, "pipeline" | "model")).unwrap_or("team");
    let today = now_ms().div_euclid(DAY_MS) * DAY_MS;
    let since = today - (DAYS - 1) * DAY_MS;
    let decider = state.decider.clone();
    let entries = blocking(move || decider.state().spend(since, today + DAY_MS)).await??;
    let mut body = String::from("<p>Group by: ");
    for option in ["team", "pipeline", "model"] {
        let current = if option == by { " <strong>" } else { " " };
        let _ = write!(
            body,
            "{current}<a href=\"/ui/spend?by={option}\" id=\"by-{option}\">{option}</a>{}",
            if option == by { "</strong>" } else { "" }
        );
    }
    body.push_str("</p>");
    body.push_str(&chart(&entries, by, since));
    body.push_str("<p>Tokens are reservations until a usage report replaces them. For long ranges and rates, chart \
                   <code>arbiter_spend_today</code> and <code>arbiter_llm_reserved_tokens</code> from <code>/metrics</code>.</p>");
    Ok(page("Spend", Some(&session), &body))
}

/// Stacked bars of tokens per day and series.
fn chart(entries: &[SpendEntry], by: &str, since: i64) -> String {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for e in entries {
        *totals.entry(key(e, by)).or_default() += e.prompt_tokens + e.output_tokens;
    }
    let mut series: Vec<(&str, u64)> = totals.into_iter().collect();
    series.sort_by_key(|s| std::cmp::Reverse(s.1));
    let named: Vec<&str> = series.iter().take(COLORS.len()).map(|(k, _)| *k).collect();
    let slot = |k: &str| named.iter().position(|n| *n == k).unwrap_or(named.len());
    let mut days = vec![vec![0u64; named.len() + 1]; DAYS as usize];
    for e in entries {
        let day = (e.day_ms - since).div_euclid(DAY_MS);
        if let Some(row) = usize::try_from(day).ok().and_then(|d| days.get_mut(d)) {
            row[slot(key(e, by))] += e.prompt_tokens + e.output_tokens;
        }
    }
    let max = days.iter().map(|d| d.iter().sum::<u64>()).max().unwrap_or(0).max(1);
    let (plot_w, plot_h) = (WIDTH - LEFT - 10, HEIGHT - BOTTOM - 10);
    let bar_w = plot_w / DAYS;
    let mut svg = format!(
        "<svg id=\"spend-chart\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"tokens per day by {by}\">\
         <line x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#8a94a0\"/>\
         <text x=\"{}\" y=\"14\" text-anchor=\"end\">{max}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
        10 + plot_h,
        LEFT + plot_w,
        10 + plot_h,
        LEFT - 6,
        LEFT - 6,
        10 + plot_h
    );
    for (d, row) in days.iter().enumerate() {
        let x = LEFT + d as i64 * bar_w + 2;
        let mut y = 10 + plot_h;
        for (s, &tokens) in row.iter().enumerate() {
            let h = (tokens as f64 / max as f64 * plot_h as f64).round() as i64;
            if h == 0 {
                continue;
            }
            y -= h;
            let color = COLORS.get(s).copied().unwrap_or("#8a94a0");
            let name = named.get(s).copied().unwrap_or("other");
            let _ = write!(
                svg,
                "<rect x=\"{x}\" y=\"{y}\" width=\"{}\" height=\"{h}\" fill=\"{color}\"><title>{}: {tokens}</title></rect>",
                bar_w - 4,
                esc(name)
            );
        }
        if d % 2 == 1 || d as i64 == DAYS - 1 {
            let label = arbiter_types::format_rfc3339_ms(since + d as i64 * DAY_MS);
            let _ = write!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
                x + bar_w / 2 - 2,
                HEIGHT - 10,
                esc(&label[5..10])
            );
        }
    }
    svg.push_str("</svg><p class=\"legend\">");
    for (s, name) in named.iter().enumerate() {
        let _ = write!(svg, "{} {} ", swatch(COLORS[s]), esc(name));
    }
    if series.len() > named.len() {
        svg.push_str(&swatch("#8a94a0"));
        svg.push_str(" other");
    }
    svg.push_str("</p>");
    svg
}

/// A legend's colour square (an SVG: the page's CSP allows no inline style).
fn swatch(color: &str) -> String {
    format!("<svg width=\"10\" height=\"10\"><rect width=\"10\" height=\"10\" fill=\"{color}\"/></svg>")
}
