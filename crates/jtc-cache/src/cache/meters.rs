//! A cache's metrics, through the [`metrics`](https://docs.rs/metrics) facade (cargo feature
//! `metrics`): whatever recorder the application installed (Prometheus, StatsD, OTLP...)
//! receives them. Without the feature every method here is empty and inlined away.
//!
//! Reads are the hot path, so they cost the metrics nothing extra: hits and misses are counted
//! once, in the cache's own striped counters (those [`Cache::stats`](crate::Cache::stats)
//! reads), and published to the recorder as totals — once a second by a background thread,
//! and whenever [`publish`] is called (before rendering a scrape, say). A recorder's counter
//! costs two atomic read-modify-writes per increment (Prometheus keeps a generation beside the
//! value), ~9 ns, 8 % of an in-memory hit.
//!
//! The other handles are registered with the recorder on first use, per cache and operation,
//! then kept: never a registry lookup per call. Durations are timed on one operation in
//! [`TIME_ONE_IN`] per thread, and on the first call of each operation on each thread (so the
//! histogram appears with an app's first requests): reading a clock twice and recording a
//! sample costs more than a whole in-memory `get` otherwise.

use std::sync::Arc;

use super::OpName;
use crate::{CacheDriver, events::Observer};

/// `jtc_cache_gets_total{cache, result="hit"|"miss"}`.
pub const GETS: &str = "jtc_cache_gets_total";
/// `jtc_cache_writes_total{cache, op}`.
pub const WRITES: &str = "jtc_cache_writes_total";
/// `jtc_cache_deletes_total{cache}`.
pub const DELETES: &str = "jtc_cache_deletes_total";
/// `jtc_cache_errors_total{cache, op, kind}`.
pub const ERRORS: &str = "jtc_cache_errors_total";
/// `jtc_cache_operation_duration_seconds{cache, op}`.
pub const DURATION: &str = "jtc_cache_operation_duration_seconds";

/// `jtc_cache_near_cache_reads_total{cache, result="hit"|"miss"}`: reads of a driver's near
/// cache (the Redis driver with `RedisConfig::near_cache`).
pub const NEAR_READS: &str = "jtc_cache_near_cache_reads_total";
/// `jtc_cache_near_cache_invalidations_total{cache}`: copies dropped because the key changed.
pub const NEAR_INVALIDATIONS: &str = "jtc_cache_near_cache_invalidations_total";
/// `jtc_cache_near_cache_evictions_total{cache}`: copies dropped to make room.
pub const NEAR_EVICTIONS: &str = "jtc_cache_near_cache_evictions_total";
/// `jtc_cache_near_cache_entries{cache}` (gauge): copies held.
pub const NEAR_ENTRIES: &str = "jtc_cache_near_cache_entries";

/// One operation in this many, per thread, is timed for [`DURATION`].
pub const TIME_ONE_IN: u32 = 32;

/// Publishes every live cache's hit and miss totals to the recorder now. A background thread
/// does it once a second; call this before rendering a scrape to serve exact figures.
pub fn publish() {
    #[cfg(feature = "metrics")]
    on::publish_all();
}

/// Bucket bounds, in seconds, suited to [`DURATION`]: 10 µs (an in-memory hit) to 2.5 s (a
/// backend about to time out). Prometheus exporters render summaries unless told the buckets:
/// `PrometheusBuilder::set_buckets_for_metric(Matcher::Full(DURATION.into()), DURATION_BUCKETS)`.
pub const DURATION_BUCKETS: &[f64] = &[
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The metric handles of one cache name, shared by the caches derived from it.
#[derive(Default)]
pub(crate) struct Meters {
    #[cfg(feature = "metrics")]
    on: Option<Lazy>,
}

/// Handles registered on the cache's first operation, with the recorder of that thread: a
/// cache built and then turned off or renamed registers nothing.
#[cfg(feature = "metrics")]
struct Lazy {
    name: Arc<str>,
    handles: std::sync::OnceLock<on::Handles>,
}

#[cfg(feature = "metrics")]
impl Lazy {
    #[inline]
    fn get(&self) -> &on::Handles {
        self.handles
            .get_or_init(|| on::Handles::new(Arc::clone(&self.name)))
    }
}

impl std::fmt::Debug for Meters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meters")
            .field("enabled", &self.enabled())
            .finish()
    }
}

/// When a timed operation started (`None`: not sampled, or metrics off).
pub(crate) type Started = Option<std::time::Instant>;

#[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self, unused_variables))]
impl Meters {
    /// Handles labelled `cache = name`; none at all when `enabled` is false.
    pub(crate) fn new(name: &Arc<str>, enabled: bool) -> Self {
        #[cfg(feature = "metrics")]
        return Self {
            on: enabled.then(|| Lazy {
                name: Arc::clone(name),
                handles: std::sync::OnceLock::new(),
            }),
        };
        #[cfg(not(feature = "metrics"))]
        Self {}
    }

    /// Whether this cache reports metrics (and so counts its reads even with stats off).
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        #[cfg(feature = "metrics")]
        return self.on.is_some();
        #[cfg(not(feature = "metrics"))]
        false
    }

    /// A read happened: counted in `observer`'s counters and published from there; this
    /// only makes sure the observer (and `driver`'s near cache, if it has one) publishes.
    #[inline]
    pub(crate) fn read(&self, observer: &Arc<Observer>, driver: &Arc<dyn CacheDriver>) {
        #[cfg(feature = "metrics")]
        if let Some(on) = &self.on
            && observer.published.get().is_none()
        {
            on::publish_reads(&on.name, observer, driver);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (observer, driver);
    }

    /// `op` stored a value or changed a counter.
    #[inline]
    pub(crate) fn written(&self, op: OpName) {
        #[cfg(feature = "metrics")]
        if let Some(on) = &self.on {
            on.get().written(op);
        }
    }

    /// `count` entries were removed (or a flush happened: one).
    #[inline]
    pub(crate) fn deleted(&self, count: u64) {
        #[cfg(feature = "metrics")]
        if let Some(on) = &self.on {
            on.get().deleted(count);
        }
    }

    /// A call of `op` failed with an error of kind `code` ([`crate::ErrorKind::code`]).
    pub(crate) fn failed(&self, op: OpName, code: &'static str) {
        #[cfg(feature = "metrics")]
        if let Some(on) = &self.on {
            on.get().failed(op, code);
        }
    }

    /// The start of an operation `op`, when this one is timed.
    #[inline]
    pub(crate) fn start(&self, op: OpName) -> Started {
        #[cfg(feature = "metrics")]
        if self.on.is_some() && on::sampled(op) {
            return Some(std::time::Instant::now());
        }
        None
    }

    /// A timed operation `op` that began at `started` ended.
    #[inline]
    pub(crate) fn finish(&self, op: OpName, started: Started) {
        #[cfg(feature = "metrics")]
        if let (Some(on), Some(started)) = (&self.on, started) {
            on.get().took(op, started.elapsed());
        }
    }
}

#[cfg(feature = "metrics")]
mod on {
    use std::{
        cell::Cell,
        sync::{Arc, Mutex, Once, OnceLock, Weak},
        time::Duration,
    };

    use ::metrics::{Counter, Gauge, Histogram, SharedString, Unit};

    use super::{
        CacheDriver, DELETES, DURATION, ERRORS, GETS, NEAR_ENTRIES, NEAR_EVICTIONS,
        NEAR_INVALIDATIONS, NEAR_READS, Observer, OpName, TIME_ONE_IN, WRITES,
    };
    use crate::NearCacheStats;

    pub(super) struct Handles {
        cache: SharedString,
        deletes: OnceLock<Counter>,
        writes: [OnceLock<Counter>; OpName::COUNT],
        durations: [OnceLock<Histogram>; OpName::COUNT],
    }

    /// The metric handles of a cache's read counters, and the totals last published to them.
    /// One per [`Observer`] (the counters), so that caches sharing counters publish once; the
    /// recorder is told the increase since the last publication, so that several caches under
    /// one name add up.
    struct Reads {
        hits: Counter,
        misses: Counter,
        published: Mutex<(u64, u64)>,
    }

    impl Reads {
        /// Tells the recorder the reads since the last call, given the totals now.
        fn publish(&self, (hits, misses): (u64, u64)) {
            let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
            self.hits.increment(hits.saturating_sub(published.0));
            self.misses.increment(misses.saturating_sub(published.1));
            *published = (hits.max(published.0), misses.max(published.1));
        }
    }

    /// Every live cache whose reads are published once a second.
    static PUBLISHED: Mutex<Vec<Weak<Observer>>> = Mutex::new(Vec::new());

    /// A driver's near cache, published under the name of the first cache that read through
    /// it (its counts are the driver's: caches sharing it would otherwise count them twice).
    struct Near {
        driver: Weak<dyn CacheDriver>,
        hits: Counter,
        misses: Counter,
        invalidations: Counter,
        evictions: Counter,
        entries: Gauge,
        published: NearCacheStats,
    }

    static NEAR: Mutex<Vec<Near>> = Mutex::new(Vec::new());

    impl Near {
        fn publish(&mut self, now: NearCacheStats) {
            let last = self.published;
            self.hits.increment(now.hits.saturating_sub(last.hits));
            self.misses
                .increment(now.misses.saturating_sub(last.misses));
            let dropped = now.invalidations.saturating_sub(last.invalidations);
            self.invalidations.increment(dropped);
            self.evictions
                .increment(now.evictions.saturating_sub(last.evictions));
            #[allow(clippy::cast_precision_loss)]
            self.entries.set(now.entries as f64);
            self.published = NearCacheStats {
                hits: now.hits.max(last.hits),
                misses: now.misses.max(last.misses),
                invalidations: now.invalidations.max(last.invalidations),
                evictions: now.evictions.max(last.evictions),
                ..now
            };
        }
    }

    pub(super) fn publish_all() {
        let mut published = PUBLISHED.lock().unwrap_or_else(|e| e.into_inner());
        published.retain(|observer| {
            let Some(observer) = observer.upgrade() else {
                return false;
            };
            if let Some(publish) = observer.published.get() {
                publish(observer.reads());
            }
            true
        });
        drop(published);
        let mut near = NEAR.lock().unwrap_or_else(|e| e.into_inner());
        near.retain_mut(|near| {
            let Some(driver) = near.driver.upgrade() else {
                return false;
            };
            if let Some(stats) = driver.stats().near_cache {
                near.publish(stats);
            }
            true
        });
    }

    /// Registers `driver`'s near cache, if it has one not registered yet, under `cache`.
    fn publish_near(cache: &SharedString, driver: &Arc<dyn CacheDriver>) {
        if driver.stats().near_cache.is_none() {
            return;
        }
        let mut near = NEAR.lock().unwrap_or_else(|e| e.into_inner());
        let known = near.iter().any(|n| {
            n.driver
                .upgrade()
                .is_some_and(|d| std::ptr::addr_eq(Arc::as_ptr(&d), Arc::as_ptr(driver)))
        });
        if known {
            return;
        }
        near.push(Near {
            driver: Arc::downgrade(driver),
            hits: ::metrics::counter!(NEAR_READS, "cache" => cache.clone(), "result" => "hit"),
            misses: ::metrics::counter!(NEAR_READS, "cache" => cache.clone(), "result" => "miss"),
            invalidations: ::metrics::counter!(NEAR_INVALIDATIONS, "cache" => cache.clone()),
            evictions: ::metrics::counter!(NEAR_EVICTIONS, "cache" => cache.clone()),
            entries: ::metrics::gauge!(NEAR_ENTRIES, "cache" => cache.clone()),
            published: NearCacheStats::default(),
        });
    }

    /// Registers `observer`'s read counters, labelled `cache = name`, with the recorder of
    /// this thread, and has them published from now on.
    #[cold]
    pub(super) fn publish_reads(
        name: &Arc<str>,
        observer: &Arc<Observer>,
        driver: &Arc<dyn CacheDriver>,
    ) {
        let mut registered = false;
        observer.published.get_or_init(|| {
            describe();
            registered = true;
            let cache = SharedString::from(Arc::clone(name));
            publish_near(&cache, driver);
            let reads = Reads {
                hits: ::metrics::counter!(GETS, "cache" => cache.clone(), "result" => "hit"),
                misses: ::metrics::counter!(GETS, "cache" => cache, "result" => "miss"),
                published: Mutex::new((0, 0)),
            };
            Arc::new(move |totals| reads.publish(totals))
        });
        if registered {
            PUBLISHED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Arc::downgrade(observer));
            start_publisher();
        }
    }

    fn start_publisher() {
        static STARTED: Once = Once::new();
        STARTED.call_once(|| {
            let started = std::thread::Builder::new()
                .name("jtc-cache-metrics".to_owned())
                .spawn(|| {
                    loop {
                        std::thread::sleep(Duration::from_secs(1));
                        publish_all();
                    }
                });
            if let Err(error) = started {
                tracing::warn!(%error, "jtc-cache: cannot start the metrics publisher; call \
                    jtc_cache::metrics::publish() before each scrape");
            }
        });
    }

    impl Handles {
        pub(super) fn new(name: Arc<str>) -> Self {
            describe();
            Self {
                cache: SharedString::from(name),
                deletes: OnceLock::new(),
                writes: std::array::from_fn(|_| OnceLock::new()),
                durations: std::array::from_fn(|_| OnceLock::new()),
            }
        }

        #[inline]
        pub(super) fn written(&self, op: OpName) {
            self.writes[op as usize]
                .get_or_init(|| {
                    describe();
                    let op = op.as_str();
                    ::metrics::counter!(WRITES, "cache" => self.cache.clone(), "op" => op)
                })
                .increment(1);
        }

        #[inline]
        pub(super) fn deleted(&self, count: u64) {
            self.deletes
                .get_or_init(|| {
                    describe();
                    ::metrics::counter!(DELETES, "cache" => self.cache.clone())
                })
                .increment(count);
        }

        /// Errors are rare: registered on each, with no handle kept.
        #[cold]
        pub(super) fn failed(&self, op: OpName, code: &'static str) {
            describe();
            let op = op.as_str();
            ::metrics::counter!(ERRORS, "cache" => self.cache.clone(), "op" => op, "kind" => code)
                .increment(1);
        }

        pub(super) fn took(&self, op: OpName, elapsed: Duration) {
            self.durations[op as usize]
                .get_or_init(|| {
                    describe();
                    let op = op.as_str();
                    ::metrics::histogram!(DURATION, "cache" => self.cache.clone(), "op" => op)
                })
                .record(elapsed.as_secs_f64());
        }
    }

    /// Whether this thread times its next operation, `op`: one in [`TIME_ONE_IN`], and the
    /// first call of each operation on this thread.
    #[inline]
    pub(super) fn sampled(op: OpName) -> bool {
        /// Per thread: operations so far, and one bit per operation already timed once.
        struct Ticks {
            count: Cell<u32>,
            seen: Cell<u64>,
        }
        const _: () = assert!(OpName::COUNT <= 64, "one bit per operation");
        std::thread_local! {
            static TICKS: Ticks = const { Ticks { count: Cell::new(0), seen: Cell::new(0) } };
        }
        TICKS.with(|ticks| {
            let next = ticks.count.get().wrapping_add(1);
            ticks.count.set(next);
            let bit = 1u64 << (op as u32);
            let seen = ticks.seen.get();
            if seen & bit == 0 {
                ticks.seen.set(seen | bit);
                return true;
            }
            next % TIME_ONE_IN == 0
        })
    }

    /// Gives the recorder each metric's unit and help text, once per process.
    fn describe() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            ::metrics::describe_counter!(
                GETS,
                Unit::Count,
                "Cache reads, by result (hit or miss)."
            );
            ::metrics::describe_counter!(
                WRITES,
                Unit::Count,
                "Values stored and counters changed, by operation."
            );
            ::metrics::describe_counter!(
                DELETES,
                Unit::Count,
                "Entries removed (forget, pull, prune) and flushes."
            );
            ::metrics::describe_counter!(
                ERRORS,
                Unit::Count,
                "Backend calls that failed, by operation and error kind."
            );
            ::metrics::describe_counter!(
                NEAR_READS,
                Unit::Count,
                "Reads of the driver's near cache, by result (hit: answered in process)."
            );
            ::metrics::describe_counter!(
                NEAR_INVALIDATIONS,
                Unit::Count,
                "Near-cache copies dropped because the key changed or the near cache was emptied."
            );
            ::metrics::describe_counter!(
                NEAR_EVICTIONS,
                Unit::Count,
                "Near-cache copies dropped to make room."
            );
            ::metrics::describe_gauge!(NEAR_ENTRIES, Unit::Count, "Near-cache copies held.");
            ::metrics::describe_histogram!(
                DURATION,
                Unit::Seconds,
                "Duration of cache operations, sampled: the first of each operation and one in 32 per thread are timed."
            );
        });
    }
}
