//! The counting behind the layer and [`RateLimiter`](crate::RateLimiter): the algorithms'
//! names, the public [`Decision`], a request's limits grouped by key ([`Plan`]), and the
//! stores that count them ([`Counters`]: process memory, or a `jtc_cache::Cache`).
//!
//! The algorithms themselves are written once, in `jtc_cache::RateRecord` (and its Redis script):
//! every store applies the same arithmetic. Process memory adds a fast path for the common
//! case — one fixed window — on a single atomic word (`memory.rs`).

mod coalesce;
mod counters;
mod deny;
mod failures;
mod memory;
mod plan;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jtc_cache::RateVerdict;

pub(crate) use self::{
    counters::{Check, Counters, Outcome},
    plan::{Group, Plan, quoted},
};

/// Which algorithm a [`Limit`](crate::Limit) or a [`ThrottleLayer`](crate::ThrottleLayer)
/// counts with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// A window starting at the client's first request; every request counts, rejected ones
    /// included; the count starts over when the window ends. The default, and Laravel's
    /// behaviour.
    #[default]
    FixedWindow,
    /// A sliding-window counter over aligned windows: the previous window's count weighs in
    /// by the share of its span still ahead. Rejected requests are not counted, so a client
    /// that keeps retrying gets back in as the estimate slides down.
    SlidingWindow,
    /// A token bucket (GCRA): `burst` requests at once from a full bucket
    /// ([`Limit::burst`](crate::Limit::burst), default: the limit), refilled at one token every
    /// `window / limit`. `Retry-After` on a rejection is the time until the next token.
    TokenBucket,
}

/// What a limiter decided for one request (or, from
/// [`RateLimiter::check`](crate::RateLimiter::check), would decide). With several limits, the
/// figures are those of the tightest: the limit that rejected (the one that keeps the client
/// out longest), or else the one with the fewest requests left.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use jtc_throttle::{Limit, RateLimiter};
/// use std::time::Duration;
///
/// let limiter = RateLimiter::memory();
/// let limit = Limit::per_minute(1);
/// let first = limiter.hit("k", &limit).await?;
/// assert!(first.allowed());
/// assert_eq!((first.limit(), first.remaining()), (1, 0));
/// assert_eq!(first.retry_after(), Duration::ZERO);
/// let second = limiter.hit("k", &limit).await?;
/// assert!(!second.allowed());
/// assert_eq!(second.retry_after(), Duration::from_secs(60));
/// assert!(second.reset_at() > std::time::SystemTime::UNIX_EPOCH);
/// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub(crate) allowed: bool,
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    /// Admitted: until the window ends. Rejected: until a request would be admitted.
    pub(crate) reset_after: Duration,
    /// The clock's reading (Unix ms) when decided.
    pub(crate) at_ms: u64,
    /// The position of the tightest limit in the request's limits.
    pub(crate) policy: usize,
}

impl Decision {
    /// Whether the request is (would be) admitted.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// The requests allowed per window (a token bucket's burst).
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// How many more requests would be admitted now.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// How long to wait before trying again: zero when admitted.
    pub fn retry_after(&self) -> Duration {
        if self.allowed {
            Duration::ZERO
        } else {
            self.reset_after
        }
    }

    /// When the window ends (admitted) or a request will be admitted again (rejected).
    pub fn reset_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.at_ms) + self.reset_after
    }

    /// Every limit admitted: the request passes, with no figures (no limit at all).
    pub(crate) fn unlimited(at_ms: u64) -> Self {
        Self {
            allowed: true,
            limit: u64::MAX,
            remaining: u64::MAX,
            reset_after: Duration::ZERO,
            at_ms,
            policy: 0,
        }
    }

    /// The decision of a lone limit.
    #[inline]
    pub(crate) fn single(verdict: RateVerdict, at_ms: u64) -> Self {
        Self {
            allowed: verdict.allowed,
            limit: verdict.limit,
            remaining: if verdict.allowed {
                verdict.remaining
            } else {
                0
            },
            reset_after: verdict.reset_after,
            at_ms,
            policy: 0,
        }
    }

    /// One decision out of each limit's verdict (in the request's order).
    pub(crate) fn combine(verdicts: &[RateVerdict], at_ms: u64) -> Self {
        let allowed = verdicts.iter().all(|v| v.allowed);
        let tightest = if allowed {
            // The fewest left; on a tie the first.
            verdicts
                .iter()
                .enumerate()
                .min_by_key(|(i, v)| (v.remaining, *i))
        } else {
            // The rejection that lasts longest.
            verdicts
                .iter()
                .enumerate()
                .filter(|(_, v)| !v.allowed)
                .max_by_key(|(i, v)| (v.reset_after, std::cmp::Reverse(*i)))
        };
        let Some((policy, verdict)) = tightest else {
            return Self::unlimited(at_ms);
        };
        Self {
            allowed,
            limit: verdict.limit,
            remaining: if allowed { verdict.remaining } else { 0 },
            reset_after: verdict.reset_after,
            at_ms,
            policy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(allowed: bool, remaining: u64, reset_ms: u64) -> RateVerdict {
        RateVerdict {
            allowed,
            limit: 10,
            remaining,
            reset_after: Duration::from_millis(reset_ms),
        }
    }

    #[test]
    fn the_tightest_limit_speaks() {
        let admitted = Decision::combine(&[v(true, 5, 1_000), v(true, 2, 60_000)], 0);
        assert!(admitted.allowed);
        assert_eq!((admitted.remaining, admitted.policy), (2, 1));
        let rejected = Decision::combine(
            &[v(false, 0, 1_000), v(true, 9, 60_000), v(false, 0, 30_000)],
            0,
        );
        assert!(!rejected.allowed);
        assert_eq!(rejected.policy, 2, "the longest rejection");
        assert_eq!(rejected.retry_after(), Duration::from_secs(30));
        assert!(Decision::combine(&[], 0).allowed);
    }
}
