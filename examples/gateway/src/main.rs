//! A reverse proxy with arbiter in front of every route, in about a
//! hundred lines: each route is a `tower` service (a hyper client to its
//! upstream) wrapped in arbiter's [`GuardLayer`]. LLM requests are decided
//! and held to their reservation, MCP listings and results are filtered,
//! and every answer is read back to settle usage and feed the breakers —
//! what `arbiter serve` does behind Envoy, in the gateway's own process.
//!
//! ```sh
//! arbiter-example-gateway --bundle examples/orders_daily/bundle.toml \
//!     --credentials examples/orders_daily/credentials.toml \
//!     --route /v1/=https://api.openai.example/v1/ \
//!     --route /everything=http://127.0.0.1:3001/mcp,mcp=everything
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, bail};
use arbiter::gateway::{Gateway, Guard, GuardLayer, Route};
use arbiter::server::{Credentials, ServerConfig};
use arbiter::state::{InMemoryStore, JournalStore, StateStore, StoreConfig};
use arbiter::{Bundle, Decider, EngineConfig, PolicyEngine};
use clap::Parser;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tower::{Layer, ServiceExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The upstream's answers (an error type without lifetimes: see
/// `upstream_body` in arbiter's gateway layer).
type UpstreamBody = UnsyncBoxBody<Bytes, std::io::Error>;
/// What the gateway answers.
type Body = UnsyncBoxBody<Bytes, BoxError>;

#[derive(Parser)]
#[command(about = "A reverse proxy guarded by arbiter's tower layer")]
struct Args {
    /// The bundle manifest every request is decided against.
    #[arg(long)]
    bundle: PathBuf,
    /// Where the gateway listens (port 0: any; the first line printed names it).
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Who may call (the `arbiter serve --credentials` file).
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// `PREFIX=URL[,mcp=SERVER]`: requests whose path starts with PREFIX
    /// go to URL followed by the rest of the path; `mcp=` names the MCP
    /// server the route reaches. The longest matching prefix wins.
    #[arg(long = "route", required = true)]
    routes: Vec<RouteArg>,
    /// Budgets, breakers and history in this journal directory (default:
    /// in memory).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Audit log of every decision.
    #[arg(long)]
    audit_log: Option<PathBuf>,
}

#[derive(Clone, Debug)]
struct RouteArg {
    prefix: String,
    upstream: String,
    mcp_server: Option<String>,
}

impl FromStr for RouteArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (prefix, rest) = text.split_once('=').ok_or("expected PREFIX=URL[,mcp=SERVER]")?;
        let (upstream, mcp_server) = match rest.split_once(",mcp=") {
            Some((url, server)) => (url, Some(server.to_owned())),
            None => (rest, None),
        };
        if !prefix.starts_with('/') {
            return Err(format!("the prefix {prefix:?} must start with /"));
        }
        upstream.parse::<Uri>().map_err(|e| format!("{upstream}: {e}"))?;
        Ok(RouteArg { prefix: prefix.to_owned(), upstream: upstream.to_owned(), mcp_server })
    }
}

/// One route's upstream: the request's path past the prefix, appended to
/// the upstream URL. An unreachable upstream answers 502, which the
/// exchange settles as a failure.
#[derive(Clone)]
struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    prefix: Arc<str>,
    base: Arc<str>,
}

impl Upstream {
    async fn forward(self, mut request: Request<Full<Bytes>>) -> Result<Response<UpstreamBody>, Infallible> {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let uri = format!("{}{}", self.base, path.strip_prefix(&*self.prefix).unwrap_or(path));
        let Ok(uri) = uri.parse::<Uri>() else { return Ok(status(StatusCode::BAD_REQUEST)) };
        *request.uri_mut() = uri;
        request.headers_mut().remove(hyper::header::HOST);
        Ok(match self.client.request(request).await {
            Ok(response) => response.map(|body| body.map_err(std::io::Error::other).boxed_unsync()),
            Err(e) => {
                eprintln!("upstream {}: {e}", self.base);
                status(StatusCode::BAD_GATEWAY)
            }
        })
    }
}

fn status<E>(code: StatusCode) -> Response<UnsyncBoxBody<Bytes, E>> {
    let mut response = Response::new(Full::default().map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = code;
    response
}

type GuardedRoute = Guard<tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<UpstreamBody>, Infallible>>;

/// The routes, longest prefix first.
#[derive(Clone)]
struct Router {
    routes: Arc<[(String, GuardedRoute)]>,
}

impl Router {
    fn route(
        self,
        request: Request<Incoming>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Response<Body>, Infallible>> + Send>> {
        Box::pin(async move {
            let path = request.uri().path();
            let Some((_, guarded)) = self.routes.iter().find(|(prefix, _)| path.starts_with(prefix.as_str())) else {
                return Ok(status(StatusCode::NOT_FOUND));
            };
            let response = guarded.clone().oneshot(request).await?;
            Ok(response.map(BodyExt::boxed_unsync))
        })
    }
}

fn open_state(dir: Option<&PathBuf>) -> anyhow::Result<Arc<dyn StateStore>> {
    Ok(match dir {
        Some(dir) => Arc::new(JournalStore::open(dir, StoreConfig::default())?),
        None => Arc::new(InMemoryStore::in_memory(StoreConfig::default())),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let engine = PolicyEngine::new(EngineConfig::default())?;
    let bundle = Bundle::load(&engine, &args.bundle).with_context(|| format!("loading {}", args.bundle.display()))?;
    let decider = Decider::new(Arc::new(bundle), open_state(args.state.as_ref())?);
    let credentials = match &args.credentials {
        Some(path) => Credentials::load(path)?,
        None => bail!("--credentials is required: every caller is identified by its arbiter key"),
    };
    let config = ServerConfig {
        credentials: Arc::new(credentials),
        audit_log: args.audit_log.clone(),
        ..ServerConfig::default()
    };
    let gateway = Gateway::new(&config, decider)?;
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut routes: Vec<(String, GuardedRoute)> = args
        .routes
        .iter()
        .map(|route| {
            let upstream = Upstream {
                client: client.clone(),
                prefix: route.prefix.as_str().into(),
                base: route.upstream.as_str().into(),
            };
            let service = tower::util::BoxCloneSyncService::new(tower::service_fn(move |request| {
                upstream.clone().forward(request)
            }));
            let layer: GuardLayer = gateway.layer(match &route.mcp_server {
                Some(server) => Route::new().mcp_server(server),
                None => Route::new(),
            });
            (route.prefix.clone(), layer.layer(service))
        })
        .collect();
    routes.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
    let router = Router { routes: routes.into() };

    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("arbiter gateway listening on http://{}", listener.local_addr()?);
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = accepted?;
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                let service = TowerToHyperService::new(tower::service_fn(move |request| router.clone().route(request)));
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    if let Err(e) = connection.await {
                        eprintln!("connection: {e}");
                    }
                });
            }
            _ = &mut shutdown => break,
            _ = terminate.recv() => break,
        }
    }
    gateway.checkpoint_audit()?;
    Ok(())
}
