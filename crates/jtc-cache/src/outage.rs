//! Logging a failing backend without flooding the logs: during an outage every request fails,
//! and one line per failure would bury everything else. The first failure is logged at once;
//! further failures within the next second are only counted, and the first one after it is
//! logged with that count. One log per `Cache` and the caches derived from it (they share it).

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use crate::Error;

/// How often a failing backend is logged at most.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(1);

/// When the next failure may be logged, and how many were not.
#[derive(Debug)]
pub(crate) struct OutageLog {
    start: Instant,
    /// Milliseconds since `start` before which failures are only counted (0: log the next).
    quiet_until: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for OutageLog {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            quiet_until: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl OutageLog {
    /// A backend call of `operation` on the `driver` failed with `error`.
    pub(crate) fn failed(&self, cache: &str, driver: &str, operation: &str, error: &Error) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let quiet_until = self.quiet_until.load(Ordering::Relaxed);
        let next = now.saturating_add(LOG_EVERY.as_millis() as u64).max(1);
        if now < quiet_until
            || self
                .quiet_until
                .compare_exchange(quiet_until, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            cache,
            driver,
            operation,
            error = %crate::error::chain(error),
            suppressed,
            "cache backend call failed; further failures within 1 s are counted, not logged"
        );
    }
}

/// Logs an error the cache sets aside (a background refresh that failed, a lock it could not
/// release): a backend failure at debug level — the failed call was already logged, at most
/// once a second — anything else at warn.
pub(crate) fn set_aside(error: &Error, key_hash: &dyn std::fmt::Display, what: &str) {
    let error_text = crate::error::chain(error);
    if error.is_backend() {
        tracing::debug!(key_hash = %key_hash, error = %error_text, "{what}");
    } else {
        tracing::warn!(key_hash = %key_hash, error = %error_text, "{what}");
    }
}
