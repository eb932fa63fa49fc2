//! Console sessions: a credential's key is exchanged once, at login, for a
//! random session id in an `HttpOnly`, `SameSite=Strict` cookie; the key
//! itself is never kept, shown or put in a page. Each session has its own
//! CSRF token, which every form carries and every POST must match.
//!
//! Sessions live in this replica's memory: a restart or another replica
//! asks to log in again, which is cheap, and nothing a key unlocks is
//! written anywhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

use crate::credentials::Credential;

pub(crate) const COOKIE: &str = "arbiter_session";
/// A session ends this long after login.
const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Sessions kept at once; past it the oldest is ended.
const MAX_SESSIONS: usize = 10_000;

#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub(crate) credential: Arc<Credential>,
    pub(crate) csrf: String,
    started: Instant,
}

impl Session {
    /// Whether a form's token is this session's (compared in constant time).
    pub(crate) fn csrf_matches(&self, given: &str) -> bool {
        let (a, b) = (self.csrf.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    // getrandom fails only without an OS random source; a server without
    // one cannot make sessions safely, so none is made.
    getrandom::fill(&mut bytes).expect("the OS random source is unavailable");
    hex::encode(bytes)
}

impl Sessions {
    /// Starts a session for `credential`; returns its id.
    pub(crate) fn start(&self, credential: Arc<Credential>) -> String {
        let id = random_hex();
        let session = Session { credential, csrf: random_hex(), started: Instant::now() };
        let mut sessions = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|_, s| s.started.elapsed() < LIFETIME);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.started).map(|(id, _)| id.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), session);
        id
    }

    /// The live session a request's cookie names.
    pub(crate) fn of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers)?;
        let sessions = self.by_id.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.get(id).filter(|s| s.started.elapsed() < LIFETIME).cloned()
    }

    pub(crate) fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.by_id.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        }
    }
}

fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csrf_token_matches_only_its_own_session() {
        let sessions = Sessions::default();
        let credential = Arc::new(Credential::for_tests("alice"));
        let (a, b) = (sessions.start(credential.clone()), sessions.start(credential));
        let headers = |id: &str| {
            let mut h = HeaderMap::new();
            h.insert(axum::http::header::COOKIE, format!("other=1; {COOKIE}={id}").parse().unwrap());
            h
        };
        let (a, b) = (sessions.of(&headers(&a)).unwrap(), sessions.of(&headers(&b)).unwrap());
        assert!(a.csrf_matches(&a.csrf.clone()));
        assert!(!a.csrf_matches(&b.csrf) && !a.csrf_matches("") && !a.csrf_matches(&a.csrf[1..]));
        assert!(sessions.of(&headers("forged")).is_none());
    }
}
