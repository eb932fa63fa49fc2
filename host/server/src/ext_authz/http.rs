//! Envoy's HTTP ext_authz: Envoy sends the original request (headers and
//! body) to `/ext_authz/<original path>`; 200 lets it through, anything
//! else is returned to the client. Every refusal is therefore non-2xx, MCP
//! ones included (their JSON-RPC error is still the body).

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use super::{Answer, Refusal, check as decide};
use crate::api::ApiError;
use crate::state::{AppState, now_ms};
use crate::wire::GatewayRequest;

pub(crate) async fn check(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return ApiError::from(rejection).into_response(),
    };
    let path = uri.path().strip_prefix("/ext_authz").unwrap_or("/");
    let headers: HashMap<String, String> = headers
        .iter()
        .filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str().to_owned(), v.to_owned())))
        .collect();
    // Envoy's own credential, set by its `authorization_request.headers_to_add`
    // (the Envoy config strips any client copy before ext_authz).
    let gateway_key = headers.get(&format!("{}gateway-key", state.wire.header_prefix)).cloned();
    let request = GatewayRequest {
        method: method.as_str(),
        path,
        headers: &headers,
        body: &body,
        now_ms: now_ms(),
        grant: None,
        mcp_server: None,
        reads_answers: false,
    };
    match decide(&state, request, gateway_key.as_deref(), "ext_authz").await.unrewritten() {
        // Envoy's HTTP mode cannot remove upstream headers from here: the
        // Envoy config drops the arbiter key headers on the route.
        Answer::Allow { headers, remove: _ } => respond(StatusCode::OK, headers, String::new()),
        Answer::Deny(Refusal { status, in_band: _, headers, body }) => {
            respond(StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN), headers, body)
        }
    }
}

fn respond(status: StatusCode, headers: Vec<(String, String)>, body: String) -> Response {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(name, value);
    }
    response.body(Body::from(body)).unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
