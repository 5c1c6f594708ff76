//! `Cache`: the cheap-to-clone typed handle applications use.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use dashmap::DashMap;
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::OnceCell;

use crate::{CacheConfig, CacheDriver, Codec, Error, Hit, Result, codec::decode};

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

struct Inner {
    driver: Arc<dyn CacheDriver>,
    codec: Codec,
    /// One cell per key being computed by `remember`, shared by its concurrent callers.
    flights: DashMap<String, Arc<OnceCell<Bytes>>>,
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("driver", &self.inner.driver)
            .field("codec", &self.inner.codec)
            .finish_non_exhaustive()
    }
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
                codec: Codec::default(),
                flights: DashMap::new(),
            }),
        }
    }

    /// The same driver with another codec for the values it writes. Entries are always read
    /// with the codec that wrote them, so switching codecs never makes old entries unreadable.
    #[must_use]
    pub fn with_codec(self, codec: Codec) -> Self {
        Self {
            inner: Arc::new(Inner {
                driver: Arc::clone(&self.inner.driver),
                codec,
                flights: DashMap::new(),
            }),
        }
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

    /// The value at `key`, or `None` when it is missing, expired or undecodable as `T`.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let bytes = self.inner.driver.get(key).await?;
        self.decode_or_forget(key, bytes).await
    }

    /// Whether a live entry exists at `key`.
    pub async fn has(&self, key: &str) -> Result<bool> {
        Ok(self.inner.driver.get(key).await?.is_some())
    }

    /// Stores `value` for `ttl`. A zero `ttl` removes the key instead.
    pub async fn put<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<()> {
        self.store(key, value, Some(ttl)).await
    }

    /// Stores `value` with no expiry.
    pub async fn forever<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        self.store(key, value, None).await
    }

    /// Stores `value` only if `key` holds no live entry, atomically; returns whether it stored.
    /// A zero `ttl` stores nothing and returns `false`.
    pub async fn add<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<bool> {
        if ttl.is_zero() {
            return Ok(false);
        }
        let bytes = self.inner.codec.encode(key, value)?;
        self.inner.driver.add(key, bytes.into(), Some(ttl)).await
    }

    /// The value at `key`; on a miss, the value `load` computes, stored for `ttl`.
    ///
    /// Concurrent calls for the same key on this `Cache` (and its clones) share one call of
    /// `load`: the first caller computes, the others wait for its value.
    pub async fn remember<T, F, Fut>(&self, key: &str, ttl: Duration, load: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.remember_with(key, Some(ttl), || async {
            Ok::<_, std::convert::Infallible>(load().await)
        })
        .await
    }

    /// Like [`remember`](Self::remember), with no expiry.
    pub async fn remember_forever<T, F, Fut>(&self, key: &str, load: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        self.remember_with(key, None, || async {
            Ok::<_, std::convert::Infallible>(load().await)
        })
        .await
    }

    /// Like [`remember`](Self::remember), for a loader that can fail. A failure is returned as
    /// [`Error::Loader`] and nothing is stored; a concurrent caller then tries its own loader.
    pub async fn try_remember<T, E, F, Fut>(&self, key: &str, ttl: Duration, load: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.remember_with(key, Some(ttl), load).await
    }

    /// Adds `by` to the integer at `key` and returns the new value, atomically.
    ///
    /// A missing or expired key starts from 0 (and never expires); an existing key keeps its
    /// TTL. A stored value that is not an integer is [`Error::NotAnInteger`] and stays as it was.
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64> {
        self.inner.driver.increment(key, by).await
    }

    /// Subtracts `by` from the integer at `key`; see [`increment`](Self::increment).
    pub async fn decrement(&self, key: &str, by: i64) -> Result<i64> {
        let by = by.checked_neg().ok_or_else(|| Error::Overflow {
            key: key.to_owned(),
        })?;
        self.inner.driver.increment(key, by).await
    }

    /// Counts one hit on a rate-limit counter: adds one, giving a new counter `window` as its
    /// TTL in the same atomic step, and returns the count and the time left in the window.
    pub async fn hit(&self, key: &str, window: Duration) -> Result<Hit> {
        self.inner.driver.hit(key, window).await
    }

    /// Removes `key`; returns whether a live entry was there.
    pub async fn forget(&self, key: &str) -> Result<bool> {
        self.inner.driver.forget(key).await
    }

    /// Removes `key` and returns its value, atomically.
    pub async fn pull<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let bytes = self.inner.driver.pull(key).await?;
        Ok(bytes.and_then(|bytes| self.decode_logged(key, &bytes)))
    }

    /// Gives the live entry at `key` a new `ttl` (zero removes it); returns whether it was live.
    pub async fn touch(&self, key: &str, ttl: Duration) -> Result<bool> {
        self.inner.driver.touch(key, Some(ttl)).await
    }

    /// The values of several keys, in order; `None` for each miss.
    pub async fn many<T: DeserializeOwned>(&self, keys: &[&str]) -> Result<Vec<Option<T>>> {
        let stored = self.inner.driver.many(keys).await?;
        let mut values = Vec::with_capacity(stored.len());
        for (key, bytes) in keys.iter().zip(stored) {
            values.push(self.decode_or_forget(key, bytes).await?);
        }
        Ok(values)
    }

    /// Stores several values with one `ttl`. A zero `ttl` removes the keys instead.
    pub async fn put_many<T: Serialize>(&self, entries: &[(&str, T)], ttl: Duration) -> Result<()> {
        if ttl.is_zero() {
            for (key, _) in entries {
                self.inner.driver.forget(key).await?;
            }
            return Ok(());
        }
        let encoded = entries
            .iter()
            .map(|(key, value)| Ok((*key, self.inner.codec.encode(key, value)?.into())))
            .collect::<Result<Vec<_>>>()?;
        self.inner.driver.put_many(&encoded, Some(ttl)).await
    }

    /// Removes every entry of this cache. Entries of other applications sharing the backend
    /// (other files in the folder, other Redis key prefixes) are left alone.
    pub async fn flush(&self) -> Result<()> {
        self.inner.driver.flush().await
    }

    /// Removes expired entries that nobody has read since; returns how many (0 on Redis,
    /// which expires entries by itself).
    pub async fn prune(&self) -> Result<u64> {
        self.inner.driver.prune().await
    }

    async fn store<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        if ttl.is_some_and(|t| t.is_zero()) {
            self.inner.driver.forget(key).await?;
            return Ok(());
        }
        let bytes = self.inner.codec.encode(key, value)?;
        self.inner.driver.put(key, bytes.into(), ttl).await
    }

    async fn remember_with<T, E, F, Fut>(
        &self,
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
        if let Some(value) = self.get(key).await? {
            return Ok(value);
        }
        let flight = Arc::clone(&self.inner.flights.entry(key.to_owned()).or_default());
        let computed = flight
            .get_or_try_init(|| self.compute(key, ttl, load))
            .await
            .cloned();
        self.inner
            .flights
            .remove_if(key, |_, cell| Arc::ptr_eq(cell, &flight));
        decode(&computed?).map_err(|reason| Error::Encode {
            key: key.to_owned(),
            source: format!("the value does not decode back into its own type: {reason}").into(),
        })
    }

    /// The leader's part of `remember`: check again (another process may have filled the
    /// entry meanwhile), else load, encode and store.
    async fn compute<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Option<Duration>,
        load: F,
    ) -> Result<Bytes>
    where
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(bytes) = self.inner.driver.get(key).await?
            && decode::<T>(&bytes).is_ok()
        {
            return Ok(bytes);
        }
        let value = load().await.map_err(|e| Error::Loader {
            key: key.to_owned(),
            source: e.into(),
        })?;
        let bytes = Bytes::from(self.inner.codec.encode(key, &value)?);
        match ttl {
            Some(ttl) if ttl.is_zero() => {
                self.inner.driver.forget(key).await?;
            }
            _ => self.inner.driver.put(key, bytes.clone(), ttl).await?,
        }
        Ok(bytes)
    }

    async fn decode_or_forget<T: DeserializeOwned>(
        &self,
        key: &str,
        bytes: Option<Bytes>,
    ) -> Result<Option<T>> {
        let Some(bytes) = bytes else { return Ok(None) };
        let value = self.decode_logged(key, &bytes);
        if value.is_none() {
            self.inner.driver.forget(key).await?;
        }
        Ok(value)
    }

    fn decode_logged<T: DeserializeOwned>(&self, key: &str, bytes: &[u8]) -> Option<T> {
        match decode(bytes) {
            Ok(value) => Some(value),
            Err(reason) => {
                tracing::warn!(
                    driver = self.inner.driver.name(),
                    key_hash = %key_hash(key),
                    r#type = std::any::type_name::<T>(),
                    reason,
                    "removed a cache entry that does not decode"
                );
                None
            }
        }
    }
}

/// A short, stable fingerprint of a key for logs: keys may hold personal data, logs must not.
pub(crate) fn key_hash(key: &str) -> String {
    blake3::hash(key.as_bytes()).to_hex()[..16].to_owned()
}
