//! A value read from a shared store and held for a while: a namespace version (memcached), a
//! generation (DynamoDB). Read again once older than its check interval; while one caller
//! reads it again, the others go on with the one held.

use std::{
    future::Future,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::Result;

/// A shared store's value as last read, and when.
#[derive(Debug)]
pub(crate) struct Held {
    check: Duration,
    current: RwLock<Option<(Arc<str>, Instant)>>,
    refreshing: AtomicBool,
}

impl Held {
    /// Holds nothing yet; what it reads is good for `check` (zero: read before every use).
    pub(crate) fn new(check: Duration) -> Self {
        Self {
            check,
            current: RwLock::new(None),
            refreshing: AtomicBool::new(false),
        }
    }

    /// The value held if it is recent enough, else the one `read` gives (held from now on).
    pub(crate) async fn get<F>(&self, read: impl FnOnce() -> F) -> Result<Arc<str>>
    where
        F: Future<Output = Result<Arc<str>>>,
    {
        let held = self.current.read().map_or(None, |c| c.clone());
        if let Some((value, read_at)) = &held {
            if read_at.elapsed() < self.check {
                return Ok(Arc::clone(value));
            }
            // Stale: one call reads it again while the others go on with the one held; with a
            // check of zero every call reads it.
            if !self.check.is_zero() && self.refreshing.swap(true, Ordering::AcqRel) {
                return Ok(Arc::clone(value));
            }
        }
        // Cleared however this call ends, cancelled included, so the value is read again.
        let _refreshing = Cleared(&self.refreshing);
        let value = read().await?;
        self.hold(Arc::clone(&value));
        Ok(value)
    }

    /// Holds `value` as just read (or just written by this process).
    pub(crate) fn hold(&self, value: Arc<str>) {
        if let Ok(mut current) = self.current.write() {
            *current = Some((value, Instant::now()));
        }
    }
}

/// Clears its flag when dropped.
struct Cleared<'a>(&'a AtomicBool);

impl Drop for Cleared<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_value_is_read_again_only_when_stale() {
        let held = Held::new(Duration::from_secs(60));
        let first = held.get(|| async { Ok(Arc::from("a")) }).await.unwrap();
        let second = held.get(|| async { Ok(Arc::from("b")) }).await.unwrap();
        assert_eq!((&*first, &*second), ("a", "a"));
        held.hold(Arc::from("c"));
        assert_eq!(
            &*held.get(|| async { Ok(Arc::from("d")) }).await.unwrap(),
            "c"
        );
        let every_time = Held::new(Duration::ZERO);
        every_time.hold(Arc::from("a"));
        assert_eq!(
            &*every_time
                .get(|| async { Ok(Arc::from("b")) })
                .await
                .unwrap(),
            "b"
        );
    }
}
