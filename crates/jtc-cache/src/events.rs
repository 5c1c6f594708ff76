//! What a cache reports about itself: counters ([`CacheStats`]) and events ([`CacheEvent`]).

use std::{
    fmt,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use serde::{Deserialize, Serialize};

use crate::local::stripes::{STRIPES, stripe};

/// What happened, as told to listeners registered with [`Cache::on`](crate::Cache::on).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A read found a live value.
    Hit,
    /// A read found nothing (or an entry that no longer decodes).
    Miss,
    /// A value was stored (`put`, `add` that stored, `remember` on a miss, `increment`, ...).
    Written,
    /// `forget` or `pull` removed a live entry.
    Forgotten,
    /// The whole cache was flushed (`key` is empty), or one tag (`key` is the tag).
    Flushed,
    /// A lock was acquired (`key` is the lock's name).
    LockAcquired,
    /// A lock was released by its owner or forced open (`key` is the lock's name).
    LockReleased,
}

/// One event: what happened and to which key.
///
/// Listeners run in the task that caused the event, so keep them short: bump a metric, or send
/// the event into a channel and do the work elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheEvent<'a> {
    /// What happened.
    pub kind: EventKind,
    /// The key as the caller gave it (for tagged entries, the key without its tags; for locks,
    /// the lock's name; empty for a full flush).
    pub key: &'a str,
}

/// A snapshot of a cache's counters, from [`Cache::stats`](crate::Cache::stats).
///
/// Counts are for this process, since the `Cache` was created, across all its clones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Reads that found a live value.
    pub hits: u64,
    /// Reads that found nothing.
    pub misses: u64,
    /// Values stored, counters changed.
    pub writes: u64,
    /// Entries removed by `forget`/`pull`/`prune`, and flushes.
    pub deletes: u64,
    /// Operations that returned an error from the backend.
    pub errors: u64,
    /// The driver's near cache, if it has one (`RedisConfig::near_cache`): these counts are the
    /// driver's, shared by every `Cache` over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub near_cache: Option<NearCacheStats>,
}

/// The counters of a driver's near cache (an in-process copy of what it read), from
/// [`CacheDriver::stats`](crate::CacheDriver::stats) and in
/// [`CacheStats::near_cache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NearCacheStats {
    /// Reads answered from this process's copy, with no network.
    pub hits: u64,
    /// Reads that went to the server.
    pub misses: u64,
    /// Copies dropped because the key changed (on the server, or by this process's write),
    /// or the whole near cache was emptied (a flush, a lost connection).
    pub invalidations: u64,
    /// Copies dropped to make room (or expired and then overwritten).
    pub evictions: u64,
    /// Copies held now.
    pub entries: u64,
}

impl CacheStats {
    /// Hits over reads, or `None` before the first read.
    pub fn hit_ratio(&self) -> Option<f64> {
        let reads = self.hits + self.misses;
        #[allow(clippy::cast_precision_loss)]
        (reads > 0).then(|| self.hits as f64 / reads as f64)
    }
}

type Listener = Arc<dyn Fn(&CacheEvent<'_>) + Send + Sync>;

const HITS: usize = 0;
const MISSES: usize = 1;
const WRITES: usize = 2;
const DELETES: usize = 3;
const ERRORS: usize = 4;
/// Reads of caches with stats off, counted for their metrics only (never in `stats()`).
const QUIET_HITS: usize = 5;
const QUIET_MISSES: usize = 6;

#[repr(align(128))]
#[derive(Default)]
struct Stripe([AtomicU64; 7]);

/// The counters and listeners of one cache, shared by its clones.
pub(crate) struct Observer {
    stripes: [Stripe; STRIPES],
    listeners: RwLock<Arc<[Listener]>>,
    has_listeners: AtomicBool,
    /// Backend failures, logged at most once a second.
    pub(crate) outage: crate::outage::OutageLog,
    /// Where the read totals are published (the metrics recorder's handles), set on the
    /// first metered read by the cache's meters; called with (hits, misses) so far.
    #[cfg(feature = "metrics")]
    pub(crate) published: std::sync::OnceLock<ReadSink>,
}

/// Takes a cache's read totals, (hits, misses) so far, and publishes what is new.
#[cfg(feature = "metrics")]
pub(crate) type ReadSink = Arc<dyn Fn((u64, u64)) + Send + Sync>;

impl Default for Observer {
    fn default() -> Self {
        Self {
            stripes: Default::default(),
            listeners: RwLock::new(Arc::from(Vec::new())),
            has_listeners: AtomicBool::new(false),
            outage: crate::outage::OutageLog::default(),
            #[cfg(feature = "metrics")]
            published: std::sync::OnceLock::new(),
        }
    }
}

#[cfg(feature = "metrics")]
impl Drop for Observer {
    /// The last reads of a cache going away reach the recorder.
    fn drop(&mut self) {
        if let Some(publish) = self.published.get() {
            publish(self.reads());
        }
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Observer")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Observer {
    /// Counts `kind` (when `count` is set; a read also when `metered`, for metrics only) and
    /// tells the listeners.
    #[inline]
    pub(crate) fn event(&self, (count, metered): (bool, bool), kind: EventKind, key: &str) {
        let counter = match kind {
            EventKind::Hit if !count && metered => return self.quiet(QUIET_HITS, kind, key),
            EventKind::Miss if !count && metered => return self.quiet(QUIET_MISSES, kind, key),
            EventKind::Hit => Some(HITS),
            EventKind::Miss => Some(MISSES),
            EventKind::Written => Some(WRITES),
            EventKind::Forgotten | EventKind::Flushed => Some(DELETES),
            EventKind::LockAcquired | EventKind::LockReleased => None,
        };
        if let Some(counter) = counter.filter(|_| count) {
            self.add(counter);
        }
        if self.has_listeners.load(Ordering::Relaxed) {
            self.notify(&CacheEvent { kind, key });
        }
    }

    #[cold]
    fn quiet(&self, counter: usize, kind: EventKind, key: &str) {
        self.add(counter);
        if self.has_listeners.load(Ordering::Relaxed) {
            self.notify(&CacheEvent { kind, key });
        }
    }

    #[inline]
    pub(crate) fn error(&self, count: bool) {
        if count {
            self.add(ERRORS);
        }
    }

    /// Counts `removed` deletes at once (a prune), without an event.
    pub(crate) fn deletes(&self, count: bool, removed: u64) {
        if count && removed > 0 {
            self.stripes[stripe()].0[DELETES].fetch_add(removed, Ordering::Relaxed);
        }
    }

    #[inline]
    fn add(&self, counter: usize) {
        self.stripes[stripe()].0[counter].fetch_add(1, Ordering::Relaxed);
    }

    #[cold]
    fn notify(&self, event: &CacheEvent<'_>) {
        // Clone the list out of the lock: a listener may register another listener.
        let listeners = Arc::clone(&self.listeners.read().unwrap_or_else(|e| e.into_inner()));
        for listener in listeners.iter() {
            listener(event);
        }
    }

    pub(crate) fn listen(&self, listener: Listener) {
        let mut listeners = self.listeners.write().unwrap_or_else(|e| e.into_inner());
        let mut list = listeners.to_vec();
        list.push(listener);
        *listeners = Arc::from(list);
        self.has_listeners.store(true, Ordering::Relaxed);
    }

    /// Reads so far, with stats on or off: (hits, misses).
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn reads(&self) -> (u64, u64) {
        let sum = |counter: usize| self.sum(counter);
        (sum(HITS) + sum(QUIET_HITS), sum(MISSES) + sum(QUIET_MISSES))
    }

    fn sum(&self, counter: usize) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[counter].load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let sum = |counter: usize| self.sum(counter);
        CacheStats {
            hits: sum(HITS),
            misses: sum(MISSES),
            writes: sum(WRITES),
            deletes: sum(DELETES),
            errors: sum(ERRORS),
            near_cache: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let observer = Arc::new(Observer::default());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let observer = Arc::clone(&observer);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        observer.event((true, false), EventKind::Hit, "k");
                        observer.event((true, false), EventKind::LockAcquired, "k");
                    }
                    observer.error(true);
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let stats = observer.stats();
        assert_eq!((stats.hits, stats.errors, stats.misses), (8000, 8, 0));
        assert_eq!(stats.hit_ratio(), Some(1.0));
        assert_eq!(CacheStats::default().hit_ratio(), None);
    }

    #[test]
    fn disabled_counting_still_notifies() {
        let observer = Observer::default();
        let seen = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&seen);
        observer.listen(Arc::new(move |event| {
            assert_eq!(event.key, "k");
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        observer.event((false, false), EventKind::Miss, "k");
        assert_eq!(seen.load(Ordering::Relaxed), 1);
        assert_eq!(observer.stats(), CacheStats::default());
    }
}
