//! Shared state on Redis: any number of arbiter replicas share budgets,
//! reservations, breakers, run history, escalations and spend.
//!
//! The rules stay in Rust, in one place for every backend; Redis applies
//! each change atomically with one Lua script (`apply.lua`): budget checks
//! and bookings on the server, under their limits, and records the host
//! rewrote (breakers, escalations, reservations) as compare-and-set, so
//! two replicas changing one breaker at once never lose an update
//! (docs/decisions/0008-redis-state.md).

mod keys;
mod plan;
mod reads;
mod store;
mod tools;

use std::fmt;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use keys::BadNamespace;

use crate::error::StateError;
use crate::store::StoreConfig;
use keys::Keys;
use plan::{Applied, Plan, Refusal};

/// A change planned more often than this, losing every race, fails.
const MAX_ATTEMPTS: u32 = 64;

/// After a failed exchange, calls fail at once for this long instead of
/// each waiting out the timeout; the first call after it probes Redis.
const BACKOFF: Duration = Duration::from_millis(500);

/// Where the shared state is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` or `rediss://...`.
    pub url: String,
    /// Keeps deployments apart on one Redis, and is the hash tag of every
    /// key (one Cluster slot per namespace).
    pub namespace: String,
    /// A state operation that takes longer fails with `state_unavailable`.
    pub timeout: Duration,
}

impl RedisConfig {
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig { url: url.into(), namespace: "arbiter".into(), timeout: Duration::from_millis(250) }
    }
}

/// State shared through Redis.
pub struct RedisStore {
    /// Drives the connection; store calls block on it (they come from
    /// blocking threads: the engine's host calls and the server's
    /// `spawn_blocking` tasks).
    runtime: Driver,
    connection: ConnectionManager,
    script: redis::Script,
    /// Records a tool listing (`listing.lua`).
    listing: redis::Script,
    keys: Keys,
    config: StoreConfig,
    timeout: Duration,
    /// The URL without credentials, for errors.
    endpoint: String,
    /// Set while Redis is taken to be down: until when, and why.
    down: Mutex<Option<(Instant, String)>>,
    /// Exchanges asked of Redis so far (see [`RedisStore::exchanges`]).
    exchanges: AtomicU64,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore").field("endpoint", &self.endpoint).field("keys", &self.keys).finish()
    }
}

impl RedisStore {
    /// Prepares the store. Redis need not be up yet: the connection is made
    /// on first use and remade whenever it breaks, and until then state
    /// operations fail with [`StateError::Unavailable`].
    pub fn connect(redis: &RedisConfig, config: StoreConfig) -> Result<Self, StateError> {
        let endpoint = redact(&redis.url);
        let keys = Keys::new(&redis.namespace)?;
        let client = redis::Client::open(redis.url.as_str())
            .map_err(|e| StateError::InvalidUrl { url: endpoint.clone(), detail: e.to_string() })?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("arbiter-redis")
            .enable_all()
            .build()
            .map_err(|e| StateError::Unavailable { endpoint: endpoint.clone(), detail: e.to_string() })?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(redis.timeout))
            .set_response_timeout(Some(redis.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(200));
        let connection = {
            let _entered = runtime.enter();
            ConnectionManager::new_lazy_with_config(client, manager)
                .map_err(|e| StateError::Unavailable { endpoint: endpoint.clone(), detail: e.to_string() })?
        };
        Ok(RedisStore {
            runtime: Driver(Some(runtime)),
            connection,
            script: redis::Script::new(concat!(include_str!("rolling.lua"), include_str!("apply.lua"))),
            listing: redis::Script::new(include_str!("listing.lua")),
            keys,
            config,
            timeout: redis.timeout,
            endpoint,
            down: Mutex::new(None),
            exchanges: AtomicU64::new(0),
        })
    }

    /// Exchanges (round trips: a command, a pipeline or a script) asked of
    /// Redis since the store was made, answered or not: what a decision
    /// costs on a network is this count times the round trip.
    pub fn exchanges(&self) -> u64 {
        self.exchanges.load(Ordering::Relaxed)
    }

    /// Runs one Redis exchange within the timeout.
    fn run<T, F>(&self, exchange: impl FnOnce(ConnectionManager) -> F) -> Result<T, StateError>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        let unavailable = |detail: String| StateError::Unavailable { endpoint: self.endpoint.clone(), detail };
        self.exchanges.fetch_add(1, Ordering::Relaxed);
        if let Some((until, why)) = self.down.lock().map_err(|_| StateError::Poisoned)?.as_ref()
            && Instant::now() < *until
        {
            return Err(unavailable(why.clone()));
        }
        let connection = self.connection.clone();
        // The timer is created inside the store's runtime, not the caller's.
        let answer = self.runtime.block_on(async { tokio::time::timeout(self.timeout, exchange(connection)).await });
        let failure = match answer.ok_or(StateError::Poisoned)? {
            Ok(Ok(value)) => {
                *self.down.lock().map_err(|_| StateError::Poisoned)? = None;
                return Ok(value);
            }
            // Redis answered, so it is up: the exchange itself failed.
            Ok(Err(e)) if !(e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) => {
                return Err(StateError::Unexpected(e.to_string()));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {} ms", self.timeout.as_millis()),
        };
        *self.down.lock().map_err(|_| StateError::Poisoned)? = Some((Instant::now() + BACKOFF, failure.clone()));
        Err(unavailable(failure))
    }

    /// Runs `script` on `keys` with `arg` as JSON; its reply is strings.
    fn invoke(
        &self,
        script: &redis::Script,
        arg: &impl serde::Serialize,
        keys: &[&str],
    ) -> Result<Vec<String>, StateError> {
        let json = serde_json::to_string(arg).map_err(|e| StateError::Unexpected(e.to_string()))?;
        self.run(|mut connection| {
            let mut invocation = script.prepare_invoke();
            invocation.arg(json);
            for key in keys {
                invocation.key(*key);
            }
            async move { invocation.invoke_async(&mut connection).await }
        })
    }

    fn apply(&self, plan: &Plan) -> Result<Applied, StateError> {
        let reply = self.invoke(&self.script, plan, &plan.keys())?;
        Applied::from_reply(&reply).map_err(StateError::Unexpected)
    }

    /// Plans a change from what is read now and applies it (a plan that
    /// touches no key needs no script); when a record it rewrites changed
    /// meanwhile, reads and plans again.
    fn transact<T, E>(
        &self,
        mut plan: impl FnMut() -> Result<Result<(Plan, T), E>, StateError>,
        refused: impl Fn(Refusal) -> Result<E, StateError>,
    ) -> Result<Result<T, E>, StateError> {
        for _ in 0..MAX_ATTEMPTS {
            let (planned, value) = match plan()? {
                Ok(planned) => planned,
                Err(refusal) => return Ok(Err(refusal)),
            };
            if planned.keys().is_empty() {
                return Ok(Ok(value));
            }
            match self.apply(&planned)? {
                Applied::Done => return Ok(Ok(value)),
                Applied::Refused(refusal) => return refused(refusal).map(Err),
                Applied::Conflict => {}
            }
        }
        Err(StateError::Contended { attempts: MAX_ATTEMPTS })
    }
}

/// The store's own runtime. Dropped in the background: the last owner of
/// the store may be an async task (the server shutting down), where a
/// blocking shutdown would panic.
struct Driver(Option<tokio::runtime::Runtime>);

impl Driver {
    fn block_on<F: Future>(&self, future: F) -> Option<F::Output> {
        self.0.as_ref().map(|runtime| runtime.block_on(future))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// The URL with any password replaced.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://***@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_stay_out_of_errors() {
        assert_eq!(redact("redis://:secret@cache:6379/0"), "redis://***@cache:6379/0");
        assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
    }
}
