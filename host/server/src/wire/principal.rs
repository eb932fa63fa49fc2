//! The principal and request id, from headers.

use arbiter_types::{Environment, Principal};

use super::GatewayRequest;
use crate::config::WireConfig;

/// Builds the principal from `<prefix>pipeline`, `-agent`, `-team`,
/// `-environment` and `-run` headers; the run falls back to the MCP session.
pub(super) fn principal(req: &GatewayRequest<'_>, config: &WireConfig) -> Result<Principal, String> {
    let header = |name: &str| req.headers.get(&format!("{}{name}", config.header_prefix)).filter(|v| !v.is_empty());
    let required =
        |name: &str| header(name).cloned().ok_or_else(|| format!("missing header {}{name}", config.header_prefix));
    let environment = match header("environment").or(config.default_environment.as_ref()) {
        Some(text) => parse_environment(text).ok_or_else(|| {
            format!("header {}environment: `{text}` is not dev, staging or prod", config.header_prefix)
        })?,
        None => return Err(format!("missing header {}environment", config.header_prefix)),
    };
    let run = match header("run").or_else(|| req.headers.get("mcp-session-id")) {
        Some(run) => run.clone(),
        None => return Err(format!("missing header {}run", config.header_prefix)),
    };
    Ok(Principal {
        pipeline: required("pipeline")?,
        agent: required("agent")?,
        team: required("team")?,
        environment,
        run,
    })
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
pub(super) fn request_id(req: &GatewayRequest<'_>) -> String {
    if let Some(id) = req.headers.get("x-request-id").filter(|id| !id.is_empty() && id.len() <= 128) {
        return id.clone();
    }
    use sha2::{Digest, Sha256};
    let digest =
        Sha256::new().chain_update(req.path).chain_update(req.body).chain_update(req.now_ms.to_le_bytes()).finalize();
    format!("gw-{}", hex::encode(&digest[..12]))
}
