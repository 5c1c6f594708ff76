//! The failure log of a store: what the layer does about a store that fails, without flooding
//! the logs and without asking a dead store on every request.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

/// Logs store failures without flooding: the first at once, then one summary per interval.
#[derive(Debug, Default)]
pub(crate) struct FailureLog {
    /// Unix ms before which further failures are only counted.
    quiet_until: AtomicU64,
    suppressed: AtomicU64,
    /// Unix ms until which the store is not asked again (0: closed circuit).
    open_until: AtomicU64,
    /// Unix ms before which further refusals (`refused`) are not logged.
    refusals_quiet_until: AtomicU64,
}

/// How long the limiter leaves a failing store alone before asking it again.
const RETRY_STORE_AFTER: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(10);

impl FailureLog {
    /// Whether the store should be skipped right now (it failed less than a second ago).
    pub(crate) fn skip_store(&self, now: u64) -> bool {
        now < self.open_until.load(Ordering::Relaxed)
    }

    pub(crate) fn failed(&self, now: u64, error: &jtc_cache::Error, policy: &str) {
        self.open_until.store(
            now + RETRY_STORE_AFTER.as_millis() as u64,
            Ordering::Relaxed,
        );
        if !log_due(&self.quiet_until, now) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            error = %error_chain(error),
            policy,
            suppressed,
            "jtc-throttle: the rate-limit store failed; applying the store-error policy"
        );
    }

    /// The store refused one request (its key or value, not the store's health): logged at
    /// most once per interval, and the circuit stays as it is.
    pub(crate) fn refused(&self, now: u64, error: &jtc_cache::Error) {
        if log_due(&self.refusals_quiet_until, now) {
            tracing::warn!(
                error = %error_chain(error),
                "jtc-throttle: the rate-limit store refused a request's key; that request was \
                 counted in process memory, the store stays in use"
            );
        }
    }

    /// The store answered; true when that ends a store-error policy.
    pub(crate) fn succeeded(&self) -> bool {
        // A plain load on the hot path; the write happens once per recovery.
        if self.open_until.load(Ordering::Relaxed) != 0
            && self.open_until.swap(0, Ordering::Relaxed) != 0
        {
            tracing::warn!(
                "jtc-throttle: the rate-limit store answers again; leaving the store-error \
                 policy, back to shared counting"
            );
            return true;
        }
        false
    }
}

/// Whether a log line is due at `now` given the time before which it is quiet: true for one
/// caller per interval, which moves the quiet time on.
fn log_due(quiet_until: &AtomicU64, now: u64) -> bool {
    let until = quiet_until.load(Ordering::Relaxed);
    now >= until
        && quiet_until
            .compare_exchange(
                until,
                now + LOG_EVERY.as_millis() as u64,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
