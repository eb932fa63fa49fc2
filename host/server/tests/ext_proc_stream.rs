//! The ext_proc service over real gRPC, driven message by message as a
//! misconfigured or broken Envoy might drive it: a full-duplex body is
//! answered once whole, with its headers and in pieces; every order arbiter
//! cannot guard is refused, and no stream that Envoy may still be waiting
//! on ends with OK (Envoy forwards such an exchange undecided).

use std::sync::Arc;

use arbiter_engine::{Bundle, Decider};
use arbiter_server::{Credentials, ExtProcConfig, Server, ServerConfig};
use arbiter_state::{InMemoryStore, StateStore, StoreConfig};
use arbiter_tests::{engine, orders_daily_bundle, root};
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::BodySendMode;
use envoy_types::pb::envoy::service::ext_proc::v3::body_mutation::Mutation;
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_client::ExternalProcessorClient;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_request::Request as Message;
use envoy_types::pb::envoy::service::ext_proc::v3::processing_response::Response as Answer;
use envoy_types::pb::envoy::service::ext_proc::v3::{
    HttpBody, HttpHeaders, HttpTrailers, ProcessingRequest, ProcessingResponse, ProtocolConfiguration,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

const CLAUDE: &str = "claude-sonnet-4-5-20250929";

/// A running server on loopback (state in memory) and its gRPC address.
async fn serve(ext_proc: ExtProcConfig) -> String {
    serve_with(ext_proc, example_credentials()).await.grpc
}

fn example_credentials() -> Credentials {
    Credentials::load(&root().join("examples/orders_daily/credentials.toml")).unwrap()
}

/// A running server's gRPC and HTTP addresses.
struct Served {
    grpc: String,
    http: std::net::SocketAddr,
}

/// The same with these credentials.
async fn serve_with(ext_proc: ExtProcConfig, credentials: Credentials) -> Served {
    let bundle = Bundle::load(&engine(), &orders_daily_bundle()).unwrap();
    let state: Arc<dyn StateStore> = Arc::new(InMemoryStore::in_memory(StoreConfig::default()));
    let config = ServerConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        grpc: Some("127.0.0.1:0".parse().unwrap()),
        credentials: Arc::new(credentials),
        ext_proc,
        ..ServerConfig::default()
    };
    let server = Server::bind(config, Decider::new(Arc::new(bundle), state), None).await.unwrap();
    let served = Served { grpc: format!("http://{}", server.grpc_addr().unwrap()), http: server.http_addr().unwrap() };
    tokio::spawn(server.run(std::future::pending()));
    served
}

/// The value of one series of the server's `/metrics`.
async fn metric(http: std::net::SocketAddr, series: &str) -> Option<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut connection = tokio::net::TcpStream::connect(http).await.unwrap();
    connection.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await.unwrap();
    let mut page = String::new();
    connection.read_to_string(&mut page).await.unwrap();
    page.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// One exchange: messages go in as the test sends them, answers come out.
struct Stream {
    to_arbiter: mpsc::Sender<ProcessingRequest>,
    answers: Streaming<ProcessingResponse>,
}

impl Stream {
    async fn open(url: &str) -> Stream {
        Stream::open_as(url, None).await
    }

    /// An exchange of the Envoy whose credential is `gateway_key`, if any.
    async fn open_as(url: &str, gateway_key: Option<&str>) -> Stream {
        let mut client =
            ExternalProcessorClient::connect(url.to_owned()).await.unwrap().max_encoding_message_size(64 << 20);
        let (to_arbiter, messages) = mpsc::channel(16);
        let mut request = tonic::Request::new(ReceiverStream::new(messages));
        if let Some(key) = gateway_key {
            request.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
        }
        let answers = client.process(request).await.unwrap().into_inner();
        Stream { to_arbiter, answers }
    }

    async fn send(&self, message: Message, modes: Option<(BodySendMode, BodySendMode)>) {
        let protocol_config = modes.map(|(request, response)| ProtocolConfiguration {
            request_body_mode: request.into(),
            response_body_mode: response.into(),
            ..ProtocolConfiguration::default()
        });
        let message = ProcessingRequest { request: Some(message), protocol_config, ..ProcessingRequest::default() };
        self.to_arbiter.send(message).await.unwrap();
    }

    /// The next answer, or the status the stream ended with (`Ok(None)`:
    /// ended with OK).
    async fn next(&mut self) -> Result<Option<Answer>, tonic::Status> {
        let answer = tokio::time::timeout(std::time::Duration::from_secs(30), self.answers.message()).await;
        Ok(answer.expect("an answer within 30 s")?.map(|a| a.response.expect("an answer carries a response")))
    }
}

const FULL_DUPLEX: Option<(BodySendMode, BodySendMode)> =
    Some((BodySendMode::FullDuplexStreamed, BodySendMode::Streamed));
const BUFFERED: Option<(BodySendMode, BodySendMode)> = Some((BodySendMode::Buffered, BodySendMode::Streamed));

/// The monitor's chat completion headers (its own key: no gateway).
fn request_headers(end_of_stream: bool) -> Message {
    request_headers_as("example-monitor-key", "monitor", end_of_stream)
}

/// A chat completion's headers with this agent key (empty: none, as
/// behind a gateway) and agent name.
fn request_headers_as(key: &str, agent: &str, end_of_stream: bool) -> Message {
    let headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        ("content-type", "application/json"),
        ("x-arbiter-key", key),
        ("x-arbiter-pipeline", "orders_daily"),
        ("x-arbiter-agent", agent),
        ("x-arbiter-team", "data-platform"),
        ("x-arbiter-environment", "prod"),
        ("x-arbiter-run", "run-stream"),
    ];
    let headers: Vec<_> = headers.into_iter().filter(|(_, value)| !value.is_empty()).collect();
    Message::RequestHeaders(header_message(&headers, end_of_stream))
}

fn header_message(headers: &[(&str, &str)], end_of_stream: bool) -> HttpHeaders {
    let headers = headers
        .iter()
        .map(|(key, value)| HeaderValue {
            key: (*key).to_owned(),
            raw_value: value.as_bytes().to_vec(),
            ..HeaderValue::default()
        })
        .collect();
    HttpHeaders { headers: Some(HeaderMap { headers }), end_of_stream, ..HttpHeaders::default() }
}

fn body(bytes: &[u8], end_of_stream: bool) -> Message {
    Message::RequestBody(HttpBody { body: bytes.to_vec(), end_of_stream, ..HttpBody::default() })
}

/// A small allowed chat completion after `padding` bytes of whitespace:
/// one valid JSON body of any size.
fn padded_request(padding: usize) -> Vec<u8> {
    let request = json!({"model": CLAUDE, "max_completion_tokens": 10,
                         "messages": [{"role": "user", "content": "How many rows?"}]});
    let mut body = vec![b' '; padding];
    body.extend_from_slice(request.to_string().as_bytes());
    body
}

/// An ImmediateResponse's status and its error code.
fn refusal(answer: Option<Answer>) -> (i32, String) {
    let Some(Answer::ImmediateResponse(reply)) = answer else { panic!("a local reply, not {answer:?}") };
    let body: Value = serde_json::from_slice(&reply.body).unwrap();
    (reply.status.unwrap().code, body["error"]["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn a_full_duplex_body_is_answered_once_whole_with_its_headers_and_in_pieces() {
    let url = serve(ExtProcConfig::default()).await;
    let mut stream = Stream::open(&url).await;
    let words: Vec<String> = (0..12_000).map(|i| format!("row{i}")).collect();
    let request = json!({"model": CLAUDE, "max_completion_tokens": 100,
                         "messages": [{"role": "user", "content": words.join(" ")}]})
    .to_string()
    .into_bytes();
    stream.send(request_headers(false), FULL_DUPLEX).await;
    let (first, rest) = request.split_at(20_000);
    stream.send(body(first, false), None).await;
    stream.send(body(rest, true), None).await;

    // The headers' answer comes only now, with the length of the body.
    let Some(Answer::RequestHeaders(headers)) = stream.next().await.unwrap() else {
        panic!("the headers' answer first")
    };
    let set = headers.response.unwrap().header_mutation.unwrap().set_headers;
    let length = set.iter().find(|h| h.header.as_ref().unwrap().key == "content-length").expect("content-length");
    let length: usize = String::from_utf8(length.header.as_ref().unwrap().raw_value.clone()).unwrap().parse().unwrap();
    let (mut forwarded, mut pieces) = (Vec::new(), Vec::new());
    while forwarded.len() < length {
        let Some(Answer::RequestBody(piece)) = stream.next().await.unwrap() else { panic!("body pieces") };
        let Some(Mutation::StreamedResponse(piece)) = piece.response.unwrap().body_mutation.unwrap().mutation else {
            panic!("a streamed body in full duplex")
        };
        assert!(piece.body.len() <= 64 * 1024);
        forwarded.extend_from_slice(&piece.body);
        pieces.push(piece.end_of_stream);
    }
    assert_eq!(forwarded.len(), length);
    assert!(pieces.len() >= 2, "a body over 64 KiB goes in pieces: {}", pieces.len());
    assert_eq!(pieces.iter().filter(|end| **end).count(), 1);
    assert!(pieces.last().unwrap(), "end_of_stream on the last piece only");
    let forwarded: Value = serde_json::from_slice(&forwarded).unwrap();
    assert_eq!(forwarded["max_completion_tokens"], 100);
    assert_eq!(forwarded["messages"][0]["content"].as_str().unwrap().len(), words.join(" ").len());
}

#[tokio::test]
async fn a_message_too_large_to_decode_ends_the_stream_with_an_error() {
    let url = serve(ExtProcConfig { max_request_bytes: 1 << 20, ..ExtProcConfig::default() }).await;
    let mut stream = Stream::open(&url).await;
    stream.send(request_headers(false), BUFFERED).await;
    assert!(matches!(stream.next().await.unwrap(), Some(Answer::RequestHeaders(_))));
    // Past the largest message arbiter decodes (17 MiB here).
    stream.send(body(&vec![b'x'; 18 << 20], true), None).await;
    let ended = stream.next().await;
    assert!(ended.is_err(), "the stream must not end with OK: {ended:?}");
}

#[tokio::test]
async fn a_buffered_body_past_grpcs_usual_message_limit_is_decided() {
    // 5 MiB: past the 4 MiB a gRPC server decodes by default.
    let mut stream = buffered_headers_answered().await;
    stream.send(body(&padded_request(5 << 20), true), None).await;
    assert!(matches!(stream.next().await.unwrap(), Some(Answer::RequestBody(_))));
}

#[tokio::test]
async fn a_second_request_headers_message_ends_the_stream_with_an_error() {
    let url = serve(ExtProcConfig::default()).await;
    let holding = Stream::open(&url).await;
    holding.send(request_headers(false), FULL_DUPLEX).await;
    holding.send(request_headers(false), None).await;
    let buffering = buffered_headers_answered().await;
    buffering.send(request_headers(false), None).await;
    for mut stream in [holding, buffering] {
        let status = stream.next().await.expect_err("an error status");
        assert!(status.message().contains("second request headers"), "{status:?}");
    }
}

#[tokio::test]
async fn an_exchange_past_its_time_limit_ends_with_an_error() {
    let url =
        serve(ExtProcConfig { max_exchange: std::time::Duration::from_secs(1), ..ExtProcConfig::default() }).await;
    let mut stream = Stream::open(&url).await;
    stream.send(request_headers(false), FULL_DUPLEX).await;
    stream.send(body(b"{", false), None).await;
    let status = stream.next().await.expect_err("an error status");
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
}

#[tokio::test]
async fn replies_without_the_request_and_answers_to_decided_requests_pass() {
    let url = serve(ExtProcConfig::default()).await;
    // A filter before ext_proc answered (a health check, a redirect):
    // arbiter never saw the request.
    let mut local = Stream::open(&url).await;
    let redirect = header_message(&[(":status", "302"), ("location", "/login")], true);
    local.send(Message::ResponseHeaders(redirect), FULL_DUPLEX).await;
    assert!(matches!(local.next().await.unwrap(), Some(Answer::ResponseHeaders(_))));
    // A decided request's answer.
    let mut decided = Stream::open(&url).await;
    decided.send(request_headers(false), FULL_DUPLEX).await;
    decided.send(body(&padded_request(0), true), None).await;
    assert!(matches!(decided.next().await.unwrap(), Some(Answer::RequestHeaders(_))));
    assert!(matches!(decided.next().await.unwrap(), Some(Answer::RequestBody(_))));
    let ok = header_message(&[(":status", "200"), ("content-type", "application/json")], false);
    decided.send(Message::ResponseHeaders(ok), None).await;
    assert!(matches!(decided.next().await.unwrap(), Some(Answer::ResponseHeaders(_))));
}

#[tokio::test]
async fn a_body_before_its_headers_is_refused() {
    let url = serve(ExtProcConfig::default()).await;
    let mut stream = Stream::open(&url).await;
    stream.send(body(br#"{"model":"gpt-4o"}"#, true), BUFFERED).await;
    assert_eq!(refusal(stream.next().await.unwrap()), (500, "ext_proc_misconfigured".to_owned()));
}

/// A buffered exchange whose request headers were answered: its decision
/// waits for the body.
async fn buffered_headers_answered() -> Stream {
    let url = serve(ExtProcConfig::default()).await;
    let mut stream = Stream::open(&url).await;
    stream.send(request_headers(false), BUFFERED).await;
    assert!(matches!(stream.next().await.unwrap(), Some(Answer::RequestHeaders(_))));
    stream
}

#[tokio::test]
async fn buffered_trailers_without_a_body_are_refused() {
    let mut stream = buffered_headers_answered().await;
    stream.send(Message::RequestTrailers(HttpTrailers::default()), None).await;
    assert_eq!(refusal(stream.next().await.unwrap()), (400, "bad_request".to_owned()));
}

#[tokio::test]
async fn the_answer_to_a_request_that_went_upstream_undecided_is_withheld() {
    let mut stream = buffered_headers_answered().await;
    // No body and no trailers reached arbiter, yet the upstream answers.
    let answer = header_message(&[(":status", "200"), ("content-type", "application/json")], false);
    stream.send(Message::ResponseHeaders(answer), None).await;
    assert_eq!(refusal(stream.next().await.unwrap()), (500, "ext_proc_misconfigured".to_owned()));
}

#[tokio::test]
async fn an_answer_body_without_its_headers_ends_the_stream_with_an_error() {
    let url = serve(ExtProcConfig::default()).await;
    let mut stream = Stream::open(&url).await;
    stream.send(request_headers(true), FULL_DUPLEX).await;
    let _decided = stream.next().await.unwrap();
    stream
        .send(
            Message::ResponseBody(HttpBody { body: b"{}".to_vec(), end_of_stream: true, ..HttpBody::default() }),
            None,
        )
        .await;
    let status = stream.next().await.expect_err("an error status");
    assert!(status.message().contains("response_header_mode"), "{status:?}");
}

#[tokio::test]
async fn observability_mode_ends_the_stream_with_an_error() {
    let url = serve(ExtProcConfig::default()).await;
    let mut stream = Stream::open(&url).await;
    let message = ProcessingRequest {
        request: Some(request_headers(false)),
        observability_mode: true,
        ..ProcessingRequest::default()
    };
    stream.to_arbiter.send(message).await.unwrap();
    let status = stream.next().await.expect_err("an error status");
    assert!(status.message().contains("observability_mode"), "{status:?}");
}

#[tokio::test]
async fn bodies_held_at_once_are_bounded_and_given_back() {
    let config = ExtProcConfig { max_held_bytes: 1 << 20, max_request_bytes: 800 << 10, ..ExtProcConfig::default() };
    let url = serve(config).await;
    let padding = vec![b' '; 700 << 10];
    let (mut first, mut second) = (Stream::open(&url).await, Stream::open(&url).await);
    for stream in [&first, &second] {
        stream.send(request_headers(false), FULL_DUPLEX).await;
        stream.send(body(&padding, false), None).await;
    }
    // Two do not fit in 1 MiB: whichever came second is refused; the other
    // is still held, unanswered.
    let (refused, mut holding) = tokio::select! {
        answer = first.next() => (answer, second),
        answer = second.next() => (answer, first),
    };
    assert_eq!(refusal(refused.unwrap()), (503, "ext_proc_busy".to_owned()));
    // Past its own limit: refused, and its share given back.
    holding.send(body(&padding, false), None).await;
    assert_eq!(refusal(holding.next().await.unwrap()), (413, "body_too_large".to_owned()));
    assert_decided_with_room(&url).await;
    // One that holds and goes away gives its share back when its stream ends.
    let leaving = Stream::open(&url).await;
    leaving.send(request_headers(false), FULL_DUPLEX).await;
    leaving.send(body(&padding, false), None).await;
    drop(leaving);
    for attempt in 0.. {
        let mut stream = Stream::open(&url).await;
        stream.send(request_headers(false), FULL_DUPLEX).await;
        stream.send(body(&padded_request(700 << 10), true), None).await;
        match stream.next().await.unwrap() {
            Some(Answer::RequestHeaders(_)) => break,
            answer if attempt < 50 => {
                assert_eq!(refusal(answer), (503, "ext_proc_busy".to_owned()));
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            answer => panic!("the share of a stream that ended was never given back: {answer:?}"),
        }
    }
}

/// Streams whose bodies are held, waiting for an answer (none comes while
/// the test runs); dropping them gives their shares back.
type Holding = tokio::task::JoinSet<(Result<Option<Answer>, tonic::Status>, Stream)>;

/// Sends `bodies` 700 KiB bodies, one stream each, with the headers
/// `headers` makes, of the gateway whose key is `gateway_key`, if any:
/// the first answer (held bodies get none) must be a refusal; returns it
/// and the streams still holding.
async fn hold_until_refused(
    url: &str,
    gateway_key: Option<&str>,
    headers: impl Fn(usize) -> Message,
    bodies: usize,
) -> ((i32, String), Holding) {
    let padding = vec![b' '; 700 << 10];
    let mut holding = Holding::new();
    for i in 0..bodies {
        let mut stream = Stream::open_as(url, gateway_key).await;
        stream.send(headers(i), FULL_DUPLEX).await;
        stream.send(body(&padding, false), None).await;
        holding.spawn(async move { (stream.next().await, stream) });
    }
    let (answer, _refused) = holding.join_next().await.unwrap().unwrap();
    (refusal(answer.unwrap()), holding)
}

#[tokio::test]
async fn one_caller_cannot_hold_what_the_others_need() {
    // Room for five 700 KiB bodies at once; for two of any one caller.
    let config = ExtProcConfig {
        max_held_bytes: 3600 << 10,
        max_held_per_caller_bytes: 1500 << 10,
        max_request_bytes: 800 << 10,
        ..ExtProcConfig::default()
    };
    let served = serve_with(config, example_credentials()).await;
    let url = served.grpc.clone();
    let caller_busy = (429, "ext_proc_caller_busy".to_owned());
    // The monitor's own key over three exchanges: the third is its own
    // share's, not the server's.
    let (refused, mut monitor) = hold_until_refused(&url, None, |_| request_headers(false), 3).await;
    assert_eq!(refused, caller_busy);
    assert!(monitor.try_join_next().is_none(), "the monitor's first two bodies are still held");
    // A new forged key per request gains no new share: keys that do not
    // authenticate share one.
    let forged = |i: usize| request_headers_as(&format!("forged-key-{i}"), "monitor", false);
    let (refused, mut forgers) = hold_until_refused(&url, None, forged, 3).await;
    assert_eq!(refused, caller_busy);
    assert!(forgers.try_join_next().is_none(), "the first two forged bodies are still held");
    // The server holds four of its five: one more of anyone else's fits and
    // is decided while the monitor and the forgers hold theirs.
    assert_eq!((monitor.len(), forgers.len()), (2, 2));
    let mut stream = Stream::open_as(&url, Some("example-envoy-key")).await;
    stream.send(request_headers_as("", "monitor", false), FULL_DUPLEX).await;
    stream.send(body(&padded_request(700 << 10), true), None).await;
    let answer = stream.next().await.unwrap();
    assert!(matches!(answer, Some(Answer::RequestHeaders(_))), "another caller's body is decided: {answer:?}");
    // The on-call human sees which bound refused them.
    let refused = r#"arbiter_ext_proc_held_refused_total{bound="caller"}"#;
    assert_eq!(metric(served.http, refused).await, Some(2.0));
    assert_eq!(metric(served.http, r#"arbiter_ext_proc_held_refused_total{bound="server"}"#).await, None);

    // Behind one gateway, each agent it vouches for has a share of its own:
    // six agents' bodies are held until the server's bound (503), where one
    // share would have refused the third (429).
    let url = serve(config).await;
    let agents = |i: usize| request_headers_as("", &format!("agent-{i}"), false);
    let (refused, agents) = hold_until_refused(&url, Some("example-envoy-key"), agents, 6).await;
    assert_eq!(refused, (503, "ext_proc_busy".to_owned()));
    assert_eq!(agents.len(), 5);

    // Agents its grant does not allow gain no share each: behind a gateway
    // granted two agents, invented ones share the gateway's one share.
    let narrow = r#"
        [[credential]]
        name = "envoy-narrow"
        key_sha256 = "92f36e743db9bfee084214460265b6dd8a27ae8f482b3ecfdd23bc788ae3f4f0"
        roles = ["gateway"]
        grant = { pipelines = ["orders_daily"], agents = ["agent-a", "agent-b"], teams = ["*"], environments = ["prod"] }
    "#;
    let credentials = Credentials::from_toml(narrow, std::path::Path::new("narrow.toml")).unwrap();
    let url = serve_with(config, credentials).await.grpc;
    let invented = |i: usize| request_headers_as("", &format!("invented-{i}"), false);
    let (refused, _invented) = hold_until_refused(&url, Some("narrow-envoy-key"), invented, 3).await;
    assert_eq!(refused, caller_busy);
}

/// A 700 KiB body is held and decided: there is room for it.
async fn assert_decided_with_room(url: &str) {
    let mut stream = Stream::open(url).await;
    stream.send(request_headers(false), FULL_DUPLEX).await;
    stream.send(body(&vec![b' '; 700 << 10], false), None).await;
    stream.send(body(&padded_request(0), true), None).await;
    let answer = stream.next().await.unwrap();
    assert!(matches!(answer, Some(Answer::RequestHeaders(_))), "room again: {answer:?}");
}
