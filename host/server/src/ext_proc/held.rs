//! What all full-duplex exchanges hold at once, bounded: a request body
//! held for its decision is arbiter's memory (Envoy no longer buffers it),
//! so many slow uploads at once must not exhaust it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The bytes held across every exchange of one server, and their bound.
#[derive(Debug, Clone)]
pub(super) struct HeldBodies {
    total: Arc<AtomicUsize>,
    max: usize,
}

impl HeldBodies {
    pub(super) fn new(max: usize) -> Self {
        HeldBodies { total: Arc::default(), max }
    }

    /// One exchange's share, empty.
    pub(super) fn share(&self) -> Held {
        Held { bodies: self.clone(), bytes: 0 }
    }
}

/// The bytes one exchange holds; given back when it is dropped.
#[derive(Debug)]
pub(super) struct Held {
    bodies: HeldBodies,
    bytes: usize,
}

impl Held {
    /// Counts `more` bytes, if every exchange's together stay within the
    /// bound.
    pub(super) fn take(&mut self, more: usize) -> bool {
        let max = self.bodies.max;
        let taken = self.bodies.total.fetch_update(Ordering::AcqRel, Ordering::Acquire, |total| {
            total.checked_add(more).filter(|after| *after <= max)
        });
        if taken.is_ok() {
            self.bytes += more;
        }
        taken.is_ok()
    }

    /// Gives back all this exchange holds.
    pub(super) fn release(&mut self) {
        self.bodies.total.fetch_sub(std::mem::take(&mut self.bytes), Ordering::AcqRel);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_stay_within_the_bound_and_are_given_back() {
        let bodies = HeldBodies::new(100);
        let (mut first, mut second) = (bodies.share(), bodies.share());
        assert!(first.take(60));
        assert!(!second.take(41), "60 + 41 is past 100");
        assert!(second.take(40));
        assert!(!first.take(1));
        drop(second);
        assert!(first.take(40));
        first.release();
        assert!(bodies.share().take(100));
        assert!(!bodies.share().take(usize::MAX), "no overflow");
    }
}
