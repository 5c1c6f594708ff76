//! `ArrayDriver`: entries in this process's memory.

use std::{
    sync::{Arc, Weak},
    thread,
    time::Duration,
};

use async_trait::async_trait;
use dashmap::{DashMap, mapref::entry::Entry as MapEntry};

use crate::{
    Clock, Hit, Result, SystemClock,
    clock::{SharedClock, expiry_at},
    codec::{format_integer, incremented},
    driver::CacheDriver,
};

/// How often the sweeper reclaims expired entries unless told otherwise.
const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// An in-process cache driver: fast, private to the process, gone when it exits.
///
/// Made for tests and for single-instance apps. Every operation, `increment` and `add`
/// included, is atomic (a per-shard lock of a [`DashMap`]). Expired entries are invisible at
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
    map: DashMap<String, Entry>,
    clock: SharedClock,
}

#[derive(Debug)]
struct Entry {
    value: Vec<u8>,
    /// Unix milliseconds; `None` never expires.
    expires_at: Option<u64>,
}

impl Entry {
    fn is_live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// Builds an [`ArrayDriver`] with a custom clock or sweep interval.
#[derive(Debug)]
#[must_use]
pub struct ArrayDriverBuilder {
    clock: SharedClock,
    sweep_interval: Option<Duration>,
}

impl Default for ArrayDriverBuilder {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            sweep_interval: Some(DEFAULT_SWEEP_INTERVAL),
        }
    }
}

impl ArrayDriverBuilder {
    /// The clock that decides expiry. Default: [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How often expired entries are reclaimed; `None` turns the sweeper thread off (call
    /// [`ArrayDriver::sweep`] yourself). Default: 1 second.
    pub fn sweep_interval(mut self, interval: Option<Duration>) -> Self {
        self.sweep_interval = interval.filter(|d| !d.is_zero());
        self
    }

    /// Creates the driver and starts its sweeper.
    pub fn build(self) -> ArrayDriver {
        let inner = Arc::new(Inner {
            map: DashMap::new(),
            clock: self.clock,
        });
        if let Some(interval) = self.sweep_interval {
            spawn_sweeper(Arc::downgrade(&inner), interval);
        }
        ArrayDriver { inner }
    }
}

impl ArrayDriver {
    /// An empty in-memory driver on the system clock.
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
        self.inner.map.is_empty()
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
        let mut removed = 0;
        self.map.retain(|_, entry| {
            let live = entry.is_live(now);
            removed += u64::from(!live);
            live
        });
        removed
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

#[async_trait]
impl CacheDriver for ArrayDriver {
    fn name(&self) -> &'static str {
        "array"
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let now = self.now();
        match self.inner.map.get(key) {
            Some(entry) if entry.is_live(now) => Ok(Some(entry.value.clone())),
            Some(entry) => {
                drop(entry);
                self.inner.map.remove_if(key, |_, e| !e.is_live(now));
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn put(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        if ttl.is_some_and(|t| t.is_zero()) {
            self.inner.map.remove(key);
            return Ok(());
        }
        let entry = Entry {
            value: value.to_vec(),
            expires_at: expiry_at(&*self.inner.clock, ttl),
        };
        self.inner.map.insert(key.to_owned(), entry);
        Ok(())
    }

    async fn add(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<bool> {
        let now = self.now();
        let entry = Entry {
            value: value.to_vec(),
            expires_at: expiry_at(&*self.inner.clock, ttl),
        };
        if ttl.is_some_and(|t| t.is_zero()) {
            return Ok(false);
        }
        match self.inner.map.entry(key.to_owned()) {
            MapEntry::Occupied(e) if e.get().is_live(now) => Ok(false),
            MapEntry::Occupied(mut e) => {
                e.insert(entry);
                Ok(true)
            }
            MapEntry::Vacant(e) => {
                e.insert(entry);
                Ok(true)
            }
        }
    }

    async fn increment(&self, key: &str, by: i64) -> Result<i64> {
        let now = self.now();
        if let Some(mut entry) = self.inner.map.get_mut(key)
            && entry.is_live(now)
        {
            let next = incremented(key, Some(&entry.value), by)?;
            entry.value = format_integer(next);
            return Ok(next);
        }
        let mut entry = self
            .inner
            .map
            .entry(key.to_owned())
            .or_insert_with(|| Entry {
                value: Vec::new(),
                expires_at: Some(0),
            });
        // Another task may have created the counter between the two lookups.
        let stored = entry.is_live(now).then_some(entry.value.as_slice());
        let next = incremented(key, stored, by)?;
        if stored.is_none() {
            entry.expires_at = None;
        }
        entry.value = format_integer(next);
        Ok(next)
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<Hit> {
        let now = self.now();
        let mut entry = self
            .inner
            .map
            .entry(key.to_owned())
            .or_insert_with(|| Entry {
                value: Vec::new(),
                expires_at: Some(0),
            });
        let live = entry.is_live(now);
        let count = incremented(key, live.then_some(entry.value.as_slice()), 1)?;
        entry.value = format_integer(count);
        let expires_at = match entry.expires_at {
            Some(at) if live => at,
            _ => expiry_at(&*self.inner.clock, Some(window)).unwrap_or(u64::MAX),
        };
        entry.expires_at = Some(expires_at);
        Ok(Hit {
            count,
            expires_in: Duration::from_millis(expires_at.saturating_sub(now)),
        })
    }

    async fn forget(&self, key: &str) -> Result<bool> {
        let now = self.now();
        Ok(self
            .inner
            .map
            .remove(key)
            .is_some_and(|(_, e)| e.is_live(now)))
    }

    async fn pull(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let now = self.now();
        Ok(self
            .inner
            .map
            .remove(key)
            .filter(|(_, e)| e.is_live(now))
            .map(|(_, e)| e.value))
    }

    async fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        let now = self.now();
        let Some(mut entry) = self.inner.map.get_mut(key) else {
            return Ok(false);
        };
        if !entry.is_live(now) {
            return Ok(false);
        }
        if ttl.is_some_and(|t| t.is_zero()) {
            drop(entry);
            self.inner.map.remove(key);
            return Ok(true);
        }
        entry.expires_at = expiry_at(&*self.inner.clock, ttl);
        Ok(true)
    }

    async fn flush(&self) -> Result<()> {
        self.inner.map.clear();
        Ok(())
    }

    async fn prune(&self) -> Result<u64> {
        Ok(self.sweep())
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
                .put(&format!("k{i}"), b"v", Some(Duration::from_secs(1)))
                .await
                .unwrap();
        }
        driver.put("forever", b"v", None).await.unwrap();
        assert_eq!(driver.len(), 1_001);
        clock.advance(Duration::from_secs(1));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while driver.len() > 1 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(driver.len(), 1, "the sweeper reclaims expired entries");
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
