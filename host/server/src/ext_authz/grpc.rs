//! Envoy's gRPC ext_authz: `envoy.service.auth.v3.Authorization/Check`.

use std::collections::HashMap;

use envoy_types::ext_authz::v3::pb::{Authorization, AuthorizationServer, CheckRequest, CheckResponse, HttpStatusCode};
use envoy_types::ext_authz::v3::{CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder};
use tonic::{Request, Response, Status};

use super::{Answer, Refusal, check};
use crate::state::{AppState, now_ms};
use crate::wire::GatewayRequest;

/// What Envoy's own configuration says of a request: the
/// `initial_metadata` of its grpc_service (and ext_proc's per-route
/// `grpc_initial_metadata`), which clients cannot set (their headers arrive
/// inside the request).
#[derive(Debug, Default, Clone)]
pub(crate) struct GatewayMetadata {
    /// Envoy's credential (`authorization: Bearer …`).
    pub(crate) key: Option<String>,
    /// The MCP server the route goes to (`x-arbiter-mcp-server`).
    pub(crate) mcp_server: Option<String>,
}

pub(crate) fn gateway_metadata<T>(request: &Request<T>) -> GatewayMetadata {
    let text = |name: &str| request.metadata().get(name).and_then(|v| v.to_str().ok());
    GatewayMetadata {
        key: text("authorization").and_then(|v| v.strip_prefix("Bearer ")).map(str::to_owned),
        mcp_server: text("x-arbiter-mcp-server").filter(|s| !s.is_empty()).map(str::to_owned),
    }
}

pub(crate) struct ExtAuthz {
    state: AppState,
}

pub(crate) fn service(state: AppState) -> AuthorizationServer<ExtAuthz> {
    AuthorizationServer::new(ExtAuthz { state })
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let metadata = gateway_metadata(&request);
        let request = request.into_inner();
        let http = request
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http)
            .ok_or_else(|| Status::invalid_argument("CheckRequest carries no HTTP request attributes"))?;
        let headers: HashMap<String, String> =
            http.headers.into_iter().map(|(k, v)| (k.to_ascii_lowercase(), v)).collect();
        // `pack_as_bytes: true` sends raw_body; otherwise body (UTF-8).
        let body = if http.raw_body.is_empty() { http.body.into_bytes() } else { http.raw_body };
        let gateway = GatewayRequest {
            method: &http.method,
            path: &http.path,
            headers: &headers,
            body: &body,
            now_ms: now_ms(),
            grant: None,
            mcp_server: metadata.mcp_server.as_deref(),
            reads_answers: false,
        };
        let mut response = CheckResponse::new();
        match check(&self.state, gateway, metadata.key.as_deref(), "ext_authz").await.unrewritten() {
            Answer::Allow { headers, remove } => {
                let mut ok = OkHttpResponseBuilder::new();
                for (name, value) in headers {
                    ok.add_header(name, value, None, true);
                }
                for name in remove {
                    ok.remove_header(name);
                }
                response.set_status(Status::ok("allowed")).set_http_response(ok);
            }
            Answer::Deny(Refusal { status, in_band, headers, body }) => {
                let mut denied = DeniedHttpResponseBuilder::new();
                // The CheckResponse itself says "denied": Envoy answers the
                // client and forwards nothing, whatever the HTTP status.
                let status = if in_band { 200 } else { status };
                let code = HttpStatusCode::try_from(i32::from(status)).unwrap_or(HttpStatusCode::Forbidden);
                denied.set_http_status(code).set_body(body);
                for (name, value) in headers {
                    denied.add_header(name, value, None, false);
                }
                response.set_status(Status::permission_denied("denied by arbiter")).set_http_response(denied);
            }
        }
        Ok(Response::new(response))
    }
}
