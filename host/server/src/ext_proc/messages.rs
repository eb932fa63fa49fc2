//! Building ext_proc answers and reading Envoy's header maps.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::ext_proc::v3::body_mutation::Mutation;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyMutation, BodyResponse, CommonResponse, HeaderMutation, HeadersResponse, HttpHeaders, ImmediateResponse,
    ProcessingResponse, StreamedBodyResponse, TrailersResponse,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;

/// Which message of the exchange an answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    RequestHeaders,
    RequestBody,
    ResponseHeaders,
    ResponseBody,
    RequestTrailers,
    ResponseTrailers,
}

/// Header names (lowercase) and values, pseudo-headers (`:path`,
/// `:status`, ...) included. Envoy sends values as `raw_value` bytes (or
/// in `value` before 1.31); a value that is not UTF-8 is dropped.
pub(super) fn header_map(headers: Option<&HttpHeaders>) -> HashMap<String, String> {
    let Some(map) = headers.and_then(|h| h.headers.as_ref()) else { return HashMap::new() };
    map.headers
        .iter()
        .filter_map(|h| {
            let value = if h.raw_value.is_empty() {
                Some(h.value.clone())
            } else {
                String::from_utf8(h.raw_value.clone()).ok()
            };
            value.map(|v| (h.key.to_ascii_lowercase(), v))
        })
        .collect()
}

/// Headers to set (overwriting) and to remove.
pub(super) fn header_mutation(set: Vec<(String, String)>, remove: Vec<String>) -> Option<HeaderMutation> {
    if set.is_empty() && remove.is_empty() {
        return None;
    }
    let set_headers = set
        .into_iter()
        .map(|(key, value)| HeaderValueOption {
            header: Some(HeaderValue { key, raw_value: value.into_bytes(), ..HeaderValue::default() }),
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
            ..HeaderValueOption::default()
        })
        .collect();
    Some(HeaderMutation { set_headers, remove_headers: remove })
}

/// Go on, with these changes.
pub(super) fn proceed(phase: Phase, headers: Option<HeaderMutation>, body: Option<Vec<u8>>) -> ProcessingResponse {
    let body_mutation = body.map(|body| BodyMutation {
        // An empty replacement must say so: an empty `body` is no mutation.
        mutation: Some(if body.is_empty() { Mutation::ClearBody(true) } else { Mutation::Body(body) }),
    });
    let common = CommonResponse { header_mutation: headers, body_mutation, ..CommonResponse::default() };
    let response = match phase {
        Phase::RequestHeaders => Response::RequestHeaders(HeadersResponse { response: Some(common) }),
        Phase::ResponseHeaders => Response::ResponseHeaders(HeadersResponse { response: Some(common) }),
        Phase::RequestBody => Response::RequestBody(BodyResponse { response: Some(common) }),
        Phase::ResponseBody => Response::ResponseBody(BodyResponse { response: Some(common) }),
        Phase::RequestTrailers => Response::RequestTrailers(TrailersResponse::default()),
        Phase::ResponseTrailers => Response::ResponseTrailers(TrailersResponse::default()),
    };
    ProcessingResponse { response: Some(response), ..ProcessingResponse::default() }
}

/// The largest piece of a full-duplex body in one answer: Envoy's
/// recommended bound, below any gRPC message limit.
const STREAMED_PIECE: usize = 64 * 1024;

/// A full-duplex body answer (`FULL_DUPLEX_STREAMED`): `body` is what goes
/// on in place of every chunk answered so far, in pieces; `end_of_stream`
/// when it is the last of the body.
pub(super) fn streamed(phase: Phase, body: Vec<u8>, end_of_stream: bool) -> Vec<ProcessingResponse> {
    let answer = |body: Vec<u8>, end_of_stream: bool| {
        let body_mutation = Some(BodyMutation {
            mutation: Some(Mutation::StreamedResponse(StreamedBodyResponse {
                body,
                end_of_stream,
                ..StreamedBodyResponse::default()
            })),
        });
        let common = CommonResponse { body_mutation, ..CommonResponse::default() };
        let response = match phase {
            Phase::RequestBody => Response::RequestBody(BodyResponse { response: Some(common) }),
            _ => Response::ResponseBody(BodyResponse { response: Some(common) }),
        };
        ProcessingResponse { response: Some(response), ..ProcessingResponse::default() }
    };
    if body.len() <= STREAMED_PIECE {
        return vec![answer(body, end_of_stream)];
    }
    let pieces = body.len().div_ceil(STREAMED_PIECE);
    body.chunks(STREAMED_PIECE)
        .enumerate()
        .map(|(i, piece)| answer(piece.to_vec(), end_of_stream && i + 1 == pieces))
        .collect()
}

/// Answer the client now; nothing is forwarded upstream.
pub(super) fn immediate(
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    details: &str,
) -> ProcessingResponse {
    let response = ImmediateResponse {
        status: Some(HttpStatus { code: i32::from(status) }),
        headers: header_mutation(headers, vec![]),
        body: body.into_bytes(),
        details: details.to_owned(),
        ..ImmediateResponse::default()
    };
    ProcessingResponse { response: Some(Response::ImmediateResponse(response)), ..ProcessingResponse::default() }
}
