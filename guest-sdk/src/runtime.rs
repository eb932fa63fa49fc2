//! What [`crate::export_policy!`] expands to call: one policy per instance,
//! created by `init` and used by every `evaluate`.

use std::sync::OnceLock;

use crate::{Policy, Request, Verdict, parse_settings};

/// Reason code when `evaluate` runs before a successful `init` (a host bug).
const NOT_INITIALISED: &str = "policy_not_initialised";

pub fn init<P: Policy>(cell: &OnceLock<P>, settings: &str) -> Result<(), String> {
    let policy = P::new(parse_settings(settings)?)?;
    cell.set(policy).map_err(|_| "init was called twice on one instance".to_owned())
}

pub fn evaluate<P: Policy>(cell: &OnceLock<P>, request: &Request) -> Verdict {
    match cell.get() {
        Some(policy) => policy.evaluate(request),
        None => Verdict::deny(NOT_INITIALISED, "evaluate was called before init"),
    }
}
