//! The local deny cache: floods stay in the process.
//!
//! When the shared store rejects a key until T, this process remembers it and rejects that
//! key itself until T, with no store command. It only ever rejects, and only what the store
//! has just said it would reject: every admitted request is still counted by the store, so
//! admissions stay exact across instances. The trade-offs: a key cleared by another instance
//! (`RateLimiter::clear`) is seen here only at T, and the rejected requests of the flood are
//! not counted in the store (a fixed window, which counts rejections, counts the first one).

use std::time::Duration;

use dashmap::DashMap;
use jtc_cache::RateVerdict;

use crate::key::CounterKey;

/// Keys the store rejected, and until when. Bounded: when full, finished entries are dropped,
/// and if none has finished, a new key is not remembered (it goes to the store as before).
pub(crate) struct DenyCache {
    denied: DashMap<CounterKey, Denied, ahash::RandomState>,
    capacity: usize,
}

#[derive(Debug, Clone, Copy)]
struct Denied {
    until_ms: u64,
    limit: u64,
}

impl DenyCache {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            denied: DashMap::default(),
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX).max(1),
        }
    }

    /// The rejection to answer for `key` at `now_ms`, when the store said so and it still
    /// holds.
    pub(crate) fn check(&self, key: &CounterKey, now_ms: u64) -> Option<RateVerdict> {
        let denied = *self.denied.get(key)?;
        if now_ms < denied.until_ms {
            return Some(RateVerdict {
                allowed: false,
                limit: denied.limit,
                remaining: 0,
                reset_after: Duration::from_millis(denied.until_ms - now_ms),
            });
        }
        self.denied.remove_if(key, |_, d| d.until_ms <= now_ms);
        None
    }

    /// Remembers what the store said about `key` at `now_ms`, if it rejected: until every
    /// rejecting limit admits again.
    pub(crate) fn learn(&self, key: &CounterKey, verdicts: &[RateVerdict], now_ms: u64) {
        let Some(rejection) = verdicts
            .iter()
            .filter(|v| !v.allowed)
            .max_by_key(|v| v.reset_after)
        else {
            return;
        };
        let wait = u64::try_from(rejection.reset_after.as_millis()).unwrap_or(u64::MAX);
        if wait == 0 {
            return;
        }
        if self.denied.len() >= self.capacity {
            self.denied.retain(|_, d| d.until_ms > now_ms);
            if self.denied.len() >= self.capacity {
                return;
            }
        }
        self.denied.insert(
            key.clone(),
            Denied {
                until_ms: now_ms.saturating_add(wait),
                limit: rejection.limit,
            },
        );
    }

    /// Forgets `key` (this process cleared it).
    pub(crate) fn forget(&self, key: &CounterKey) {
        self.denied.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(name: &str) -> CounterKey {
        CounterKey::Custom(name.into())
    }

    fn rejected(ms: u64) -> RateVerdict {
        RateVerdict {
            allowed: false,
            limit: 3,
            remaining: 0,
            reset_after: Duration::from_millis(ms),
        }
    }

    #[test]
    fn rejects_until_the_longest_rejection_ends() {
        let deny = DenyCache::new(10);
        let admitted = RateVerdict {
            allowed: true,
            ..rejected(60_000)
        };
        deny.learn(&k("k"), &[rejected(1_000), admitted, rejected(5_000)], 100);
        let v = deny.check(&k("k"), 1_100).expect("denied");
        assert_eq!(v.reset_after, Duration::from_millis(4_000));
        assert!(
            deny.check(&k("k"), 5_100).is_none(),
            "asks the store again at T"
        );
        deny.learn(&k("ok"), &[admitted], 0);
        assert!(
            deny.check(&k("ok"), 0).is_none(),
            "admissions are never remembered"
        );
    }

    #[test]
    fn stays_bounded() {
        let deny = DenyCache::new(100);
        for i in 0..1_000 {
            deny.learn(&k(&format!("k{i}")), &[rejected(60_000)], 0);
        }
        assert_eq!(deny.denied.len(), 100);
        deny.learn(&k("late"), &[rejected(60_000)], 60_000);
        assert!(
            deny.check(&k("late"), 60_001).is_some(),
            "finished entries made room"
        );
    }
}
