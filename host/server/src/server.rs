//! Binding and running the HTTP and gRPC servers, with graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arbiter_engine::Decider;
use arbiter_engine::readiness::ServerFacts;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::alerts::Alerts;
use crate::api;
use crate::audit::{AuditError, AuditLog};
use crate::bundles::{Bundles, ReloadConfig};
use crate::config::{Clock, ServerConfig};
use crate::ext_authz::grpc;
use crate::ext_proc;
use crate::metrics::Metrics;
use crate::state::{AppState, InFlight};
use crate::webhook::Webhook;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error("{0}")]
    Config(String),
    #[error("HTTP server failed: {0}")]
    Http(#[source] std::io::Error),
    #[error("gRPC server failed: {0}")]
    Grpc(#[source] tonic::transport::Error),
}

/// A bound, not yet running server.
#[derive(Debug)]
pub struct Server {
    http: TcpListener,
    grpc: Option<TcpListener>,
    state: AppState,
    config: ServerConfig,
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })
}

/// What every handler and gateway shares, from the configuration: the
/// audit log opened, the webhook workers started (on the current Tokio
/// runtime).
pub(crate) fn app_state(
    config: &ServerConfig,
    decider: Decider,
    reload: Option<ReloadConfig>,
) -> Result<AppState, ServerError> {
    if !(1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&config.max_in_flight) {
        return Err(ServerError::Config(format!("max_in_flight must be 1 to {}", tokio::sync::Semaphore::MAX_PERMITS)));
    }
    if let Some(reload) = &reload
        && !reload.bundle_dir.is_dir()
    {
        return Err(ServerError::Config(format!(
            "bundle directory {} is not a directory",
            reload.bundle_dir.display()
        )));
    }
    let audit = match &config.audit_log {
        Some(path) => Some(Arc::new(AuditLog::open(path, config.audit_mask.clone(), config.audit.clone())?)),
        None => None,
    };
    let metrics = Metrics::new(config.max_metric_series);
    let webhook = match &config.escalation_webhook {
        Some(url) => Some(
            Webhook::start(url, config.webhook_queue, config.webhook_workers, metrics.webhook_dropped())
                .map_err(ServerError::Config)?,
        ),
        None => None,
    };
    let facts = ServerFacts {
        bundle: None,
        state: config.state_backend,
        audit_log: audit.is_some(),
        audit_signed: audit.as_ref().is_some_and(|a| a.signed()),
        audit_required: audit.as_ref().is_some_and(|a| a.required()),
        trusted_keys: reload.as_ref().map_or(0, |r| r.trusted_keys.len()),
        escalation_webhook: webhook.is_some(),
        keep_bundles: reload.as_ref().map(|r| r.keep),
        anonymous: config.credentials.anonymous,
        clock: match config.clock {
            Clock::Server => "server",
            Clock::Request { .. } => "request",
        }
        .to_owned(),
        identity: config.credentials.identity(),
    };
    Ok(AppState {
        facts: Arc::new(facts),
        sessions: Arc::default(),
        recent: Arc::default(),
        alerts: Arc::new(Alerts::new(config.budget_alerts.clone())),
        audit,
        in_flight: InFlight::new(config.max_in_flight, config.in_flight_wait, metrics.in_flight()),
        metrics,
        credentials: Arc::clone(&config.credentials),
        clock: config.clock,
        wire: Arc::new(config.wire.clone()),
        ext_proc: config.ext_proc,
        webhook,
        bundles: reload.map(|reload| Arc::new(Bundles::new(reload, decider.bundle()))),
        decider,
    })
}

impl Server {
    /// Binds the listeners, opens the audit log and starts the webhook
    /// workers.
    pub async fn bind(
        config: ServerConfig,
        decider: Decider,
        reload: Option<ReloadConfig>,
    ) -> Result<Self, ServerError> {
        let state = app_state(&config, decider, reload)?;
        let http = bind(config.http).await?;
        let grpc = match config.grpc {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Ok(Server { http, grpc, state, config })
    }

    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.local_addr().ok()
    }

    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests
    /// and checkpoints the audit log.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), ServerError> {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let wait = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        };
        let router = api::router(self.state.clone(), self.config.max_body_bytes).layer(
            tower_http::timeout::TimeoutLayer::with_status_code(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                self.config.request_timeout,
            ),
        );
        // Decisions are small and latency-bound: no Nagle.
        let listener = self.http.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("cannot set TCP_NODELAY: {e}");
            }
        });
        let http = axum::serve(listener, router).with_graceful_shutdown(wait(stopped.clone()));
        let grpc = self.grpc.map(|listener| {
            tonic::transport::Server::builder()
                .timeout(self.config.request_timeout)
                .add_service(grpc::service(self.state.clone()))
                .add_service(ext_proc::service(self.state.clone()))
                .serve_with_incoming_shutdown(
                    // Small gRPC frames must not wait for Nagle.
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    wait(stopped.clone()),
                )
        });
        let checkpoints = self.state.audit.clone().map(|audit| tokio::spawn(audit.checkpoint_periodically()));
        let result = match grpc {
            Some(grpc) => {
                let (http, grpc) = tokio::join!(http, grpc);
                http.map_err(ServerError::Http).and(grpc.map_err(ServerError::Grpc))
            }
            None => http.await.map_err(ServerError::Http),
        };
        if let Some(task) = checkpoints {
            task.abort();
        }
        if let Some(audit) = &self.state.audit {
            audit.checkpoint()?;
        }
        result
    }
}
