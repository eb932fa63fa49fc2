//! Envoy's processing mode for one stream, from its first message
//! (`protocol_config`): which modes let arbiter hold the whole exchange,
//! and which would let a body pass unread.

use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::service::ext_proc::v3::ProtocolConfiguration;

/// How Envoy sends one direction's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyMode {
    /// Whole, in one message, once the headers are answered.
    Buffered,
    /// Chunk by chunk, each answered in turn.
    Streamed,
    /// Chunk by chunk without waiting for any answer; arbiter answers with
    /// the body it lets through, in pieces of its own.
    FullDuplex,
    /// A mode in which arbiter cannot hold the body (named as Envoy names it).
    Unusable(&'static str),
}

impl BodyMode {
    fn of(mode: i32) -> Self {
        match BodySendMode::try_from(mode) {
            Ok(BodySendMode::Buffered) => BodyMode::Buffered,
            Ok(BodySendMode::Streamed) => BodyMode::Streamed,
            Ok(BodySendMode::FullDuplexStreamed) => BodyMode::FullDuplex,
            Ok(other) => BodyMode::Unusable(other.as_str_name()),
            Err(_) => BodyMode::Unusable("an unknown mode"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Modes {
    pub(super) request: BodyMode,
    pub(super) response: BodyMode,
    /// Whether Envoy named them (else they are assumed).
    pub(super) stated: bool,
}

impl Modes {
    /// An Envoy that does not say (before 1.34) is taken to use the modes
    /// this server was first tested with: a streamed request body is still
    /// refused when it shows itself, at its first chunk.
    pub(super) fn of(config: Option<&ProtocolConfiguration>) -> Self {
        match config {
            None => Modes { request: BodyMode::Buffered, response: BodyMode::Streamed, stated: false },
            Some(config) => Modes {
                request: BodyMode::of(config.request_body_mode),
                response: BodyMode::of(config.response_body_mode),
                stated: true,
            },
        }
    }

    /// Why an exchange cannot be guarded in these modes, if it cannot:
    /// the request body would go upstream before the decision (unless the
    /// request has none), or the answer would reach the client unread.
    pub(super) fn unguarded(&self, request_has_no_body: bool) -> Option<String> {
        match self.request {
            BodyMode::Buffered | BodyMode::FullDuplex => {}
            _ if request_has_no_body => {}
            BodyMode::Streamed => return Some(mode_problem("request", "STREAMED", "FULL_DUPLEX_STREAMED")),
            BodyMode::Unusable(name) => return Some(mode_problem("request", name, "FULL_DUPLEX_STREAMED")),
        }
        match self.response {
            BodyMode::Unusable(name) => Some(mode_problem("response", name, "STREAMED")),
            BodyMode::Buffered | BodyMode::Streamed | BodyMode::FullDuplex => None,
        }
    }
}

fn mode_problem(direction: &str, mode: &str, instead: &str) -> String {
    format!("{direction}_body_mode {mode} lets the {direction} body pass unread; use {instead}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modes(request: BodySendMode, response: BodySendMode) -> Modes {
        let config = ProtocolConfiguration {
            request_body_mode: request.into(),
            response_body_mode: response.into(),
            ..ProtocolConfiguration::default()
        };
        Modes::of(Some(&config))
    }

    #[test]
    fn the_modes_that_hold_both_directions_are_guarded() {
        for request in [BodySendMode::Buffered, BodySendMode::FullDuplexStreamed] {
            for response in [BodySendMode::Streamed, BodySendMode::Buffered, BodySendMode::FullDuplexStreamed] {
                assert_eq!(modes(request, response).unguarded(false), None, "{request:?} / {response:?}");
            }
        }
    }

    #[test]
    fn a_request_body_that_would_pass_unread_is_named() {
        for (request, name) in [
            (BodySendMode::None, "NONE"),
            (BodySendMode::Streamed, "STREAMED"),
            (BodySendMode::BufferedPartial, "BUFFERED_PARTIAL"),
            (BodySendMode::Grpc, "GRPC"),
        ] {
            let problem = modes(request, BodySendMode::Streamed).unguarded(false).expect("refused");
            assert!(problem.starts_with(&format!("request_body_mode {name} ")), "{problem}");
            // A request with no body has nothing to pass unread.
            assert_eq!(modes(request, BodySendMode::Streamed).unguarded(true), None);
        }
        let config = ProtocolConfiguration { request_body_mode: 99, ..ProtocolConfiguration::default() };
        let problem = Modes::of(Some(&config)).unguarded(false).expect("refused");
        assert!(problem.contains("an unknown mode"), "{problem}");
    }

    #[test]
    fn an_answer_that_would_pass_unread_is_named_even_for_a_bodiless_request() {
        for response in [BodySendMode::None, BodySendMode::BufferedPartial, BodySendMode::Grpc] {
            let problem = modes(BodySendMode::FullDuplexStreamed, response).unguarded(true).expect("refused");
            assert!(problem.starts_with("response_body_mode "), "{problem}");
        }
    }

    #[test]
    fn an_envoy_that_does_not_say_is_taken_at_the_tested_modes() {
        let assumed = Modes { request: BodyMode::Buffered, response: BodyMode::Streamed, stated: false };
        assert_eq!(Modes::of(None), assumed);
    }
}
