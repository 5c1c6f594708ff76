//! `ArrayDriver`: entries in this process's memory.
//!
//! The entries live in a sharded hash table (`local/table.rs`); expiry reads a clock that is
//! cheap far from an entry's expiry and precise near it (`local/clock.rs`).

mod entry;
mod rate;

use std::{
    sync::{Arc, Weak},
    thread,
    time::Duration,
};

use bytes::Bytes;

use self::entry::{Entry, Stored};

use crate::{
    Clock, Hit, RateRule, RateVerdict, Result,
    clock::{duration_ms, expiry_at},
    driver::{CacheDriver, DriverFuture, ReadNow},
    local::{clock::LocalClock, table::Shards},
};

/// How often the sweeper reclaims expired entries unless told otherwise.
const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// An in-process cache driver: fast, private to the process, gone when it exits.
///
/// Made for tests and for single-instance apps. Every operation, `increment` and `add`
/// included, is atomic (a lock per shard of its hash table). Expired entries are invisible at
/// once and their memory is reclaimed by a background sweeper thread within one sweep
/// interval, even when nobody reads them again; the thread stops when the driver is dropped.
///
/// ```
/// # tokio_test_block_on(async {
/// use jtc_cache::{ArrayDriver, Cache};
/// use std::time::Duration;
///
/// let cache = Cache::new(ArrayDriver::new());
/// cache.put("greeting", &"hello", Duration::from_secs(60)).await?;
/// assert_eq!(cache.get::<String>("greeting").await?.as_deref(), Some("hello"));
/// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ArrayDriver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    map: Shards<Entry>,
    clock: LocalClock,
}

/// Builds an [`ArrayDriver`] with a custom clock or sweep interval.
#[derive(Debug)]
#[must_use]
pub struct ArrayDriverBuilder {
    clock: LocalClock,
    sweep_interval: Option<Duration>,
    max_entries: Option<usize>,
}

impl Default for ArrayDriverBuilder {
    fn default() -> Self {
        Self {
            clock: LocalClock::default(),
            sweep_interval: Some(DEFAULT_SWEEP_INTERVAL),
            max_entries: None,
        }
    }
}

impl ArrayDriverBuilder {
    /// The clock that decides expiry. Default: [`MonotonicClock`](crate::MonotonicClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = LocalClock::custom(clock);
        self
    }

    /// How often expired entries are reclaimed; `None` turns the sweeper thread off (call
    /// [`ArrayDriver::sweep`] yourself). Default: 1 second.
    pub fn sweep_interval(mut self, interval: Option<Duration>) -> Self {
        self.sweep_interval = interval.filter(|d| !d.is_zero());
        self
    }

    /// Holds at most `n` entries (at least 1): a new key beyond that evicts an entry, the
    /// oldest of those not read since eviction last passed them (CLOCK, second-chance FIFO).
    /// Unbounded by default: without it, memory grows with every distinct key written until
    /// entries expire and are swept.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache};
    /// use std::time::Duration;
    ///
    /// let driver = ArrayDriver::builder().max_entries(1_000).build();
    /// let cache = Cache::new(driver.clone());
    /// cache.put("hot", &1, Duration::from_secs(60)).await?;
    /// for i in 0..10_000 {
    ///     cache.get::<i32>("hot").await?; // read: kept
    ///     cache.put(&format!("cold:{i}"), &i, Duration::from_secs(60)).await?;
    /// }
    /// assert!(driver.len() <= 1_000);
    /// assert_eq!(cache.get::<i32>("hot").await?, Some(1));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn max_entries(mut self, n: usize) -> Self {
        self.max_entries = Some(n);
        self
    }

    /// Creates the driver and starts its sweeper.
    pub fn build(self) -> ArrayDriver {
        let inner = Arc::new(Inner {
            map: self
                .max_entries
                .map_or_else(Shards::default, Shards::bounded),
            clock: self.clock,
        });
        if let Some(interval) = self.sweep_interval {
            spawn_sweeper(Arc::downgrade(&inner), interval);
        }
        ArrayDriver { inner }
    }
}

impl ArrayDriver {
    /// An empty in-memory driver on the [`MonotonicClock`](crate::MonotonicClock) (wall-clock
    /// milliseconds that never step back).
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for a custom clock or sweep interval.
    pub fn builder() -> ArrayDriverBuilder {
        ArrayDriverBuilder::default()
    }

    /// Removes every expired entry now; returns how many were removed.
    pub fn sweep(&self) -> u64 {
        self.inner.sweep()
    }

    /// The number of entries held in memory, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// Whether no entries are held in memory.
    pub fn is_empty(&self) -> bool {
        self.inner.map.len() == 0
    }

    fn now(&self) -> u64 {
        self.inner.clock.now_ms()
    }
}

impl Default for ArrayDriver {
    fn default() -> Self {
        Self::new()
    }
}

impl Inner {
    fn sweep(&self) -> u64 {
        let now = self.clock.now_ms();
        self.map.retain(|entry| entry.is_live(now))
    }
}

fn spawn_sweeper(inner: Weak<Inner>, interval: Duration) {
    let spawned = thread::Builder::new()
        .name("jtc-array-sweeper".into())
        .spawn(move || {
            loop {
                thread::sleep(interval);
                match inner.upgrade() {
                    Some(inner) => {
                        inner.sweep();
                    }
                    None => break,
                }
            }
        });
    if let Err(error) = spawned {
        // Expired entries stay invisible; only their memory waits for the next write or sweep.
        tracing::warn!(%error, "could not start the array cache sweeper thread");
    }
}

impl CacheDriver for ArrayDriver {
    fn name(&self) -> &'static str {
        "array"
    }

    #[inline]
    fn get<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        DriverFuture::read_now(self, key)
    }

    #[inline]
    fn get_now(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        Some(self.read_now(key))
    }

    #[inline]
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, ()> {
        self.put_now(key, value, ttl);
        DriverFuture::ready(Ok(()))
    }

    #[inline]
    fn add<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, bool> {
        DriverFuture::ready(self.add_now(key, value, ttl))
    }

    #[inline]
    fn increment<'a>(&'a self, key: &'a str, by: i64) -> DriverFuture<'a, i64> {
        DriverFuture::ready(self.increment_now(key, by))
    }

    #[inline]
    fn hit<'a>(&'a self, key: &'a str, window: Duration) -> DriverFuture<'a, Hit> {
        DriverFuture::ready(self.hit_now(key, window, 1))
    }

    fn hit_by<'a>(&'a self, key: &'a str, window: Duration, by: u64) -> DriverFuture<'a, Hit> {
        DriverFuture::ready(self.hit_now(key, window, i64::try_from(by.max(1)).unwrap_or(i64::MAX)))
    }

    fn rate<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        consume: bool,
    ) -> DriverFuture<'a, Vec<RateVerdict>> {
        DriverFuture::ready(Ok(self.rate_now(key, rules, consume)))
    }

    fn rate_by<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        by: u64,
    ) -> DriverFuture<'a, Vec<Vec<RateVerdict>>> {
        DriverFuture::ready(Ok(self.rate_batch_now(key, rules, by)))
    }

    #[inline]
    fn forget<'a>(&'a self, key: &'a str) -> DriverFuture<'a, bool> {
        DriverFuture::ready(Ok(self.forget_now(key)))
    }

    fn forget_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> DriverFuture<'a, bool> {
        DriverFuture::ready(Ok(self.forget_if_now(key, expected)))
    }

    #[inline]
    fn pull<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        DriverFuture::ready(Ok(self.pull_now(key)))
    }

    #[inline]
    fn touch<'a>(&'a self, key: &'a str, ttl: Option<Duration>) -> DriverFuture<'a, bool> {
        DriverFuture::ready(Ok(self.touch_now(key, ttl)))
    }

    fn flush(&self) -> DriverFuture<'_, ()> {
        self.flush_now();
        DriverFuture::ready(Ok(()))
    }

    fn prune(&self) -> DriverFuture<'_, u64> {
        DriverFuture::ready(Ok(self.sweep()))
    }
}

/// The operations, answered at once; the trait wraps them in ready futures.
impl ReadNow<Option<Bytes>> for ArrayDriver {
    #[inline]
    fn read_now(&self, key: &str) -> Result<Option<Bytes>> {
        self.get_now(key)
    }
}

impl ArrayDriver {
    /// `by` requests against a rate record, each in its own step (nothing is waited for
    /// between them); none, a look.
    fn rate_batch_now(&self, key: &str, rules: &[RateRule], by: u64) -> Vec<Vec<RateVerdict>> {
        if by == 0 {
            return vec![self.rate_now(key, rules, false)];
        }
        (0..by).map(|_| self.rate_now(key, rules, true)).collect()
    }

    fn forget_if_now(&self, key: &str, expected: &[u8]) -> bool {
        let now = self.now();
        let removed = self.inner.map.remove_if(key, |entry| {
            entry.is_live(now) && entry.value.to_bytes().as_ref() == expected
        });
        removed.is_some()
    }

    fn flush_now(&self) {
        self.inner.map.clear();
    }

    #[inline]
    fn get_now(&self, key: &str) -> Result<Option<Bytes>> {
        let found = self.inner.map.read(key, |entry| {
            entry.map(|entry| {
                entry
                    .is_live_at(&self.inner.clock)
                    .then(|| entry.value.to_bytes())
            })
        });
        match found {
            Some(Some(value)) => Ok(Some(value)),
            Some(None) => {
                self.remove_expired(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Removes the entry at `key` if it is still expired when its shard is locked for writing.
    #[cold]
    #[inline(never)]
    fn remove_expired(&self, key: &str) {
        let now = self.now();
        self.inner.map.remove_if(key, |e| !e.is_live(now));
    }

    #[inline]
    fn put_now(&self, key: &str, value: Bytes, ttl: Option<Duration>) {
        if ttl.is_some_and(|t| t.is_zero()) {
            self.inner.map.remove(key);
            return;
        }
        let entry = Entry {
            value: Stored::Bytes(value),
            expires_at: expiry_at(&self.inner.clock, ttl),
        };
        self.inner.map.insert(key, entry);
    }

    #[inline]
    fn add_now(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<bool> {
        if ttl.is_some_and(|t| t.is_zero()) {
            return Ok(false);
        }
        let now = self.now();
        let entry = Entry {
            value: Stored::Bytes(value),
            expires_at: expiry_at(&self.inner.clock, ttl),
        };
        let replaced = self.inner.map.write(key, |mut slot| {
            if slot.get_mut().is_some_and(|e| e.is_live(now)) {
                return Err(entry);
            }
            Ok(slot.insert(entry))
        });
        // Whatever was not stored, or was replaced, is dropped after the lock is released.
        Ok(replaced.is_ok())
    }

    /// Runs `f` on the entry of a counter, locked; a missing key gets an expired placeholder,
    /// which reads as absent.
    #[inline]
    fn with_counter<R>(&self, key: &str, f: impl FnOnce(&mut Entry) -> R) -> R {
        self.inner
            .map
            .write(key, |slot| f(slot.or_insert_with(Entry::vacant)))
    }

    #[inline]
    fn increment_now(&self, key: &str, by: i64) -> Result<i64> {
        let clock = &self.inner.clock;
        self.with_counter(key, |entry| {
            let next = if entry.is_live_at(clock) {
                entry.value.incremented(key, by)?
            } else {
                // A missing or expired counter starts from zero and never expires.
                entry.expires_at = None;
                by
            };
            entry.value = Stored::Integer(next);
            Ok(next)
        })
    }

    #[inline]
    fn hit_now(&self, key: &str, window: Duration, by: i64) -> Result<Hit> {
        let now = self.now();
        self.with_counter(key, |entry| {
            let (count, expires_at) = match entry.expires_at {
                Some(at) if now < at => (entry.value.incremented(key, by)?, at),
                // A live counter without a TTL gets the window too.
                None => (entry.value.incremented(key, by)?, now + duration_ms(window)),
                Some(_) => (by, now + duration_ms(window)),
            };
            *entry = Entry {
                value: Stored::Integer(count),
                expires_at: Some(expires_at),
            };
            Ok(Hit {
                count,
                expires_in: Duration::from_millis(expires_at - now),
            })
        })
    }

    #[inline]
    fn forget_now(&self, key: &str) -> bool {
        let now = self.now();
        self.inner.map.remove(key).is_some_and(|e| e.is_live(now))
    }

    #[inline]
    fn pull_now(&self, key: &str) -> Option<Bytes> {
        let now = self.now();
        self.inner
            .map
            .remove(key)
            .filter(|e| e.is_live(now))
            .map(|e| e.value.into_bytes())
    }

    #[inline]
    fn touch_now(&self, key: &str, ttl: Option<Duration>) -> bool {
        let now = self.now();
        let expires_at = expiry_at(&self.inner.clock, ttl);
        let (live, removed) = self.inner.map.write(key, |mut slot| {
            let Some(entry) = slot.get_mut().filter(|e| e.is_live(now)) else {
                return (false, None);
            };
            if ttl.is_some_and(|t| t.is_zero()) {
                return (true, slot.remove());
            }
            entry.expires_at = expires_at;
            (true, None)
        });
        drop(removed); // after the lock is released
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;

    #[tokio::test]
    async fn expired_entries_are_reclaimed_without_being_read() {
        let clock = ManualClock::new(1_000);
        let driver = ArrayDriver::builder()
            .clock(clock.clone())
            .sweep_interval(Some(Duration::from_millis(10)))
            .build();
        for i in 0..1_000 {
            driver
                .put(
                    &format!("k{i}"),
                    Bytes::from_static(b"v"),
                    Some(Duration::from_secs(1)),
                )
                .await
                .unwrap();
        }
        driver
            .put("forever", Bytes::from_static(b"v"), None)
            .await
            .unwrap();
        assert_eq!(driver.len(), 1_001);
        clock.advance(Duration::from_secs(1));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while driver.len() > 1 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(driver.len(), 1, "the sweeper reclaims expired entries");
    }

    /// On the default clock, reads far from an entry's expiry take the coarse estimate and
    /// reads near it the precise clock (`clock.rs`); the answer must be the same. Real time.
    #[tokio::test]
    async fn expiry_on_the_system_clock_is_exact_either_side_of_the_guard() {
        let driver = ArrayDriver::new();
        let value = Bytes::from_static(b"v");
        driver
            .put("long", value.clone(), Some(Duration::from_millis(1_300)))
            .await
            .unwrap();
        driver
            .put("short", value.clone(), Some(Duration::from_millis(60)))
            .await
            .unwrap();
        let start = std::time::Instant::now();
        assert!(driver.get("long").await.unwrap().is_some());
        assert!(driver.get("short").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(driver.get("short").await.unwrap().is_none());
        // Read on every millisecond until it is gone: never before its TTL.
        while driver.get("long").await.unwrap().is_some() {
            assert!(
                start.elapsed() < Duration::from_millis(1_500),
                "still live after 1.5 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Milliseconds are whole, so the expiry may come up to 1 ms before the full TTL.
        assert!(
            start.elapsed() >= Duration::from_millis(1_298),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn the_sweeper_thread_stops_with_the_driver() {
        let driver = ArrayDriver::builder()
            .sweep_interval(Some(Duration::from_millis(5)))
            .build();
        let weak = Arc::downgrade(&driver.inner);
        drop(driver);
        assert!(weak.upgrade().is_none());
    }
}
