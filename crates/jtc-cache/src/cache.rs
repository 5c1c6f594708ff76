//! `Cache`: the cheap-to-clone typed handle applications use.

use std::{convert::Infallible, fmt, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use dashmap::DashMap;
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::OnceCell;
use tracing::Instrument;

use crate::{
    CacheConfig, CacheDriver, CacheEvent, CacheStats, Codec, ErrorKind, EventKind, Hit, Result,
    codec::decode, events::Observer, keys,
};

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
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) driver: Arc<dyn CacheDriver>,
    settings: Settings,
    /// One cell per key being computed by `remember`, shared by its concurrent callers.
    flights: DashMap<String, Arc<OnceCell<Bytes>>>,
    /// Counters and listeners; shared by caches derived with `with_*`.
    pub(crate) observer: Arc<Observer>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    codec: Codec,
    compress_above: Option<usize>,
    max_value: usize,
    count: bool,
    fill_lock: Option<FillLock>,
}

#[derive(Debug, Clone, Copy)]
struct FillLock {
    hold: Duration,
    wait: Duration,
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

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("driver", &self.inner.driver)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// What the fill lock of a `remember` miss came to.
enum Fill {
    /// This process holds the lock (with this token): load and store.
    Leader(String),
    /// Another process stored the value while this one waited.
    Done(Bytes),
    /// No lock: protection is off, or the wait ran out.
    Unguarded,
}

impl Cache {
    /// A cache over `driver`, encoding values with the default [`Codec`] (MessagePack).
    pub fn new(driver: impl CacheDriver) -> Self {
        Self::from_driver(Arc::new(driver))
    }

    /// A cache over a driver that is already shared.
    pub fn from_driver(driver: Arc<dyn CacheDriver>) -> Self {
        Self {
            inner: Arc::new(Inner {
                driver,
                settings: Settings::default(),
                flights: DashMap::new(),
                observer: Arc::default(),
            }),
        }
    }

    fn with_settings(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.inner.settings;
        change(&mut settings);
        Self {
            inner: Arc::new(Inner {
                driver: Arc::clone(&self.inner.driver),
                settings,
                flights: DashMap::new(),
                observer: Arc::clone(&self.inner.observer),
            }),
        }
    }

    /// The same driver with another codec for the values it writes. Entries are always read
    /// with the codec that wrote them, so switching codecs never makes old entries unreadable.
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
    /// use jtc_cache::{ArrayDriver, Cache};
    ///
    /// let cache = Cache::new(ArrayDriver::new()).compress_above(4096); // or .without_compression()
    /// ```
    #[must_use]
    pub fn compress_above(self, bytes: usize) -> Self {
        self.with_settings(|s| s.compress_above = Some(bytes))
    }

    /// Stores every value uncompressed.
    #[must_use]
    pub fn without_compression(self) -> Self {
        self.with_settings(|s| s.compress_above = None)
    }

    /// Refuses to store values larger than `bytes` once encoded (before compression: what a
    /// reader holds in memory) with [`ErrorKind::ValueTooLarge`]; default
    /// [`DEFAULT_MAX_VALUE_BYTES`] (64 MiB). A cache is no place for huge blobs: every read
    /// copies the whole value, and Redis refuses strings over 512 MB.
    #[must_use]
    pub fn max_value_size(self, bytes: usize) -> Self {
        self.with_settings(|s| s.max_value = bytes)
    }

    /// Turns the [`stats`](Self::stats) counters on (the default) or off. Listeners registered
    /// with [`on`](Self::on) are called either way.
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
    /// use jtc_cache::{ArrayDriver, Cache};
    /// use std::time::Duration;
    ///
    /// let cache = Cache::new(ArrayDriver::new())
    ///     .stampede_protection(Duration::from_secs(5), Duration::from_secs(2));
    /// let cache = cache.without_stampede_protection(); // or turn it off
    /// ```
    #[must_use]
    pub fn stampede_protection(self, hold: Duration, wait: Duration) -> Self {
        self.with_settings(|s| s.fill_lock = Some(FillLock { hold, wait }))
    }

    /// Turns cross-process stampede protection off: every process that misses loads the
    /// value itself (calls within one process still share one load). Saves two backend round
    /// trips per miss.
    #[must_use]
    pub fn without_stampede_protection(self) -> Self {
        self.with_settings(|s| s.fill_lock = None)
    }

    /// The cache configured by the environment: [`CacheConfig::from_env`], then
    /// [`CacheConfig::build`]. `CACHE_DRIVER` chooses the driver (default `file`).
    pub async fn from_env() -> Result<Self> {
        CacheConfig::from_env()?.build().await
    }

    /// The driver underneath, for operations the typed API does not cover.
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
        self.inner.observer.stats()
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

    /// The value at `key`, or `None` when it is missing, expired or undecodable as `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let at = keys::entry(key)?;
        self.read(&at, key).instrument(span("get", key)).await
    }

    /// Whether a live entry exists at `key`.
    pub async fn has(&self, key: &str) -> Result<bool> {
        let at = keys::entry(key)?;
        self.has_at(&at, key).await
    }

    /// Stores `value` for `ttl`. A zero `ttl` removes the key instead.
    pub async fn put<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<()> {
        let at = keys::entry(key)?;
        self.write(&at, key, value, Some(ttl))
            .instrument(span("put", key))
            .await
    }

    /// Stores `value` with no expiry.
    pub async fn forever<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let at = keys::entry(key)?;
        self.write(&at, key, value, None)
            .instrument(span("forever", key))
            .await
    }

    /// Stores `value` only if `key` holds no live entry, atomically; returns whether it stored.
    /// A zero `ttl` stores nothing and returns `false`.
    pub async fn add<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<bool> {
        let at = keys::entry(key)?;
        self.add_at(&at, key, value, ttl)
            .instrument(span("add", key))
            .await
    }

    /// The value at `key`; on a miss, the value `load` computes, stored for `ttl`.
    ///
    /// Concurrent calls for the same key on this `Cache` (and its clones) share one call of
    /// `load`: the first caller computes, the others wait for its value. Concurrent misses in
    /// other processes sharing the backend (file, Redis) share that call too, through a short
    /// lock in the backend; see
    /// [`stampede_protection`](Self::stampede_protection).
    pub async fn remember<T, F, Fut>(&self, key: &str, ttl: Duration, load: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let at = keys::entry(key)?;
        self.remember_at(&at, key, Some(ttl), infallible(load))
            .instrument(span("remember", key))
            .await
    }

    /// Like [`remember`](Self::remember), with no expiry.
    pub async fn remember_forever<T, F, Fut>(&self, key: &str, load: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let at = keys::entry(key)?;
        self.remember_at(&at, key, None, infallible(load))
            .instrument(span("remember", key))
            .await
    }

    /// Like [`remember`](Self::remember), for a loader that can fail. A failure is returned as
    /// [`ErrorKind::Loader`] and nothing is stored; a concurrent caller then tries its own loader.
    pub async fn try_remember<T, E, F, Fut>(&self, key: &str, ttl: Duration, load: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let at = keys::entry(key)?;
        self.remember_at(&at, key, Some(ttl), load)
            .instrument(span("remember", key))
            .await
    }

    /// Stale-while-revalidate: the value at `key`, kept fresh for `fresh` and served stale up
    /// to `stale` after it was computed.
    ///
    /// - Within `fresh` of the last computation: the cached value.
    /// - Between `fresh` and `stale`: the cached value at once, and `load` runs once in the
    ///   background (one refresh across all processes sharing the backend) to replace it.
    /// - Past `stale`, or never computed: `load` runs now, like [`remember`](Self::remember).
    ///
    /// `stale` counts from the computation, like `fresh` (a `stale` shorter than `fresh` is
    /// taken as `fresh`). [`get`](Self::get) reads the value too; it lives for `stale`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache};
    /// use std::time::Duration;
    ///
    /// let cache = Cache::new(ArrayDriver::new());
    /// let report: String = cache
    ///     .flexible("report", Duration::from_secs(60), Duration::from_secs(300), || async {
    ///         "expensive report".to_owned()
    ///     })
    ///     .await?;
    /// assert_eq!(report, "expensive report");
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub async fn flexible<T, F, Fut>(
        &self,
        key: &str,
        fresh: Duration,
        stale: Duration,
        load: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let at = keys::entry(key)?;
        self.flexible_at(&at, key, fresh, stale.max(fresh), load)
            .instrument(span("flexible", key))
            .await
    }

    /// Adds `by` to the integer at `key` and returns the new value, atomically.
    ///
    /// A missing or expired key starts from 0 (and never expires); an existing key keeps its
    /// TTL. A stored value that is not an integer is [`ErrorKind::NotAnInteger`] and stays as
    /// it was.
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64> {
        let at = keys::entry(key)?;
        self.increment_at(&at, key, by)
            .instrument(span("increment", key))
            .await
    }

    /// Subtracts `by` from the integer at `key`; see [`increment`](Self::increment).
    pub async fn decrement(&self, key: &str, by: i64) -> Result<i64> {
        let by = by.checked_neg().ok_or_else(|| ErrorKind::Overflow {
            key: key.to_owned(),
        })?;
        self.increment(key, by).await
    }

    /// Counts one hit on a rate-limit counter: adds one, giving a new counter `window` as its
    /// TTL in the same atomic step, and returns the count and the time left in the window.
    pub async fn hit(&self, key: &str, window: Duration) -> Result<Hit> {
        let at = keys::entry(key)?;
        let hit = self.observed(self.inner.driver.hit(&at, window).await)?;
        self.event(EventKind::Written, key);
        Ok(hit)
    }

    /// Removes `key`; returns whether a live entry was there.
    pub async fn forget(&self, key: &str) -> Result<bool> {
        let at = keys::entry(key)?;
        self.forget_at(&at, key)
            .instrument(span("forget", key))
            .await
    }

    /// Removes `key` and returns its value, atomically.
    pub async fn pull<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let at = keys::entry(key)?;
        let bytes = self.observed(self.inner.driver.pull(&at).await)?;
        let value = bytes.and_then(|bytes| {
            self.event(EventKind::Forgotten, key);
            self.decode_logged(key, &bytes)
        });
        self.read_event(value.is_some(), key);
        Ok(value)
    }

    /// Gives the live entry at `key` a new `ttl` (zero removes it); returns whether it was live.
    pub async fn touch(&self, key: &str, ttl: Duration) -> Result<bool> {
        let at = keys::entry(key)?;
        let live = self.observed(self.inner.driver.touch(&at, Some(ttl)).await)?;
        if live {
            self.event(EventKind::Written, key);
        }
        Ok(live)
    }

    /// The values of several keys, in order; `None` for each miss.
    pub async fn many<T: DeserializeOwned>(&self, keys: &[&str]) -> Result<Vec<Option<T>>> {
        let stored_keys = keys
            .iter()
            .map(|key| keys::entry(key))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&str> = stored_keys.iter().map(AsRef::as_ref).collect();
        let stored = self.observed(self.inner.driver.many(&refs).await)?;
        let mut values = Vec::with_capacity(stored.len());
        for ((key, at), bytes) in keys.iter().zip(&refs).zip(stored) {
            values.push(self.decode_or_forget(at, key, bytes).await?);
        }
        Ok(values)
    }

    /// Stores several values with one `ttl`. A zero `ttl` removes the keys instead.
    pub async fn put_many<T: Serialize>(&self, entries: &[(&str, T)], ttl: Duration) -> Result<()> {
        if ttl.is_zero() {
            for (key, _) in entries {
                self.forget(key).await?;
            }
            return Ok(());
        }
        let encoded = entries
            .iter()
            .map(|(key, value)| Ok((keys::entry(key)?, self.encode(key, value)?)))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<(&str, Bytes)> = encoded
            .iter()
            .map(|(at, bytes)| (at.as_ref(), bytes.clone()))
            .collect();
        self.observed(self.inner.driver.put_many(&refs, Some(ttl)).await)?;
        for (key, _) in entries {
            self.event(EventKind::Written, key);
        }
        Ok(())
    }

    /// Removes every entry of this cache, locks and tags included. Entries of other
    /// applications sharing the backend (other files in the folder, other Redis key prefixes)
    /// are left alone.
    pub async fn flush(&self) -> Result<()> {
        self.observed(
            self.inner
                .driver
                .flush()
                .instrument(span("flush", ""))
                .await,
        )?;
        self.event(EventKind::Flushed, "");
        Ok(())
    }

    /// Removes expired entries that nobody has read since; returns how many (0 on Redis,
    /// which expires entries by itself).
    pub async fn prune(&self) -> Result<u64> {
        self.observed(self.inner.driver.prune().await)
    }

    // ---- the operations on storage keys, shared with tags and locks ----

    #[inline]
    pub(crate) fn event(&self, kind: EventKind, key: &str) {
        self.inner
            .observer
            .event(self.inner.settings.count, kind, key);
    }

    /// A read's event: a hit when it found a value, else a miss.
    #[inline]
    fn read_event(&self, found: bool, key: &str) {
        let kind = if found {
            EventKind::Hit
        } else {
            EventKind::Miss
        };
        self.event(kind, key);
    }

    pub(crate) async fn has_at(&self, at: &str, key: &str) -> Result<bool> {
        let found = self.observed(self.inner.driver.get(at).await)?.is_some();
        self.read_event(found, key);
        Ok(found)
    }

    #[inline]
    pub(crate) fn observed<T>(&self, result: Result<T>) -> Result<T> {
        if result.is_err() {
            self.inner.observer.error(self.inner.settings.count);
        }
        result
    }

    pub(crate) fn encode<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<Bytes> {
        let encoded = self.inner.settings.codec.encode(key, value)?;
        // The limit is on the encoded size, before compression: that is what every reader
        // holds in memory, however well the value compresses.
        if encoded.len() > self.inner.settings.max_value {
            return Err(ErrorKind::ValueTooLarge {
                key: key.to_owned(),
                size: encoded.len(),
                limit: self.inner.settings.max_value,
            }
            .into());
        }
        #[cfg(feature = "compression")]
        #[allow(clippy::let_and_return)]
        let encoded = match self.inner.settings.compress_above {
            Some(threshold) => crate::codec::compress(encoded, threshold),
            None => encoded,
        };
        Ok(Bytes::from(encoded))
    }

    pub(crate) async fn read<T: DeserializeOwned>(&self, at: &str, key: &str) -> Result<Option<T>> {
        let bytes = self.observed(self.inner.driver.get(at).await)?;
        self.decode_or_forget(at, key, bytes).await
    }

    pub(crate) async fn write<T: Serialize + ?Sized>(
        &self,
        at: &str,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        if ttl.is_some_and(|t| t.is_zero()) {
            self.forget_at(at, key).await?;
            return Ok(());
        }
        let bytes = self.encode(key, value)?;
        self.observed(self.inner.driver.put(at, bytes, ttl).await)?;
        self.event(EventKind::Written, key);
        Ok(())
    }

    pub(crate) async fn add_at<T: Serialize + ?Sized>(
        &self,
        at: &str,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<bool> {
        if ttl.is_zero() {
            return Ok(false);
        }
        let bytes = self.encode(key, value)?;
        let stored = self.observed(self.inner.driver.add(at, bytes, Some(ttl)).await)?;
        if stored {
            self.event(EventKind::Written, key);
        }
        Ok(stored)
    }

    pub(crate) async fn increment_at(&self, at: &str, key: &str, by: i64) -> Result<i64> {
        let n = self.observed(self.inner.driver.increment(at, by).await)?;
        self.event(EventKind::Written, key);
        Ok(n)
    }

    pub(crate) async fn forget_at(&self, at: &str, key: &str) -> Result<bool> {
        let existed = self.observed(self.inner.driver.forget(at).await)?;
        if existed {
            self.event(EventKind::Forgotten, key);
        }
        Ok(existed)
    }

    pub(crate) async fn remember_at<T, E, F, Fut>(
        &self,
        at: &str,
        key: &str,
        ttl: Option<Duration>,
        load: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(value) = self.read(at, key).await? {
            return Ok(value);
        }
        self.fill_missing(at, key, ttl, None, load).await
    }

    /// After a miss: load once per process (the flight), once across processes (the fill
    /// lock), store, and hand every waiting caller the value.
    async fn fill_missing<T, E, F, Fut>(
        &self,
        at: &str,
        key: &str,
        ttl: Option<Duration>,
        fresh: Option<Duration>,
        load: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let flight = Arc::clone(&self.inner.flights.entry(at.to_owned()).or_default());
        let computed = flight
            .get_or_try_init(|| self.lead_fill(at, key, ttl, fresh, load))
            .await
            .cloned();
        self.inner
            .flights
            .remove_if(at, |_, cell| Arc::ptr_eq(cell, &flight));
        decode(&computed?).map_err(|reason| {
            ErrorKind::Encode {
                key: key.to_owned(),
                source: format!("the value does not decode back into its own type: {reason}")
                    .into(),
            }
            .into()
        })
    }

    /// The leader's part of a fill: take the fill lock (or learn that someone else filled the
    /// entry meanwhile), load, encode, store, release.
    async fn lead_fill<T, E, F, Fut>(
        &self,
        at: &str,
        key: &str,
        ttl: Option<Duration>,
        fresh: Option<Duration>,
        load: F,
    ) -> Result<Bytes>
    where
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let lock_key = keys::internal("fill", at);
        let owner = match self.fill_lock::<T>(at, &lock_key).await? {
            Fill::Done(bytes) => return Ok(bytes),
            Fill::Leader(owner) => Some(owner),
            Fill::Unguarded => None,
        };
        let stored = self.load_and_store(at, key, ttl, fresh, load).await;
        if let Some(owner) = owner {
            self.release_quietly(&lock_key, &owner).await;
        }
        stored
    }

    async fn load_and_store<T, E, F, Fut>(
        &self,
        at: &str,
        key: &str,
        ttl: Option<Duration>,
        fresh: Option<Duration>,
        load: F,
    ) -> Result<Bytes>
    where
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let value = load().await.map_err(|e| ErrorKind::Loader {
            key: key.to_owned(),
            source: e.into(),
        })?;
        let bytes = self.encode(key, &value)?;
        if ttl.is_some_and(|t| t.is_zero()) {
            self.forget_at(at, key).await?;
            return Ok(bytes);
        }
        self.observed(self.inner.driver.put(at, bytes.clone(), ttl).await)?;
        self.event(EventKind::Written, key);
        if let Some(fresh) = fresh {
            self.mark_fresh(at, fresh).await?;
        }
        Ok(bytes)
    }

    /// The stored bytes at `at` if they decode as a `T`.
    async fn readable<T: DeserializeOwned>(&self, at: &str) -> Result<Option<Bytes>> {
        let bytes = self.observed(self.inner.driver.get(at).await)?;
        Ok(bytes.filter(|bytes| decode::<T>(bytes).is_ok()))
    }

    /// Takes the fill lock of `at`, or waits for whoever holds it to store the value. Taking
    /// it is followed by a fresh read: the previous holder may have stored just before
    /// releasing. With the lock, a miss costs five backend operations (read, take, read,
    /// write, release); without, three (read, read, write).
    async fn fill_lock<T: DeserializeOwned>(&self, at: &str, lock_key: &str) -> Result<Fill> {
        let Some(FillLock { hold, wait }) = self
            .inner
            .settings
            .fill_lock
            .filter(|lock| !lock.hold.is_zero())
        else {
            // Another task may have stored the value since this one missed.
            return Ok(match self.readable::<T>(at).await? {
                Some(bytes) => Fill::Done(bytes),
                None => Fill::Unguarded,
            });
        };
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        loop {
            let owner = keys::token();
            let driver = &self.inner.driver;
            if self.observed(driver.add(lock_key, owner.clone().into(), Some(hold)).await)? {
                // The previous holder may have stored the value just before releasing.
                if let Some(bytes) = self.readable::<T>(at).await? {
                    self.release_quietly(lock_key, &owner).await;
                    return Ok(Fill::Done(bytes));
                }
                return Ok(Fill::Leader(owner));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                tracing::warn!(
                    key_hash = %KeyHash(at),
                    waited = ?wait,
                    "another process holds the fill lock for too long; loading without it"
                );
                return Ok(Fill::Unguarded);
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(100));
            if let Some(bytes) = self.readable::<T>(at).await? {
                return Ok(Fill::Done(bytes));
            }
        }
    }

    /// Releases a lock this cache took for itself; a failure only means it expires later.
    async fn release_quietly(&self, lock_key: &str, owner: &str) {
        let released = self
            .inner
            .driver
            .forget_if(lock_key, owner.as_bytes())
            .await;
        if let Err(error) = self.observed(released) {
            tracing::warn!(
                key_hash = %KeyHash(lock_key),
                error = %crate::error::chain(&error),
                "could not release an internal lock; it will expire by itself"
            );
        }
    }

    async fn mark_fresh(&self, at: &str, fresh: Duration) -> Result<()> {
        let marker = keys::internal("fresh", at);
        let put = self
            .inner
            .driver
            .put(&marker, Bytes::from_static(b"1"), Some(fresh))
            .await;
        self.observed(put)
    }

    async fn flexible_at<T, F, Fut>(
        &self,
        at: &str,
        key: &str,
        fresh: Duration,
        stale: Duration,
        load: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let marker = keys::internal("fresh", at);
        let found = self.observed(self.inner.driver.many(&[at, marker.as_str()]).await)?;
        let mut found = found.into_iter();
        let (value, marker_found) = (found.next().flatten(), found.next().flatten());
        if let Some(bytes) = value {
            match self.decode_logged::<T>(key, &bytes) {
                Some(value) => {
                    self.event(EventKind::Hit, key);
                    if marker_found.is_none() {
                        self.refresh_in_background(at, key, fresh, stale, load)
                            .await;
                    }
                    return Ok(value);
                }
                None => {
                    self.observed(self.inner.driver.forget(at).await)?;
                }
            }
        }
        self.event(EventKind::Miss, key);
        self.fill_missing(at, key, Some(stale), Some(fresh), infallible(load))
            .await
    }

    /// Starts one refresh of a stale value, unless one is running anywhere already.
    async fn refresh_in_background<T, F, Fut>(
        &self,
        at: &str,
        key: &str,
        fresh: Duration,
        stale: Duration,
        load: F,
    ) where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let lock_key = keys::internal("refresh", at);
        let owner = keys::token();
        // Held at most until the value would be stale anyway.
        let hold = stale.saturating_sub(fresh).max(Duration::from_secs(1));
        let taken = self
            .inner
            .driver
            .add(&lock_key, owner.clone().into(), Some(hold))
            .await;
        match self.observed(taken) {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::warn!(
                    key_hash = %KeyHash(key),
                    error = %crate::error::chain(&error),
                    "could not start a background refresh; serving the stale value"
                );
                return;
            }
        }
        let cache = self.clone();
        let span = span("refresh", key);
        let (at, key) = (at.to_owned(), key.to_owned());
        let refresh = async move {
            let stored = cache
                .load_and_store(&at, &key, Some(stale), Some(fresh), infallible(load))
                .await;
            if let Err(error) = stored {
                tracing::warn!(
                    key_hash = %KeyHash(&key),
                    error = %crate::error::chain(&error),
                    "background refresh failed; the stale value stays until it expires"
                );
            }
            cache.release_quietly(&lock_key, &owner).await;
        };
        tokio::spawn(refresh.instrument(span));
    }

    async fn decode_or_forget<T: DeserializeOwned>(
        &self,
        at: &str,
        key: &str,
        bytes: Option<Bytes>,
    ) -> Result<Option<T>> {
        let Some(bytes) = bytes else {
            self.read_event(false, key);
            return Ok(None);
        };
        let value = self.decode_logged(key, &bytes);
        if value.is_none() {
            self.observed(self.inner.driver.forget(at).await)?;
        }
        self.read_event(value.is_some(), key);
        Ok(value)
    }

    fn decode_logged<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Option<T> {
        match decode(bytes) {
            Ok(value) => Some(value),
            Err(reason) => {
                tracing::warn!(
                    driver = self.inner.driver.name(),
                    key_hash = %KeyHash(key),
                    r#type = std::any::type_name::<T>(),
                    reason,
                    "removed a cache entry that does not decode"
                );
                None
            }
        }
    }
}

/// Adapts an infallible loader to the fallible shape the fill path takes.
pub(crate) fn infallible<T, F, Fut>(load: F) -> impl FnOnce() -> InfallibleFuture<Fut>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = T>,
{
    move || InfallibleFuture { inner: load() }
}

pin_project_lite::pin_project! {
    /// A loader's future whose output is wrapped in `Ok`.
    pub(crate) struct InfallibleFuture<Fut> {
        #[pin]
        inner: Fut,
    }
}

impl<Fut: Future> Future for InfallibleFuture<Fut> {
    type Output = Result<Fut::Output, Infallible>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.project().inner.poll(cx).map(Ok)
    }
}

/// The span of one cache operation: the operation and the key's hash, never the key or value.
pub(crate) fn span(op: &'static str, key: &str) -> tracing::Span {
    tracing::debug_span!("cache", op, key_hash = %KeyHash(key))
}

/// Displays a short, stable fingerprint of a key for logs: keys may hold personal data, logs
/// must not. Computed only when a log line or span actually records it.
pub(crate) struct KeyHash<'a>(pub(crate) &'a str);

impl fmt::Display for KeyHash<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&blake3::hash(self.0.as_bytes()).to_hex()[..16])
    }
}
