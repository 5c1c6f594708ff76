//! The limiting algorithms, over process memory or a shared `jtc_cache::Cache`.
//!
//! **Fixed window** (the default): a window of `window` starts at a client's first request;
//! every request in it counts, rejected ones included; when it ends the count starts over.
//! Over a cache this is one atomic [`Cache::hit`]: increment, and give a new counter its TTL,
//! in one step.
//!
//! **Sliding window**: windows aligned on multiples of `window`; a request is admitted when
//! `previous × (time left of the previous window's span) + current + 1 ≤ limit`. Rejected
//! requests are not counted, so a client that keeps retrying gets back in as the estimate
//! slides down. Over a cache: read the previous window, count the request (`hit`), and take
//! the count back if the estimate says no. Admitted requests are never taken back, so at most
//! `limit` are admitted per window, and exactly `limit` when more arrive at once.

mod cache;
mod failures;
mod memory;

use std::time::Duration;

pub(crate) use self::{cache::hit_cache, failures::FailureLog, memory::MemoryStore};

/// Which algorithm a [`ThrottleLayer`](crate::ThrottleLayer) uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// A window starting at the client's first request; every request counts. The default,
    /// and Laravel's behaviour.
    #[default]
    FixedWindow,
    /// A sliding-window counter that does not count rejected requests.
    SlidingWindow,
}

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) allowed: bool,
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    /// Until the window (or enough of it) has passed: when to retry, when the count resets.
    pub(crate) reset_after: Duration,
}

/// The numbers a limiter works with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quota {
    pub(crate) limit: u64,
    pub(crate) window: Duration,
    pub(crate) algorithm: Algorithm,
}

impl Quota {
    pub(crate) fn window_ms(self) -> u64 {
        u64::try_from(self.window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    pub(crate) fn fixed(self, count: u64, reset_after: Duration) -> Decision {
        Decision {
            allowed: count <= self.limit,
            limit: self.limit,
            remaining: self.limit.saturating_sub(count),
            reset_after,
        }
    }

    /// The sliding-window decision for `current` requests already counted in the window that
    /// started `elapsed_ms` ago, after `previous` in the window before.
    pub(crate) fn sliding(self, previous: u64, current: u64, elapsed_ms: u64) -> Decision {
        let window = self.window_ms();
        let left = window.saturating_sub(elapsed_ms);
        let carried = previous * left / window; // floor(previous × share of its span left)
        let estimate = carried + current;
        if estimate < self.limit {
            return Decision {
                allowed: true,
                limit: self.limit,
                remaining: self.limit - estimate - 1,
                reset_after: Duration::from_millis(left),
            };
        }
        // Rejected: when does carried + current + 1 ≤ limit become true?
        let wait = if current >= self.limit || previous == 0 {
            left // not before this window ends
        } else {
            // previous × (window − e) / window ≤ limit − current − 1, e = elapsed + wait
            let allowed_carry = self.limit - current - 1;
            let needed_elapsed = window - allowed_carry * window / previous;
            needed_elapsed.saturating_sub(elapsed_ms).max(1)
        };
        Decision {
            allowed: false,
            limit: self.limit,
            remaining: 0,
            reset_after: Duration::from_millis(wait),
        }
    }
}

/// A quota of `limit` per `window_ms`, for the limiter's tests.
#[cfg(test)]
pub(crate) fn quota(limit: u64, window_ms: u64, algorithm: Algorithm) -> Quota {
    Quota {
        limit,
        window: Duration::from_millis(window_ms),
        algorithm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_retry_after_is_when_the_estimate_drops() {
        let q = quota(10, 60_000, Algorithm::SlidingWindow);
        // 10 carried at the start of the window, none yet in it.
        let d = q.sliding(10, 0, 0);
        assert!(!d.allowed);
        assert_eq!(d.reset_after, Duration::from_millis(6_000)); // 10 × 54/60 = 9 → one fits
        let later = q.sliding(10, 0, 6_000);
        assert!(later.allowed);
    }
}
