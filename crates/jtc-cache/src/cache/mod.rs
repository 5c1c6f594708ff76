//! `Cache`: the cheap-to-clone typed handle applications use.
//!
//! This module holds the handle, its settings and its constructors. The typed API is spread
//! by behaviour: reads and writes in [`entries`], counters in [`counters`], `remember` in
//! [`fill`] (over the crate's `SingleFlight`), `flexible` in [`flexible`] (with its freshness
//! marker in [`fresh`]), locks and tags in their own modules. All of them reach the driver
//! through one door, [`observe::Op`]. This file imports none of them: they import it.

mod counters;
mod entries;
pub(crate) mod fill;
mod filler;
mod flexible;
mod fresh;
pub(crate) mod meters;
pub(crate) mod observe;
mod ops;
mod raw;
mod stored_form;

pub(crate) use ops::OpName;

use std::{fmt, sync::Arc, time::Duration};

use self::filler::{FillLock, Filler};
use crate::{CacheConfig, CacheDriver, CacheEvent, CacheStats, Codec, Result, events::Observer};

#[cfg(doc)]
use crate::ErrorKind;

/// Values whose encoded size is above this many bytes are compressed, by default.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 1024;

/// The largest value a cache stores by default, in bytes once encoded (before compression).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;

/// How long a [`Cache::remember`] miss holds its cross-process fill lock, by default.
pub const DEFAULT_FILL_LOCK_HOLD: Duration = Duration::from_secs(10);

/// How long a [`Cache::remember`] miss waits for another process's fill, by default.
pub const DEFAULT_FILL_LOCK_WAIT: Duration = Duration::from_secs(10);

/// The typed cache API over any [`CacheDriver`].
///
/// `Cache` is an `Arc` inside: cloning it is cheap and every clone shares the same driver, so
/// hand clones to handlers (as Axum `State`) instead of wrapping it in `Arc<Mutex<_>>`.
///
/// Values are any `serde` type. Integers are stored as plain numbers, so a value written with
/// [`put`](Self::put) can be [`increment`](Self::increment)ed and a counter read back with
/// `get::<i64>`. A stored value that can no longer be decoded as the requested type (corrupt,
/// or written by another type or version) is a miss: it is removed and logged, never returned.
///
/// Beyond reads and writes: [`lock`](Self::lock) (atomic locks), [`tags`](Self::tags) (flush a
/// group of entries at once), [`flexible`](Self::flexible) (stale-while-revalidate),
/// [`stats`](Self::stats) and [`on`](Self::on) (counters and events).
///
/// Every operation that reaches the backend runs in a `debug` span named `cache` with the
/// operation (`op`) and a hash of the key (`key_hash`), never the key itself.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use jtc_cache::{ArrayDriver, Cache};
/// use serde::{Deserialize, Serialize};
/// use std::time::Duration;
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// struct User { id: u64, name: String }
///
/// let cache = Cache::new(ArrayDriver::new());
/// let ttl = Duration::from_secs(3600);
///
/// let user: User = cache
///     .remember("user:1", ttl, || async { User { id: 1, name: "Ana".into() } })
///     .await?;
/// assert_eq!(cache.get::<User>("user:1").await?, Some(user));
///
/// assert_eq!(cache.increment("hits", 1).await?, 1);
/// assert_eq!(cache.increment("hits", 5).await?, 6);
/// assert!(cache.forget("user:1").await?);
/// assert_eq!(cache.get::<User>("user:1").await?, None);
/// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

/// What every clone of one cache shares. Private to this module and its children: the rest of
/// the crate reaches the driver through [`observe::Op`].
struct Inner {
    driver: Arc<dyn CacheDriver>,
    settings: Settings,
    /// Single-flight for `remember`: one load per key at a time.
    filler: Filler,
    /// Metric handles for `name`; shared by caches derived with `with_*`.
    meters: Arc<meters::Meters>,
    /// Counters and listeners; shared by caches derived with `with_*`.
    observer: Arc<Observer>,
    /// The name in metrics, spans and logs (default: the driver's).
    name: Arc<str>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    codec: Codec,
    compress_above: Option<usize>,
    max_value: usize,
    count: bool,
    fill_lock: Option<FillLock>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            codec: Codec::default(),
            compress_above: cfg!(feature = "compression").then_some(DEFAULT_COMPRESSION_THRESHOLD),
            max_value: DEFAULT_MAX_VALUE_BYTES,
            count: true,
            fill_lock: Some(FillLock {
                hold: DEFAULT_FILL_LOCK_HOLD,
                wait: DEFAULT_FILL_LOCK_WAIT,
            }),
        }
    }
}

impl Inner {
    fn new(
        driver: Arc<dyn CacheDriver>,
        settings: Settings,
        observer: Arc<Observer>,
        (name, meters): (Arc<str>, Arc<meters::Meters>),
    ) -> Self {
        Self {
            driver,
            filler: Filler::new(settings.fill_lock),
            settings,
            observer,
            name,
            meters,
        }
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("name", &self.inner.name)
            .field("driver", &self.inner.driver)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A cache over `driver`, encoding values with the default [`Codec`] (MessagePack).
    ///
    /// ```
    /// use jtc_cache::{ArrayDriver, Cache};
    ///
    /// let cache = Cache::new(ArrayDriver::new());
    /// assert_eq!(cache.driver().name(), "array");
    /// ```
    pub fn new(driver: impl CacheDriver) -> Self {
        Self::from_driver(Arc::new(driver))
    }

    /// A cache over a driver that is already shared: two caches over one driver see the same
    /// entries.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache, CacheDriver};
    /// use std::{sync::Arc, time::Duration};
    ///
    /// let driver: Arc<dyn CacheDriver> = Arc::new(ArrayDriver::new());
    /// let first = Cache::from_driver(Arc::clone(&driver));
    /// let second = Cache::from_driver(driver);
    /// first.put("k", &1, Duration::from_secs(60)).await?;
    /// assert_eq!(second.get::<i32>("k").await?, Some(1));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn from_driver(driver: Arc<dyn CacheDriver>) -> Self {
        let name: Arc<str> = Arc::from(driver.name());
        let observer = Arc::default();
        let meters = Arc::new(meters::Meters::new(&name, true));
        Self {
            inner: Arc::new(Inner::new(
                driver,
                Settings::default(),
                observer,
                (name, meters),
            )),
        }
    }

    fn with_settings(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.inner.settings;
        change(&mut settings);
        let naming = (Arc::clone(&self.inner.name), Arc::clone(&self.inner.meters));
        self.rebuilt(settings, naming)
    }

    /// The same cache (settings, name, counters) over the driver `wrap` makes of this one's.
    #[cfg_attr(not(feature = "object-store"), allow(dead_code))]
    pub(crate) fn map_driver(
        self,
        wrap: impl FnOnce(Arc<dyn CacheDriver>) -> Arc<dyn CacheDriver>,
    ) -> Self {
        let inner = &self.inner;
        let driver = wrap(Arc::clone(&inner.driver));
        let naming = (Arc::clone(&inner.name), Arc::clone(&inner.meters));
        Self {
            inner: Arc::new(Inner::new(
                driver,
                inner.settings,
                Arc::clone(&inner.observer),
                naming,
            )),
        }
    }

    fn rebuilt(&self, settings: Settings, naming: (Arc<str>, Arc<meters::Meters>)) -> Self {
        self.rebuilt_with(settings, Arc::clone(&self.inner.observer), naming)
    }

    fn rebuilt_with(
        &self,
        settings: Settings,
        observer: Arc<Observer>,
        naming: (Arc<str>, Arc<meters::Meters>),
    ) -> Self {
        let driver = Arc::clone(&self.inner.driver);
        Self {
            inner: Arc::new(Inner::new(driver, settings, observer, naming)),
        }
    }

    /// The same cache under another name: the `cache` label of its metrics and the `cache`
    /// field of its spans and logs (default: the driver's name, `file`, `redis`...). Name
    /// caches that share a driver apart, `sessions` and `pages`, to tell them apart on a
    /// dashboard. Names are labels: keep them few and fixed, never per user or per key.
    ///
    /// A named cache counts its own [`stats`](Self::stats) and events, apart from the cache it
    /// was named from; name a cache when you build it.
    ///
    /// ```
    /// use jtc_cache::{ArrayDriver, Cache};
    ///
    /// let cache = Cache::new(ArrayDriver::new());
    /// assert_eq!(cache.name(), "array");
    /// let sessions = cache.named("sessions");
    /// assert_eq!(sessions.name(), "sessions");
    /// ```
    #[must_use]
    pub fn named(self, name: impl Into<String>) -> Self {
        let name: Arc<str> = Arc::from(name.into());
        let observer = Arc::default();
        let meters = meters::Meters::new(&name, self.inner.meters.enabled());
        self.rebuilt_with(self.inner.settings, observer, (name, Arc::new(meters)))
    }

    /// This cache's name (see [`named`](Self::named)).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Turns this cache's metrics on (the default when the `metrics` feature is built) or off
    /// (see [`jtc_cache::metrics`](crate::metrics)). Without the feature, or with no recorder
    /// installed, metrics cost nothing either way.
    ///
    /// ```
    /// use jtc_cache::{ArrayDriver, Cache};
    ///
    /// let quiet = Cache::new(ArrayDriver::new()).with_metrics(false);
    /// assert_eq!(quiet.name(), "array");
    /// ```
    #[must_use]
    pub fn with_metrics(self, enabled: bool) -> Self {
        let name = Arc::clone(&self.inner.name);
        let meters = meters::Meters::new(&name, enabled);
        self.rebuilt(self.inner.settings, (name, Arc::new(meters)))
    }

    /// The same driver with another codec for the values it writes. Entries are always read
    /// with the codec that wrote them, so switching codecs never makes old entries unreadable.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache, Codec};
    /// use std::time::Duration;
    ///
    /// let msgpack = Cache::new(ArrayDriver::new());
    /// let json = msgpack.clone().with_codec(Codec::Json);
    /// json.put("k", &vec!["a", "b"], Duration::from_secs(60)).await?;
    /// assert_eq!(msgpack.get::<Vec<String>>("k").await?, Some(vec!["a".into(), "b".into()]));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn with_codec(self, codec: Codec) -> Self {
        self.with_settings(|s| s.codec = codec)
    }

    /// Compresses values whose encoded size is above `bytes` (LZ4; default
    /// [`DEFAULT_COMPRESSION_THRESHOLD`]). A value that does not get smaller is stored as it
    /// is. Readers decompress whatever they find, whatever this setting: it only decides how
    /// this cache writes. Needs the `compression` feature (on by default); without it this
    /// does nothing.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache};
    /// use std::time::Duration;
    ///
    /// let cache = Cache::new(ArrayDriver::new()).compress_above(4096);
    /// let page = "lorem ipsum ".repeat(1_000);
    /// cache.put("page", &page, Duration::from_secs(60)).await?;
    /// let stored = cache.driver().get("page").await?.unwrap();
    /// assert!(stored.len() < page.len() / 4, "stored compressed");
    /// assert_eq!(cache.get::<String>("page").await?, Some(page));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn compress_above(self, bytes: usize) -> Self {
        self.with_settings(|s| s.compress_above = Some(bytes))
    }

    /// Stores every value uncompressed.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache};
    /// use std::time::Duration;
    ///
    /// let cache = Cache::new(ArrayDriver::new()).without_compression();
    /// let page = "lorem ipsum ".repeat(1_000);
    /// cache.put("page", &page, Duration::from_secs(60)).await?;
    /// assert!(cache.driver().get("page").await?.unwrap().len() > page.len());
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn without_compression(self) -> Self {
        self.with_settings(|s| s.compress_above = None)
    }

    /// Refuses to store values larger than `bytes` once encoded (before compression: what a
    /// reader holds in memory) with [`ErrorKind::ValueTooLarge`]; default
    /// [`DEFAULT_MAX_VALUE_BYTES`] (64 MiB). A cache is no place for huge blobs: every read
    /// copies the whole value, and Redis refuses strings over 512 MB.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache, ErrorKind};
    /// use std::time::Duration;
    ///
    /// let cache = Cache::new(ArrayDriver::new()).max_value_size(1024);
    /// let err = cache.put("big", &vec![7u8; 4096], Duration::from_secs(60)).await.unwrap_err();
    /// assert!(matches!(err.kind(), ErrorKind::ValueTooLarge { limit: 1024, .. }));
    /// assert!(!cache.has("big").await?);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn max_value_size(self, bytes: usize) -> Self {
        self.with_settings(|s| s.max_value = bytes)
    }

    /// Turns the [`stats`](Self::stats) counters on (the default) or off. Listeners registered
    /// with [`on`](Self::on) are called either way.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache};
    ///
    /// let cache = Cache::new(ArrayDriver::new()).with_stats(false);
    /// cache.get::<i32>("missing").await?;
    /// assert_eq!(cache.stats().misses, 0);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn with_stats(self, enabled: bool) -> Self {
        self.with_settings(|s| s.count = enabled)
    }

    /// Tunes stampede protection across processes: on a miss, [`remember`](Self::remember)
    /// takes a lock in the backend for at most `hold` while it loads; concurrent misses in
    /// other processes wait up to `wait` for that value before loading it themselves.
    ///
    /// On by default (10 s / 10 s). The lock costs two extra backend operations per miss
    /// (nanoseconds in memory, a round trip each on Redis) and nothing per hit.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache};
    /// use std::time::Duration;
    ///
    /// let cache = Cache::new(ArrayDriver::new())
    ///     .stampede_protection(Duration::from_secs(5), Duration::from_secs(2));
    /// let value: u32 = cache.remember("k", Duration::from_secs(60), || async { 7 }).await?;
    /// assert_eq!(value, 7);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn stampede_protection(self, hold: Duration, wait: Duration) -> Self {
        self.with_settings(|s| s.fill_lock = Some(FillLock { hold, wait }))
    }

    /// Turns cross-process stampede protection off: every process that misses loads the
    /// value itself (calls within one process still share one load). Saves two backend round
    /// trips per miss.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache};
    /// use std::time::Duration;
    ///
    /// let cache = Cache::new(ArrayDriver::new()).without_stampede_protection();
    /// let value: u32 = cache.remember("k", Duration::from_secs(60), || async { 7 }).await?;
    /// assert_eq!(value, 7); // loaded once in this process, with no lock in the backend
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    #[must_use]
    pub fn without_stampede_protection(self) -> Self {
        self.with_settings(|s| s.fill_lock = None)
    }

    /// The cache configured by the environment: [`CacheConfig::from_env`], then
    /// [`CacheConfig::build`]. `CACHE_DRIVER` chooses the driver (default `file`).
    ///
    /// ```no_run
    /// # async fn app() -> Result<(), jtc_cache::Error> {
    /// let cache = jtc_cache::Cache::from_env().await?; // CACHE_DRIVER=file|array|redis|database|memcached
    /// println!("caching on {}", cache.driver().name());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for a bad variable (an unknown driver names the valid ones), and
    /// whatever building the driver returns: an unwritable file folder, an unreachable Redis.
    pub async fn from_env() -> Result<Self> {
        CacheConfig::from_env()?.build().await
    }

    /// The driver underneath, for operations the typed API does not cover.
    ///
    /// ```
    /// use jtc_cache::{Cache, FileDriver};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let cache = Cache::new(FileDriver::new(dir.path())?);
    /// assert_eq!(cache.driver().name(), "file");
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn driver(&self) -> &Arc<dyn CacheDriver> {
        &self.inner.driver
    }

    /// This process's counters for this cache and its clones: hits, misses, writes, deletes
    /// and errors. Counting costs a few nanoseconds per operation; see
    /// [`with_stats`](Self::with_stats).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache};
    /// use std::time::Duration;
    ///
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.put("a", &1, Duration::from_secs(60)).await?;
    /// cache.get::<i32>("a").await?;
    /// cache.get::<i32>("b").await?;
    /// let stats = cache.stats();
    /// assert_eq!((stats.hits, stats.misses, stats.writes), (1, 1, 1));
    /// assert_eq!(stats.hit_ratio(), Some(0.5));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn stats(&self) -> CacheStats {
        let near_cache = self.inner.driver.stats().near_cache;
        if !self.inner.settings.count {
            return CacheStats {
                near_cache,
                ..CacheStats::default()
            };
        }
        CacheStats {
            near_cache,
            ..self.inner.observer.stats()
        }
    }

    /// Calls `listener` for every [`CacheEvent`] of this cache and its clones: hits, misses,
    /// writes, forgets, flushes, locks acquired and released.
    ///
    /// Listeners run in the task that caused the event; keep them short, or forward events
    /// into a channel:
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache, EventKind};
    /// use std::time::Duration;
    ///
    /// let cache = Cache::new(ArrayDriver::new());
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// cache.on(move |event| {
    ///     let _ = tx.send((event.kind, event.key.to_owned()));
    /// });
    ///
    /// cache.put("k", &1, Duration::from_secs(60)).await?;
    /// cache.get::<i32>("k").await?;
    /// assert_eq!(rx.recv().await, Some((EventKind::Written, "k".to_owned())));
    /// assert_eq!(rx.recv().await, Some((EventKind::Hit, "k".to_owned())));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn on(&self, listener: impl Fn(&CacheEvent<'_>) + Send + Sync + 'static) {
        self.inner.observer.listen(Arc::new(listener));
    }

    // ---- crate-private helpers of the typed API ----

    /// The single-flight table of `remember`, and the fill lock's settings.
    #[inline]
    pub(crate) fn filler(&self) -> &Filler {
        &self.inner.filler
    }
}
