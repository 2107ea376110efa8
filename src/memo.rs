//! A short, bounded memory of failures, for the shell to hold per isolate (a
//! Workers isolate is one thread serving many requests): an answer that cost
//! something (a provider call, a call to the operator's oauth-handler, a
//! lookup over a budget) is given again, without that cost, to a request that
//! would only repeat it, until the moment its entry says.
//!
//! Keys are hashes or bucket names, never a secret. The memory is bounded
//! (the entry that expires first is dropped first), so a flood of distinct
//! keys costs at most [`Memo::new`]'s `cap` entries, and the worst it can do
//! is make the memory forget, which costs only the call the entry saved.
//! Per isolate, not shared: another isolate pays the cost once itself.

use std::collections::HashMap;

use crate::error::BrokerError;

/// Failures by key, each until its own moment (unix ms).
pub struct Memo {
    entries: HashMap<String, (BrokerError, u64)>,
    cap: usize,
}

impl Memo {
    /// An empty memory of at most `cap` entries.
    pub fn new(cap: usize) -> Memo {
        Memo {
            entries: HashMap::new(),
            cap,
        }
    }

    /// The failure remembered for `key` at `now_ms`, if still current.
    pub fn recall(&mut self, key: &str, now_ms: u64) -> Option<BrokerError> {
        self.entries.retain(|_, (_, until)| *until > now_ms);
        self.entries.get(key).map(|(e, _)| e.clone())
    }

    /// Remembers `e` for `key` from `now_ms` until `until_ms`.
    pub fn remember(&mut self, key: String, e: &BrokerError, now_ms: u64, until_ms: u64) {
        self.entries.retain(|_, (_, until)| *until > now_ms);
        if self.entries.len() >= self.cap && !self.entries.contains_key(&key) {
            let first_to_expire = self
                .entries
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(k, _)| k.clone());
            if let Some(k) = first_to_expire {
                self.entries.remove(&k);
            }
        }
        self.entries.insert(key, (e.clone(), until_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_recalled_until_its_moment_and_not_after() {
        let mut m = Memo::new(4);
        m.remember("k".into(), &BrokerError::UnknownAuthId, 1_000, 61_000);
        assert_eq!(m.recall("k", 1_000), Some(BrokerError::UnknownAuthId));
        assert_eq!(m.recall("k", 60_999), Some(BrokerError::UnknownAuthId));
        assert_eq!(m.recall("k", 61_000), None);
        assert_eq!(m.recall("other", 2_000), None);
    }

    #[test]
    fn the_memory_is_bounded_and_drops_what_expires_first() {
        let mut m = Memo::new(3);
        for (i, until) in [(0, 9_000), (1, 5_000), (2, 7_000)] {
            m.remember(format!("x{i}"), &BrokerError::ProviderFailed, 1_000, until);
        }
        m.remember("y".into(), &BrokerError::ProviderFailed, 1_000, 8_000);
        assert_eq!(m.recall("x1", 1_000), None, "expires first: dropped");
        for k in ["x0", "x2", "y"] {
            assert!(m.recall(k, 1_000).is_some(), "{k}");
        }
        // Remembering a key again replaces it and drops nothing.
        m.remember("y".into(), &BrokerError::ProviderTimeout, 1_000, 8_000);
        assert_eq!(m.recall("y", 1_000), Some(BrokerError::ProviderTimeout));
        assert!(m.recall("x2", 1_000).is_some());
    }
}
