//! `LargeValueTier`: values too big for the cache in front, kept in object storage.
//!
//! The tier is a [`CacheDriver`] over two others: a primary (file, Redis, DynamoDB, ...) that
//! keeps every entry, and an [`ObjectStoreDriver`]'s store that keeps the bytes of the large
//! ones. A value whose stored form (encoded, compressed) is above the threshold is written to
//! an object of its own, under a name made for that one write, and the primary keeps a
//! 44-byte pointer to it with the entry's TTL. Everything else — small values, counters,
//! locks, tag versions, rate windows — is the primary's alone, at the primary's speed.
//!
//! The pointer decides: an entry lives, expires, is replaced or forgotten exactly when its
//! pointer does, atomically, by the primary's own rules. The pointer formats and the object
//! layout are in `objects.rs`.

mod objects;

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::future::try_join_all;

use self::objects::{Fetched, Objects, Pointer};
use crate::{
    Cache, CacheDriver, DEFAULT_LARGE_VALUE_THRESHOLD, DriverFuture, DriverStats, Hit,
    ObjectStoreDriver, RateRule, RateVerdict, Result,
};

/// How young an object [`prune`](CacheDriver::prune) leaves alone, by default: long enough
/// for any write in flight to have written its pointer.
pub const DEFAULT_ORPHAN_GRACE: Duration = Duration::from_secs(15 * 60);

/// How many times a read follows a pointer whose object has just gone (replaced by a newer
/// write) before it answers a miss.
const FOLLOW_TRIES: usize = 3;

/// A cache driver that keeps large values in object storage and everything else in a
/// primary driver (feature `object-store`). Build one with [`Cache::large_values`], or
/// [`new`](Self::new) for a driver to share.
///
/// - **Reads** of a small entry cost what the primary costs (one primary read); a large one
///   costs a primary read and one object GET, the value read whole into one buffer.
/// - **Writes** of a large value PUT the object (the value is sent as it is, behind a small
///   header, not copied), read the old pointer at the same time, write the new pointer, then
///   delete the old object.
/// - **A reader never sees a value from one write with the pointer of another**: every write
///   has its own object name, and an object never changes after it is written.
/// - **`forget`, `pull`, an overwrite by another large value** delete the old object at once;
///   **expiry, an overwrite by a small value and `flush`'s crash-interrupted cousins** leave an
///   object no pointer names, which [`prune`](CacheDriver::prune) deletes (it reads the key
///   in each object's head and asks the primary; objects younger than
///   [`orphan_grace`](Self::orphan_grace) are left alone). `flush` deletes the primary's
///   entries, then every object of the tier. Schedule `jtc cache prune` (or call `prune`).
/// - **A missing object behind a pointer** (deleted by hand, by a lifecycle rule) is a miss:
///   the pointer is removed and a warning logged with the object's name, never the key.
/// - **The store down**: large reads and writes fail with the store's backend error; small
///   ones go on in the primary.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use jtc_cache::{ArrayDriver, Cache, CacheDriver, ObjectStoreDriver};
/// use std::{sync::Arc, time::Duration};
///
/// let primary: Arc<dyn CacheDriver> = Arc::new(ArrayDriver::new());
/// let store = ObjectStoreDriver::new(Arc::new(object_store::memory::InMemory::new()), "cache");
/// let cache = Cache::from_driver(Arc::clone(&primary)).large_values(store, 1024);
///
/// // ~9 kB that does not compress: stored as an object, a pointer in the primary.
/// let report: Vec<u64> = (1..1_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
/// cache.put("report:7", &report, Duration::from_secs(600)).await?;
/// assert_eq!(cache.get::<Vec<u64>>("report:7").await?, Some(report));
/// assert_eq!(primary.get("report:7").await?.unwrap().len(), 44);
///
/// // Small values and counters stay in the primary.
/// cache.put("theme", &"dark", Duration::from_secs(600)).await?;
/// assert_eq!(cache.increment("views", 1).await?, 1);
/// assert_eq!(primary.get("views").await?.as_deref(), Some(&b"1"[..]));
/// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
/// ```
pub struct LargeValueTier {
    primary: Arc<dyn CacheDriver>,
    objects: Objects,
    threshold: usize,
    grace: Duration,
}

impl fmt::Debug for LargeValueTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LargeValueTier")
            .field("primary", &self.primary)
            .field("objects", &self.objects)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

impl LargeValueTier {
    /// A tier over `primary`, keeping values above [`DEFAULT_LARGE_VALUE_THRESHOLD`] in
    /// `store`'s store, under its prefix and then `large/`.
    pub fn new(primary: Arc<dyn CacheDriver>, store: ObjectStoreDriver) -> Self {
        let (store, root) = store.into_parts();
        Self {
            primary,
            objects: Objects::new(store, &root),
            threshold: DEFAULT_LARGE_VALUE_THRESHOLD,
            grace: DEFAULT_ORPHAN_GRACE,
        }
    }

    /// Values whose stored form is above `bytes` go to the object store; the rest stay in the
    /// primary.
    #[must_use]
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// How young an object [`prune`](CacheDriver::prune) leaves alone even when no pointer
    /// names it (default [`DEFAULT_ORPHAN_GRACE`]): a write in flight has written its object
    /// but not yet its pointer. Keep it well above your slowest large write.
    #[must_use]
    pub fn orphan_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// The driver that keeps every entry and the pointers of the large ones.
    pub fn primary(&self) -> &Arc<dyn CacheDriver> {
        &self.primary
    }

    /// Whether `value` goes to the store: above the threshold, and not a counter (an integer
    /// stays where `increment` can reach it, however low the threshold is set).
    fn is_large(&self, value: &[u8]) -> bool {
        value.len() > self.threshold && !is_counter(value)
    }

    /// The value behind what the primary holds at `key`: the stored bytes themselves, or the
    /// object a pointer names. An object gone because a newer write replaced it is followed
    /// to the newer pointer; an object gone for good is a miss, and its pointer is removed.
    async fn resolve(&self, key: &str, mut stored: Bytes) -> Result<Option<Bytes>> {
        for _ in 0..FOLLOW_TRIES {
            let Some(pointer) = Pointer::parse(&stored) else {
                return Ok(Some(stored));
            };
            if let Fetched::Value(value) = self.objects.read(&pointer, key).await? {
                return Ok(Some(value));
            }
            match self.primary.get(key).await? {
                Some(now) if now != stored => stored = now,
                Some(_) => {
                    tracing::warn!(
                        object = pointer.name(),
                        "a large value's object is missing; its entry is removed (a miss)"
                    );
                    self.primary.forget_if(key, &stored).await?;
                    return Ok(None);
                }
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Deletes the object `stored` points at, if it is a pointer.
    async fn drop_object(&self, stored: Option<&[u8]>) {
        if let Some(pointer) = stored.and_then(Pointer::parse) {
            self.drop_pointed(&pointer).await;
        }
    }

    /// Deletes `pointer`'s object. A failure is logged and left to `prune`: the entry is
    /// already gone.
    async fn drop_pointed(&self, pointer: &Pointer) {
        if let Err(error) = self.objects.delete(pointer).await {
            tracing::debug!(
                object = pointer.name(),
                %error,
                "an unreachable large object was not deleted; prune will"
            );
        }
    }

    /// Writes `value`'s object and returns the pointer to store in its place.
    async fn store_object(&self, key: &str, value: Bytes) -> Result<Pointer> {
        let pointer = Pointer::fresh(value.len());
        self.objects.write(&pointer, key, value).await?;
        Ok(pointer)
    }

    async fn put_entry(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        if !self.is_large(&value) || ttl == Some(Duration::ZERO) {
            return self.primary.put(key, value, ttl).await;
        }
        // The old pointer is read while the object uploads: no added latency.
        let (pointer, old) =
            futures_util::future::join(self.store_object(key, value), self.primary.get(key)).await;
        let pointer = pointer?;
        if let Err(error) = self.primary.put(key, pointer.to_bytes(), ttl).await {
            self.drop_pointed(&pointer).await;
            return Err(error);
        }
        if let Ok(old) = old {
            self.drop_object(old.as_deref()).await;
        }
        Ok(())
    }

    async fn add_entry(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<bool> {
        if !self.is_large(&value) || ttl == Some(Duration::ZERO) {
            return self.primary.add(key, value, ttl).await;
        }
        let pointer = self.store_object(key, value).await?;
        let added = self.primary.add(key, pointer.to_bytes(), ttl).await;
        if !matches!(added, Ok(true)) {
            self.drop_pointed(&pointer).await;
        }
        added
    }

    async fn forget_entry(&self, key: &str) -> Result<bool> {
        let taken = self.primary.pull(key).await?;
        self.drop_object(taken.as_deref()).await;
        Ok(taken.is_some())
    }

    async fn forget_entry_if(&self, key: &str, expected: &[u8]) -> Result<bool> {
        if !self.is_large(expected) || Pointer::parse(expected).is_some() {
            return self.primary.forget_if(key, expected).await;
        }
        // A large value is compared with what the pointer stored now names.
        let Some(stored) = self.primary.get(key).await? else {
            return Ok(false);
        };
        let Some(pointer) = Pointer::parse(&stored) else {
            return self.primary.forget_if(key, expected).await;
        };
        match self.objects.read(&pointer, key).await? {
            Fetched::Value(value) if value == expected => {
                let removed = self.primary.forget_if(key, &stored).await?;
                if removed {
                    self.drop_object(Some(&stored)).await;
                }
                Ok(removed)
            }
            _ => Ok(false),
        }
    }

    async fn take_entry(&self, key: &str) -> Result<Option<Bytes>> {
        let Some(stored) = self.primary.pull(key).await? else {
            return Ok(None);
        };
        let Some(pointer) = Pointer::parse(&stored) else {
            return Ok(Some(stored));
        };
        let value = match self.objects.read(&pointer, key).await? {
            Fetched::Value(value) => Some(value),
            Fetched::Missing => None,
        };
        self.drop_object(Some(&stored)).await;
        Ok(value)
    }

    async fn many_entries(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let stored = self.primary.many(keys).await?;
        if !stored.iter().flatten().any(|s| Pointer::parse(s).is_some()) {
            return Ok(stored);
        }
        try_join_all(keys.iter().zip(stored).map(|(key, stored)| async move {
            match stored {
                Some(stored) => self.resolve(key, stored).await,
                None => Ok(None),
            }
        }))
        .await
    }

    async fn put_entries(&self, entries: &[(&str, Bytes)], ttl: Option<Duration>) -> Result<()> {
        let large: Vec<&str> = entries
            .iter()
            .filter(|(_, value)| self.is_large(value))
            .map(|(key, _)| *key)
            .collect();
        if large.is_empty() || ttl == Some(Duration::ZERO) {
            return self.primary.put_many(entries, ttl).await;
        }
        let uploads = try_join_all(entries.iter().map(|(key, value)| async move {
            if self.is_large(value) {
                let pointer = self.store_object(key, value.clone()).await?;
                Ok::<_, crate::Error>((pointer.to_bytes(), true))
            } else {
                Ok((value.clone(), false))
            }
        }));
        let (written, old) = futures_util::future::join(uploads, self.primary.many(&large)).await;
        let written = written?;
        let stored: Vec<(&str, Bytes)> = entries
            .iter()
            .zip(&written)
            .map(|((key, _), (bytes, _))| (*key, bytes.clone()))
            .collect();
        if let Err(error) = self.primary.put_many(&stored, ttl).await {
            for (bytes, _) in written.iter().filter(|(_, large)| *large) {
                self.drop_object(Some(bytes)).await;
            }
            return Err(error);
        }
        for old in old.into_iter().flatten() {
            self.drop_object(old.as_deref()).await;
        }
        Ok(())
    }

    async fn flush_all(&self) -> Result<()> {
        self.primary.flush().await?;
        self.objects.delete_all().await
    }

    async fn prune_all(&self) -> Result<u64> {
        let expired = self.primary.prune().await?;
        let orphans = self
            .objects
            .sweep(self.grace, |key| async move {
                Ok(self
                    .primary
                    .get(&key)
                    .await?
                    .and_then(|stored| Pointer::parse(&stored)))
            })
            .await?;
        Ok(expired + orphans)
    }
}

/// Whether `value` is an integer as the codec stores one (decimal text, at most 20 bytes).
fn is_counter(value: &[u8]) -> bool {
    value.len() <= 20 && std::str::from_utf8(value).is_ok_and(|text| text.parse::<i64>().is_ok())
}

impl CacheDriver for LargeValueTier {
    /// The primary's name: metrics and logs keep the labels they had before the tier.
    fn name(&self) -> &'static str {
        self.primary.name()
    }

    fn get<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        DriverFuture::new(async move {
            match self.primary.get(key).await? {
                Some(stored) => self.resolve(key, stored).await,
                None => Ok(None),
            }
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, ()> {
        DriverFuture::new(self.put_entry(key, value, ttl))
    }

    fn add<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.add_entry(key, value, ttl))
    }

    fn increment<'a>(&'a self, key: &'a str, by: i64) -> DriverFuture<'a, i64> {
        self.primary.increment(key, by)
    }

    fn hit_by<'a>(&'a self, key: &'a str, window: Duration, by: u64) -> DriverFuture<'a, Hit> {
        self.primary.hit_by(key, window, by)
    }

    fn hit<'a>(&'a self, key: &'a str, window: Duration) -> DriverFuture<'a, Hit> {
        self.primary.hit(key, window)
    }

    fn rate<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        consume: bool,
    ) -> DriverFuture<'a, Vec<RateVerdict>> {
        self.primary.rate(key, rules, consume)
    }

    fn rate_by<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        by: u64,
    ) -> DriverFuture<'a, Vec<Vec<RateVerdict>>> {
        self.primary.rate_by(key, rules, by)
    }

    fn forget<'a>(&'a self, key: &'a str) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.forget_entry(key))
    }

    fn forget_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.forget_entry_if(key, expected))
    }

    fn pull<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        DriverFuture::new(self.take_entry(key))
    }

    fn touch<'a>(&'a self, key: &'a str, ttl: Option<Duration>) -> DriverFuture<'a, bool> {
        self.primary.touch(key, ttl)
    }

    fn flush(&self) -> DriverFuture<'_, ()> {
        DriverFuture::new(self.flush_all())
    }

    fn many<'a>(&'a self, keys: &'a [&'a str]) -> DriverFuture<'a, Vec<Option<Bytes>>> {
        DriverFuture::new(self.many_entries(keys))
    }

    fn put_many<'a>(
        &'a self,
        entries: &'a [(&'a str, Bytes)],
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, ()> {
        DriverFuture::new(self.put_entries(entries, ttl))
    }

    fn stats(&self) -> DriverStats {
        self.primary.stats()
    }

    fn prune(&self) -> DriverFuture<'_, u64> {
        DriverFuture::new(self.prune_all())
    }
}

impl Cache {
    /// The same cache with its large values in object storage: values whose stored form
    /// (encoded, compressed) is above `threshold` bytes go to `store` (under its prefix and
    /// `large/`), and this cache's driver keeps a small pointer to each with the entry's TTL.
    /// Counters, locks, tags and rate windows stay where they are. See [`LargeValueTier`].
    /// Configured from the environment by `CACHE_LARGE_VALUES_URL` and
    /// `CACHE_LARGE_VALUE_THRESHOLD`.
    #[must_use]
    pub fn large_values(self, store: ObjectStoreDriver, threshold: usize) -> Self {
        self.map_driver(|primary| {
            Arc::new(LargeValueTier::new(primary, store).threshold(threshold))
        })
    }
}
