//! Once-only marks: the first claim of a key wins until it lapses, on every
//! replica sharing the store. Budget alerts claim `<budget>|<period>|<threshold>`
//! so each threshold fires once per window however many replicas see it.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// Most marks kept at once; a claim beyond it is refused (and so does not
/// fire), which bounds what a flood of distinct budgets can make the store
/// keep.
const MAX_CLAIMS: usize = 100_000;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct Claims(HashMap<String, i64>);

/// The key is claimed already (or the store holds too many claims).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Taken;

impl Claims {
    /// Claims `key` until `until_ms`, forgetting lapsed claims first.
    pub(crate) fn claim(&mut self, key: &str, until_ms: i64, now_ms: i64) -> Result<(), Taken> {
        self.0.retain(|_, until| *until > now_ms);
        if self.0.contains_key(key) || self.0.len() >= MAX_CLAIMS {
            return Err(Taken);
        }
        self.0.insert(key.to_owned(), until_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_claimed_once_until_it_lapses() {
        let mut claims = Claims::default();
        assert_eq!(claims.claim("k", 100, 0), Ok(()));
        assert_eq!(claims.claim("k", 100, 50), Err(Taken));
        assert_eq!(claims.claim("k", 200, 100), Ok(()), "lapsed at 100");
    }
}
