//! What every contract version shares, written once: the host side of the
//! capability interfaces, the conversions of the shapes that did not
//! change, the checks of a returned verdict, and the calls into a policy.
//!
//! 0.1.0 and 0.2.0 each expand [`contract_glue!`] beside their own
//! `bindings` alias and provide `action` (the request it is handed) and
//! `obligation` (the obligations it may return). 0.3.0 changed only
//! `history`, and reuses 0.2.0's expansion for everything else
//! (`contract::v0_3`).

/// Bounds on a verdict; a policy that exceeds them has faulted.
pub(crate) const MAX_REASONS: usize = 16;
pub(crate) const MAX_CODE_BYTES: usize = 64;
pub(crate) const MAX_MESSAGE_BYTES: usize = 4096;
pub(crate) const MAX_APPROVERS: usize = 32;
pub(crate) const MAX_NAME_BYTES: usize = 256;
/// Obligations of one verdict: one per listed tool hidden, plus redactions
/// and the rest.
pub(crate) const MAX_OBLIGATIONS: usize = arbiter_types::MAX_LISTED_TOOLS + 256;
pub(crate) const MAX_CHARGES: usize = 16;
pub(crate) const MAX_BREAKERS: usize = 8;

/// A reason code as the contract requires: snake_case, bounded.
pub(crate) fn check_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= MAX_CODE_BYTES
        && code.starts_with(|c: char| c.is_ascii_lowercase())
        && code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

macro_rules! contract_glue {
    () => {
        use arbiter_types::{
            BreakerConfig, BreakerGuard, BreakerWindow, CalendarUnit, Charge, ChargeUnit, Environment, Escalation,
            Principal, Reason, Verdict, VerdictKind, Window,
        };
        use serde_json::{Map, Value};
        use wasmtime::Store;
        use wasmtime::component::{HasSelf, Linker};

        use self::bindings::arbiter::policy::{breakers, budgets, clock, history, log, types as wit};
        use self::bindings::{Policy, PolicyPre};
        use crate::contract::shared::*;
        use crate::sandbox::{SandboxState, capability_refused, state_error};
        use arbiter_component::Capability;

        /// Links the capabilities granted and imported, and the types.
        pub(crate) fn link(
            linker: &mut Linker<SandboxState>,
            capabilities: impl Iterator<Item = Capability>,
        ) -> wasmtime::Result<()> {
            for capability in capabilities {
                match capability {
                    Capability::Log => log::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
                    Capability::Clock => clock::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
                    Capability::Budgets => budgets::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
                    Capability::History => history::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
                    Capability::Breakers => breakers::add_to_linker::<_, HasSelf<_>>(linker, |s| s)?,
                }
            }
            wit::add_to_linker::<_, HasSelf<_>>(linker, |s| s)
        }

        crate::contract::shared::policy_calls!();

        /// The request a policy of this version is handed; an error for an
        /// action this version cannot express (the policy then faults: a
        /// policy is never skipped).
        pub(crate) fn request(input: &crate::contract::Input<'_>) -> Result<wit::Request, String> {
            let request = input.request;
            Ok(wit::Request {
                id: request.id.clone(),
                principal: principal(&request.principal),
                action: action(input)?,
                timestamp_ms: input.now_ms,
                labels: request.labels.clone(),
            })
        }

        fn principal(p: &Principal) -> wit::Principal {
            wit::Principal {
                pipeline: p.pipeline.clone(),
                agent: p.agent.clone(),
                team: p.team.clone(),
                environment: match p.environment {
                    Environment::Dev => wit::Environment::Dev,
                    Environment::Staging => wit::Environment::Staging,
                    Environment::Prod => wit::Environment::Prod,
                },
                run: p.run.clone(),
            }
        }

        fn tool_facts(facts: &arbiter_types::ToolFacts) -> wit::ToolFacts {
            wit::ToolFacts {
                irreversible: facts.irreversible,
                target_resource: facts.resource.clone(),
                region: facts.region.clone(),
            }
        }

        fn llm_request(llm: &arbiter_types::LlmRequest) -> wit::LlmRequest {
            wit::LlmRequest {
                model: llm.model.clone(),
                prompt_tokens: llm.prompt_tokens,
                prompt_tokens_estimated: llm.prompt_tokens_estimated,
                max_output_tokens: llm.max_output_tokens,
            }
        }

        /// Top-level members of a JSON arguments object, in order.
        pub(crate) fn arguments(map: &Map<String, Value>) -> Vec<wit::Argument> {
            map.iter().map(|(name, value)| wit::Argument { name: name.clone(), value: arg_value(value) }).collect()
        }

        fn arg_value(value: &Value) -> wit::ArgValue {
            match value {
                Value::Null => wit::ArgValue::Null,
                Value::Bool(b) => wit::ArgValue::Boolean(*b),
                Value::Number(n) => match (n.as_i64(), n.as_f64()) {
                    (Some(i), _) => wit::ArgValue::Integer(i),
                    (None, Some(f)) => wit::ArgValue::Float(f),
                    (None, None) => wit::ArgValue::Json(n.to_string()),
                },
                Value::String(s) => wit::ArgValue::Text(s.clone()),
                Value::Array(_) | Value::Object(_) => wit::ArgValue::Json(value.to_string()),
            }
        }

        /// Checks a returned verdict against the contract's rules and bounds.
        pub(crate) fn verdict_from_wit(verdict: wit::Verdict) -> Result<Verdict, String> {
            if verdict.reasons.len() > MAX_REASONS {
                return Err(format!("{} reasons; at most {MAX_REASONS} are accepted", verdict.reasons.len()));
            }
            if verdict.obligations.len() > MAX_OBLIGATIONS {
                return Err(format!("{} obligations; at most {MAX_OBLIGATIONS}", verdict.obligations.len()));
            }
            if verdict.charges.len() > MAX_CHARGES {
                return Err(format!("{} charges; at most {MAX_CHARGES}", verdict.charges.len()));
            }
            if verdict.breakers.len() > MAX_BREAKERS {
                return Err(format!("{} breakers; at most {MAX_BREAKERS}", verdict.breakers.len()));
            }
            let reasons = verdict
                .reasons
                .into_iter()
                .enumerate()
                .map(|(i, r)| check_reason(i, r))
                .collect::<Result<Vec<_>, _>>()?;
            let (kind, escalation) = match verdict.decision {
                wit::Decision::Allow => (VerdictKind::Allow, None),
                wit::Decision::Deny => (VerdictKind::Deny, None),
                wit::Decision::Escalate(e) => (VerdictKind::Escalate, Some(check_escalation(e)?)),
            };
            if kind != VerdictKind::Allow && reasons.is_empty() {
                return Err(format!("a {} verdict must give at least one reason", kind.as_str()));
            }
            let obligations = verdict.obligations.into_iter().map(obligation).collect::<Result<Vec<_>, _>>()?;
            let charges = verdict.charges.into_iter().map(check_charge).collect::<Result<Vec<_>, _>>()?;
            let breakers = verdict
                .breakers
                .into_iter()
                .map(|g| {
                    if g.key.is_empty() || g.key.len() > MAX_NAME_BYTES {
                        return Err(format!("a breaker key must be 1..={MAX_NAME_BYTES} bytes"));
                    }
                    Ok(BreakerGuard { config: check_breaker_config(g.config)?, key: g.key })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Verdict { kind, escalation, reasons, obligations, charges, breakers })
        }

        fn check_reason(index: usize, reason: wit::Reason) -> Result<Reason, String> {
            if !check_code(&reason.code) {
                let shown: String = reason.code.chars().take(MAX_CODE_BYTES).collect();
                return Err(format!(
                    "reason {index} has code `{shown}`; codes are snake_case, 1..={MAX_CODE_BYTES} bytes"
                ));
            }
            if reason.message.len() > MAX_MESSAGE_BYTES {
                return Err(format!(
                    "reason {index} ({}) has a {}-byte message; at most {MAX_MESSAGE_BYTES} bytes",
                    reason.code,
                    reason.message.len()
                ));
            }
            Ok(Reason { code: reason.code, message: reason.message })
        }

        fn check_escalation(e: wit::Escalation) -> Result<Escalation, String> {
            if e.approvers.is_empty() || e.approvers.len() > MAX_APPROVERS {
                return Err(format!("an escalation needs 1..={MAX_APPROVERS} approvers, got {}", e.approvers.len()));
            }
            if let Some(bad) = e.approvers.iter().find(|a| a.is_empty() || a.len() > MAX_NAME_BYTES) {
                return Err(format!(
                    "approver `{}` must be 1..={MAX_NAME_BYTES} bytes",
                    bad.chars().take(40).collect::<String>()
                ));
            }
            if e.valid_for_seconds == 0 {
                return Err("an escalation must stay valid for at least one second".to_owned());
            }
            Ok(Escalation { approvers: e.approvers, valid_for_seconds: e.valid_for_seconds })
        }

        fn check_charge(c: wit::Charge) -> Result<Charge, String> {
            if c.scope.is_empty() || c.scope.len() > MAX_NAME_BYTES {
                return Err(format!("a charge scope must be 1..={MAX_NAME_BYTES} bytes"));
            }
            let window = check_window(c.window).map_err(|e| format!("charge `{}`: {e}", c.scope))?;
            let unit = unit(c.unit);
            Ok(Charge { scope: c.scope, window, unit, amount: c.amount, limit: c.limit })
        }

        fn check_window(window: wit::Window) -> Result<Window, String> {
            Ok(match window {
                wit::Window::Run => Window::Run,
                wit::Window::RollingSeconds(0) => return Err("zero-length window".to_owned()),
                wit::Window::RollingSeconds(s) => Window::RollingSeconds(s),
                wit::Window::Calendar(unit) => Window::Calendar(match unit {
                    wit::CalendarUnit::Minute => CalendarUnit::Minute,
                    wit::CalendarUnit::Hour => CalendarUnit::Hour,
                    wit::CalendarUnit::Day => CalendarUnit::Day,
                    wit::CalendarUnit::Month => CalendarUnit::Month,
                }),
            })
        }

        fn unit(unit: wit::ChargeUnit) -> ChargeUnit {
            match unit {
                wit::ChargeUnit::Tokens => ChargeUnit::Tokens,
                wit::ChargeUnit::MicroUsd => ChargeUnit::MicroUsd,
            }
        }

        fn check_breaker_config(c: wit::BreakerConfig) -> Result<BreakerConfig, String> {
            let percent_ok = |p: u8| (1..=100).contains(&p);
            let window = match c.window {
                wit::BreakerWindow::Count(0) | wit::BreakerWindow::Seconds(0) => {
                    return Err("a breaker window must be positive".to_owned());
                }
                wit::BreakerWindow::Count(n) => BreakerWindow::Count(n),
                wit::BreakerWindow::Seconds(s) => BreakerWindow::Seconds(s),
            };
            if !percent_ok(c.failure_rate_percent) || c.slow_call_rate_percent.is_some_and(|p| !percent_ok(p)) {
                return Err("breaker rates are percentages from 1 to 100".to_owned());
            }
            if c.half_open_calls == 0 {
                return Err("a breaker must admit at least one half-open call".to_owned());
            }
            Ok(BreakerConfig {
                window,
                minimum_calls: c.minimum_calls,
                failure_rate_percent: c.failure_rate_percent,
                slow_call_ms: c.slow_call_ms,
                slow_call_rate_percent: c.slow_call_rate_percent,
                open_seconds: c.open_seconds,
                half_open_calls: c.half_open_calls,
                max_half_open_seconds: c.max_half_open_seconds,
            })
        }

        impl wit::Host for SandboxState {}

        impl log::Host for SandboxState {
            fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
                let level = match level {
                    log::Level::Debug => tracing::Level::DEBUG,
                    log::Level::Info => tracing::Level::INFO,
                    log::Level::Warn => tracing::Level::WARN,
                    log::Level::Error => tracing::Level::ERROR,
                };
                self.host_call(|s| {
                    s.log(level, &message);
                    Ok(())
                })
            }
        }

        impl clock::Host for SandboxState {
            fn now_ms(&mut self) -> wasmtime::Result<i64> {
                self.host_call(|s| Ok(s.decision()?.now_ms))
            }
        }

        impl budgets::Host for SandboxState {
            fn used(&mut self, scope: String, window: wit::Window, unit: wit::ChargeUnit) -> wasmtime::Result<u64> {
                self.host_call(|s| {
                    let d = s.decision()?;
                    let window = check_window(window).map_err(capability_refused)?;
                    d.state.used(&scope, window, self::unit(unit), d.now_ms).map_err(state_error)
                })
            }
        }

        impl history::Host for SandboxState {
            fn tool_calls(
                &mut self,
                tool: Option<String>,
                since_ms: i64,
            ) -> wasmtime::Result<Vec<history::PastToolCall>> {
                self.host_call(|s| {
                    let d = s.decision()?;
                    let calls = d.state.tool_calls(&d.run, tool.as_deref(), since_ms).map_err(state_error)?;
                    Ok(calls
                        .into_iter()
                        .map(|c| history::PastToolCall {
                            request_id: c.request_id,
                            timestamp_ms: c.timestamp_ms,
                            tool: c.tool,
                            arguments: arguments(&c.arguments),
                        })
                        .collect())
                })
            }

            fn count_tool_calls(&mut self, since_ms: i64) -> wasmtime::Result<u32> {
                self.host_call(|s| {
                    let d = s.decision()?;
                    d.state.count_tool_calls(&d.run, since_ms).map_err(state_error)
                })
            }
        }

        impl breakers::Host for SandboxState {
            fn state(&mut self, key: String, config: wit::BreakerConfig) -> wasmtime::Result<breakers::BreakerState> {
                self.host_call(|s| {
                    let d = s.decision()?;
                    let config = check_breaker_config(config).map_err(capability_refused)?;
                    Ok(match d.state.breaker_state(&key, &config, d.now_ms).map_err(state_error)? {
                        arbiter_state::BreakerState::Closed => breakers::BreakerState::Closed,
                        arbiter_state::BreakerState::Open { until_ms } => breakers::BreakerState::Open(until_ms),
                        arbiter_state::BreakerState::HalfOpen { permits_left } => {
                            breakers::BreakerState::HalfOpen(permits_left)
                        }
                    })
                })
            }
        }
    };
}

pub(crate) use contract_glue;

/// The calls into a policy of one version, written once: expanded where
/// `bindings::{Policy, PolicyPre}`, `wit::Request`, `Store`, `SandboxState`,
/// `Verdict` and a `verdict_from_wit` are in scope.
macro_rules! policy_calls {
    () => {
        pub(crate) fn prepare(
            pre: wasmtime::component::InstancePre<SandboxState>,
        ) -> wasmtime::Result<PolicyPre<SandboxState>> {
            PolicyPre::new(pre)
        }

        pub(crate) fn instantiate(
            pre: &PolicyPre<SandboxState>,
            store: &mut Store<SandboxState>,
        ) -> wasmtime::Result<Policy> {
            pre.instantiate(store)
        }

        pub(crate) fn init(
            policy: &Policy,
            store: &mut Store<SandboxState>,
            settings: &str,
        ) -> wasmtime::Result<Result<(), String>> {
            policy.arbiter_policy_evaluator().call_init(store, settings)
        }

        /// Evaluates; the outer error is a trap, the inner a verdict that
        /// breaks the contract.
        pub(crate) fn evaluate(
            policy: &Policy,
            store: &mut Store<SandboxState>,
            request: &wit::Request,
        ) -> wasmtime::Result<Result<Verdict, String>> {
            let verdict = policy.arbiter_policy_evaluator().call_evaluate(store, request)?;
            Ok(verdict_from_wit(verdict))
        }
    };
}

pub(crate) use policy_calls;
