//! What all full-duplex exchanges hold at once, bounded: a request body
//! held for its decision is arbiter's memory (Envoy no longer buffers it),
//! so many slow uploads at once must not exhaust it, and one caller's
//! uploads must not take it all from the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The bytes held across every exchange of one server, in total and per
/// caller, and their bounds.
#[derive(Debug, Clone)]
pub(super) struct HeldBodies {
    counts: Arc<Mutex<Counts>>,
    max: usize,
    max_per_caller: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Only callers holding something: an entry goes when it reaches zero,
    /// so the map is bounded by the exchanges holding bytes.
    by_caller: HashMap<Arc<str>, usize>,
}

/// Why a body could not be held.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// Every exchange's together would pass the server's bound.
    ServerFull,
    /// This caller's exchanges together would pass its share.
    CallerFull,
}

impl Refused {
    /// The bound, as metrics label it.
    pub(super) fn bound(&self) -> &'static str {
        match self {
            Refused::ServerFull => "server",
            Refused::CallerFull => "caller",
        }
    }
}

impl HeldBodies {
    pub(super) fn new(max: usize, max_per_caller: usize) -> Self {
        HeldBodies { counts: Arc::default(), max, max_per_caller }
    }

    /// One exchange's share, empty, drawn on `caller`'s.
    pub(super) fn share(&self, caller: Arc<str>) -> Held {
        Held { bodies: self.clone(), caller, bytes: 0 }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts are updated whole under the lock: a panic elsewhere
        // cannot leave them half-written.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The bytes one exchange holds, given back when it is dropped.
#[derive(Debug)]
pub(super) struct Held {
    bodies: HeldBodies,
    caller: Arc<str>,
    bytes: usize,
}

impl Held {
    /// Counts `more` bytes, if this caller's together stay within its share
    /// and every exchange's within the server's bound. The caller's share
    /// is checked first: a caller past it must wait for its own bodies,
    /// whether or not the server is also full.
    pub(super) fn take(&mut self, more: usize) -> Result<(), Refused> {
        let mut counts = self.bodies.counts();
        let caller = counts.by_caller.get(&self.caller).copied().unwrap_or(0);
        let caller = caller.checked_add(more).filter(|after| *after <= self.bodies.max_per_caller);
        let Some(caller) = caller else { return Err(Refused::CallerFull) };
        let total = counts.total.checked_add(more).filter(|after| *after <= self.bodies.max);
        let Some(total) = total else { return Err(Refused::ServerFull) };
        counts.total = total;
        if caller > 0 {
            counts.by_caller.insert(self.caller.clone(), caller);
        }
        self.bytes += more;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let bytes = self.bytes;
        if bytes == 0 {
            return;
        }
        let mut counts = self.bodies.counts();
        counts.total -= bytes;
        if let Some(held) = counts.by_caller.get_mut(&self.caller) {
            *held -= bytes;
            if *held == 0 {
                counts.by_caller.remove(&self.caller);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn callers_held(bodies: &HeldBodies) -> usize {
        bodies.counts().by_caller.len()
    }

    #[test]
    fn shares_stay_within_the_bound_and_are_given_back() {
        let bodies = HeldBodies::new(100, 100);
        let (mut first, mut second) = (bodies.share("a".into()), bodies.share("b".into()));
        assert_eq!(first.take(60), Ok(()));
        assert_eq!(second.take(41), Err(Refused::ServerFull), "60 + 41 is past 100");
        assert_eq!(second.take(40), Ok(()));
        assert_eq!(first.take(1), Err(Refused::ServerFull));
        drop(second);
        assert_eq!(first.take(40), Ok(()));
        drop(first);
        assert_eq!(bodies.share("c".into()).take(100), Ok(()));
        assert_eq!(bodies.share("c".into()).take(usize::MAX), Err(Refused::CallerFull), "no overflow");
        let wide = HeldBodies::new(100, usize::MAX);
        assert_eq!(wide.share("c".into()).take(usize::MAX), Err(Refused::ServerFull), "no overflow");
        assert_eq!(callers_held(&bodies), 0, "nothing is held, so no caller is counted");
    }

    #[test]
    fn one_caller_cannot_take_the_others_share() {
        let bodies = HeldBodies::new(100, 40);
        // The same caller over many exchanges: their bytes add up.
        let mut flood: Vec<Held> = (0..4).map(|_| bodies.share("flood".into())).collect();
        assert_eq!(flood[0].take(30), Ok(()));
        assert_eq!(flood[1].take(10), Ok(()));
        assert_eq!(flood[2].take(1), Err(Refused::CallerFull));
        // A refused take counts nothing: the server still has 60 for others.
        let mut other = bodies.share("other".into());
        assert_eq!(other.take(40), Ok(()));
        assert_eq!(bodies.share("third".into()).take(21), Err(Refused::ServerFull));
        // Past its own share and the server's at once: its own is named.
        assert_eq!(other.take(21), Err(Refused::CallerFull));
        // What the flood gives back is its own again.
        flood.truncate(1);
        assert_eq!(flood[0].take(10), Ok(()));
        assert_eq!(callers_held(&bodies), 2);
        drop(flood);
        drop(other);
        assert_eq!(callers_held(&bodies), 0);
        assert_eq!(bodies.counts().total, 0);
    }
}
