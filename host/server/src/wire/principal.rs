//! The principal and request id, from headers.

use std::collections::HashMap;

use arbiter_types::{Environment, Principal};

use super::GatewayRequest;
use crate::config::WireConfig;
use crate::credentials::Grant;

/// Builds the principal from `<prefix>pipeline`, `-agent`, `-team`,
/// `-environment` and `-run` headers; a field the caller's grant allows
/// only one value of may be left out; the run falls back to the MCP
/// session. Whether the caller may act as the result is checked after.
pub(super) fn principal(req: &GatewayRequest<'_>, config: &WireConfig) -> Result<Principal, String> {
    let prefix = &config.header_prefix;
    let header = |name: &str| principal_field(req.headers, prefix, req.grant, name).map(str::to_owned);
    let environment = header("environment").or_else(|| config.default_environment.clone());
    let run = header("run").or_else(|| req.headers.get("mcp-session-id").cloned());
    let fields = [header("pipeline"), header("agent"), header("team"), environment, run];
    let missing: Vec<String> = ["pipeline", "agent", "team", "environment", "run"]
        .iter()
        .zip(&fields)
        .filter(|(_, value)| value.is_none())
        .map(|(name, _)| format!("{prefix}{name}"))
        .collect();
    let [Some(pipeline), Some(agent), Some(team), Some(environment), Some(run)] = fields else {
        return Err(format!("missing header{} {}", if missing.len() > 1 { "s" } else { "" }, missing.join(", ")));
    };
    let environment = parse_environment(&environment).ok_or_else(|| {
        let shown = arbiter_types::excerpt(&environment, 32);
        format!("header {prefix}environment: `{shown}` is not dev, staging or prod")
    })?;
    Ok(Principal { pipeline, agent, team, environment, run })
}

/// One field of the principal as the caller states it: its
/// `<prefix><name>` header, or, left out or empty, the grant's one value.
pub(crate) fn principal_field<'a>(
    headers: &'a HashMap<String, String>,
    prefix: &str,
    grant: Option<&'a Grant>,
    name: &str,
) -> Option<&'a str> {
    let stated = headers.get(&format!("{prefix}{name}")).map(String::as_str).filter(|v| !v.is_empty());
    stated.or_else(|| grant.and_then(|g| g.only(name)))
}

fn parse_environment(text: &str) -> Option<Environment> {
    match text {
        "dev" => Some(Environment::Dev),
        "staging" => Some(Environment::Staging),
        "prod" => Some(Environment::Prod),
        _ => None,
    }
}

/// The gateway's request id, or one derived from the request.
pub(crate) fn request_id(req: &GatewayRequest<'_>) -> String {
    if let Some(id) = req.headers.get("x-request-id").filter(|id| !id.is_empty() && id.len() <= 128) {
        return id.clone();
    }
    use sha2::{Digest, Sha256};
    // Unique in the process: identical requests in one millisecond are two
    // requests, not one id reserved twice (refused as duplicate_request).
    static DERIVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nth = DERIVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let digest = Sha256::new()
        .chain_update(req.path)
        .chain_update(req.body)
        .chain_update(req.now_ms.to_le_bytes())
        .chain_update(nth.to_le_bytes())
        .finalize();
    format!("gw-{}", hex::encode(&digest[..12]))
}
