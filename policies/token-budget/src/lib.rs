//! `token-budget`: hard token (or money) budgets for LLM requests.
//!
//! An LLM request reserves its worst case (prompt + max output tokens) on
//! every budget: per run, pipeline, agent or team, over the run, a UTC
//! calendar period or a rolling window. If the worst case fits under every
//! limit, the request is allowed with those charges, which the host commits
//! atomically. If not, but the prompt plus `min_output_tokens` fits, it is
//! allowed with an obligation to clamp max output tokens to what fits.
//! Otherwise it is denied with `budget_exhausted`.

use std::collections::BTreeMap;

use arbiter_sdk::host::budgets;
use arbiter_sdk::settings::FieldPath;
use arbiter_sdk::{
    CalendarUnit, Charge, ChargeUnit, LlmRequest, Obligation, Policy, Request, Verdict, Window, export_policy,
};
use serde::Deserialize;

const BUDGET_EXHAUSTED: &str = "budget_exhausted";
const MODEL_NOT_PRICED: &str = "model_not_priced";

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub budgets: Vec<BudgetSetting>,
    /// Clamp instead of deny while at least this many output tokens fit.
    #[serde(default = "default_min_output")]
    pub min_output_tokens: u64,
    /// Prices per model, for budgets counted in money.
    #[serde(default)]
    pub prices: BTreeMap<String, Price>,
}

fn default_min_output() -> u64 {
    256
}

#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct BudgetSetting {
    /// Whose budget: `run`, `pipeline`, `agent` or `team`.
    pub per: Per,
    /// `run`, `minute`, `hour`, `day`, `month`, or `rolling:<seconds>`.
    pub window: String,
    pub limit: u64,
    #[serde(default)]
    pub unit: Unit,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Per {
    Run,
    Pipeline,
    Agent,
    Team,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    #[default]
    Tokens,
    Usd,
}

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

struct Budget {
    per: Per,
    window: Window,
    unit: Unit,
    limit: u64,
}

pub struct TokenBudget {
    budgets: Vec<Budget>,
    min_output_tokens: u64,
    prices: BTreeMap<String, Price>,
}

fn parse_window(text: &str) -> Result<Window, String> {
    Ok(match text {
        "run" => Window::Run,
        "minute" => Window::Calendar(CalendarUnit::Minute),
        "hour" => Window::Calendar(CalendarUnit::Hour),
        "day" => Window::Calendar(CalendarUnit::Day),
        "month" => Window::Calendar(CalendarUnit::Month),
        other => match other.strip_prefix("rolling:").map(str::parse::<u32>) {
            Some(Ok(secs)) if secs > 0 => Window::RollingSeconds(secs),
            _ => return Err(format!("`{other}` is not run, minute, hour, day, month or rolling:<seconds>")),
        },
    })
}

impl Policy for TokenBudget {
    type Settings = Settings;

    fn new(settings: Settings) -> Result<Self, String> {
        if settings.budgets.is_empty() {
            return Err("settings.budgets: at least one budget is needed".into());
        }
        let budgets = settings
            .budgets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let at = FieldPath::root().field("budgets").index(i);
                let window = parse_window(&b.window).map_err(|e| at.field("window").error(e))?;
                if b.per != Per::Run && window == Window::Run {
                    return Err(at.error("a `run` window needs `per = \"run\"`"));
                }
                Ok(Budget { per: b.per, window, unit: b.unit, limit: b.limit })
            })
            .collect::<Result<Vec<_>, String>>()?;
        if let Some((model, _)) =
            settings.prices.iter().find(|(_, p)| !(p.input_per_mtok >= 0.0 && p.output_per_mtok >= 0.0))
        {
            return Err(format!("settings.prices.{model}: prices must be non-negative numbers"));
        }
        Ok(TokenBudget { budgets, min_output_tokens: settings.min_output_tokens, prices: settings.prices })
    }

    fn evaluate(&self, request: &Request) -> Verdict {
        let Some(llm) = request.llm_request() else { return Verdict::allow() };
        let price = self.prices.get(&llm.model).copied();
        if price.is_none() && self.budgets.iter().any(|b| b.unit == Unit::Usd) {
            return Verdict::deny(MODEL_NOT_PRICED, format!("no price for `{}` in a budget counted in USD", llm.model));
        }
        let cost = |output: u64, unit: Unit| match (unit, price) {
            (Unit::Tokens, _) => llm.prompt_tokens.saturating_add(output),
            (Unit::Usd, Some(p)) => micro_usd(llm.prompt_tokens, output, p),
            (Unit::Usd, None) => u64::MAX,
        };
        // The most output tokens every budget still allows after the prompt;
        // `None` once the prompt alone does not fit one of them.
        let mut fits_output = Some(llm.max_output_tokens);
        let mut tightest: Option<(String, u64, u64)> = None;
        for budget in &self.budgets {
            let scope = scope_of(budget.per, request);
            let remaining = budget.limit.saturating_sub(budgets::used(&scope, budget.window, charge_unit(budget.unit)));
            let output = max_output_within(remaining, budget.unit, llm, price);
            if tightest.is_none() || output < fits_output {
                tightest = Some((scope, remaining, budget.limit));
            }
            fits_output = fits_output.min(output);
        }
        let worst_case_fits = fits_output >= Some(llm.max_output_tokens);
        let fits_output = fits_output.unwrap_or(0);
        if !worst_case_fits && fits_output < self.min_output_tokens {
            let (scope, remaining, limit) = tightest.unwrap_or_default();
            return Verdict::deny(
                BUDGET_EXHAUSTED,
                format!(
                    "`{scope}` has {remaining} of {limit} left; the request needs {} prompt tokens plus at least {} output",
                    llm.prompt_tokens, self.min_output_tokens
                ),
            );
        }
        let output = fits_output.min(llm.max_output_tokens);
        let mut verdict = Verdict::allow();
        if !worst_case_fits {
            verdict = verdict.with_obligation(Obligation::ClampMaxOutputTokens(output));
        }
        for budget in &self.budgets {
            verdict = verdict.with_charge(Charge {
                scope: scope_of(budget.per, request),
                window: budget.window,
                unit: charge_unit(budget.unit),
                amount: cost(output, budget.unit),
                limit: budget.limit,
            });
        }
        verdict
    }
}

fn charge_unit(unit: Unit) -> ChargeUnit {
    match unit {
        Unit::Tokens => ChargeUnit::Tokens,
        Unit::Usd => ChargeUnit::MicroUsd,
    }
}

fn scope_of(per: Per, request: &Request) -> String {
    let p = &request.principal;
    match per {
        Per::Run => format!("run:{}/{}", p.pipeline, p.run),
        Per::Pipeline => format!("pipeline:{}", p.pipeline),
        Per::Agent => format!("agent:{}/{}", p.pipeline, p.agent),
        Per::Team => format!("team:{}", p.team),
    }
}

/// Cost in millionths of a USD, rounded up.
fn micro_usd(prompt: u64, output: u64, price: Price) -> u64 {
    (prompt as f64 * price.input_per_mtok + output as f64 * price.output_per_mtok).ceil() as u64
}

/// The most output tokens that fit in `remaining` after the prompt, or
/// `None` when the prompt alone does not fit.
fn max_output_within(remaining: u64, unit: Unit, llm: &LlmRequest, price: Option<Price>) -> Option<u64> {
    match (unit, price) {
        (Unit::Tokens, _) => remaining.checked_sub(llm.prompt_tokens),
        (Unit::Usd, Some(p)) => {
            let left = remaining as f64 - (llm.prompt_tokens as f64 * p.input_per_mtok).ceil();
            if left < 0.0 {
                None
            } else if p.output_per_mtok <= 0.0 {
                Some(u64::MAX)
            } else {
                Some((left / p.output_per_mtok).floor() as u64)
            }
        }
        (Unit::Usd, None) => None,
    }
}

export_policy!(TokenBudget, review = "review.toml", cases = "cases.json");

#[cfg(test)]
mod tests {
    use super::*;
    use arbiter_sdk::testing::{RequestBuilder, policy_from_json, reset_host, set_used};

    fn orders_daily() -> TokenBudget {
        policy_from_json(
            r#"{"budgets": [
                {"per": "run", "window": "run", "limit": 60000},
                {"per": "pipeline", "window": "day", "limit": 200000},
                {"per": "team", "window": "day", "limit": 1000000}]}"#,
        )
        .unwrap()
    }

    fn llm(prompt: u64, max_output: u64) -> Request {
        RequestBuilder::llm_request("claude-sonnet-4-5-20250929", prompt, max_output).run("r1").build()
    }

    const DAY: Window = Window::Calendar(CalendarUnit::Day);

    #[test]
    fn reserves_the_worst_case_on_every_budget() {
        reset_host();
        let verdict = orders_daily().evaluate(&llm(20_000, 4_000));
        assert!(verdict.is_allow() && verdict.obligations.is_empty());
        let scopes: Vec<(&str, u64)> = verdict.charges.iter().map(|c| (c.scope.as_str(), c.amount)).collect();
        assert_eq!(
            scopes,
            [("run:orders_daily/r1", 24_000), ("pipeline:orders_daily", 24_000), ("team:data-platform", 24_000)]
        );
    }

    #[test]
    fn clamps_when_only_part_of_the_output_fits() {
        reset_host();
        set_used("run:orders_daily/r1", Window::Run, ChargeUnit::Tokens, 43_000);
        let verdict = orders_daily().evaluate(&llm(15_000, 4_000));
        assert!(verdict.is_allow());
        assert_eq!(verdict.obligations, [Obligation::ClampMaxOutputTokens(2_000)]);
        assert!(verdict.charges.iter().all(|c| c.amount == 17_000));
    }

    #[test]
    fn denies_when_not_even_the_minimum_output_fits() {
        reset_host();
        set_used("run:orders_daily/r1", Window::Run, ChargeUnit::Tokens, 59_200);
        assert_eq!(orders_daily().evaluate(&llm(5_000, 1_000)).codes(), [BUDGET_EXHAUSTED]);
        reset_host();
        set_used("pipeline:orders_daily", DAY, ChargeUnit::Tokens, 190_000);
        let verdict = orders_daily().evaluate(&llm(17_000, 2_000));
        assert_eq!(verdict.codes(), [BUDGET_EXHAUSTED]);
        assert!(verdict.reasons[0].message.contains("pipeline:orders_daily"), "{}", verdict.reasons[0].message);
        reset_host();
        assert_eq!(orders_daily().evaluate(&llm(90_000, 1_000)).codes(), [BUDGET_EXHAUSTED]);
        // Even a request asking for no output must fit its prompt.
        assert_eq!(orders_daily().evaluate(&llm(90_000, 0)).codes(), [BUDGET_EXHAUSTED]);
    }

    #[test]
    fn counts_money_with_a_price_table() {
        reset_host();
        let policy: TokenBudget = policy_from_json(
            r#"{"budgets": [{"per": "team", "window": "month", "limit": 1000000, "unit": "usd"}],
                "prices": {"claude-sonnet-4-5-20250929": {"input_per_mtok": 3.0, "output_per_mtok": 15.0}}}"#,
        )
        .unwrap();
        let verdict = policy.evaluate(&llm(10_000, 1_000));
        assert_eq!(verdict.charges[0].amount, 45_000, "10k × $3 + 1k × $15 per Mtok = $0.045");
        assert_eq!(verdict.charges[0].unit, ChargeUnit::MicroUsd);
        let unpriced = RequestBuilder::llm_request("gpt-4o-2024-08-06", 1, 1).build();
        assert_eq!(policy.evaluate(&unpriced).codes(), [MODEL_NOT_PRICED]);
    }

    #[test]
    fn checks_settings() {
        let err = policy_from_json::<TokenBudget>(r#"{"budgets": [{"per": "team", "window": "week", "limit": 1}]}"#)
            .err()
            .unwrap();
        assert!(err.contains("budgets[0].window"), "{err}");
        assert!(
            policy_from_json::<TokenBudget>(r#"{"budgets": [{"per": "team", "window": "run", "limit": 1}]}"#).is_err()
        );
        assert!(
            policy_from_json::<TokenBudget>(r#"{"budgets": [{"per": "run", "window": "rolling:3600", "limit": 1}]}"#)
                .is_ok()
        );
    }
}
