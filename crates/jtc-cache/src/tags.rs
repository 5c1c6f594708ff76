//! Tags: entries grouped so that one call invalidates the group.
//!
//! Each tag has a version: a random token stored under the tag's own key, with no expiry. A
//! tagged entry is stored under a key derived from the versions of all its tags, so flushing a
//! tag is one write (a new version), whatever the number of entries. The old entries are then
//! unreachable and expire by their TTL. Nothing is kept per entry, so nothing grows without
//! bound, and no operation touches two keys at once, so it works on Redis Cluster.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Cache, EventKind, Result,
    cache::OpName,
    cache::fill::infallible,
    cache::observe::Op,
    keys,
    keys::{Record, StoreKey},
};

/// A view of a [`Cache`] whose entries belong to a set of tags; made by [`Cache::tags`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use jtc_cache::{ArrayDriver, Cache};
/// use std::time::Duration;
///
/// let cache = Cache::new(ArrayDriver::new());
/// let ttl = Duration::from_secs(600);
/// cache.tags(&["users", "posts"]).put("user:1:posts", &vec![10, 11], ttl).await?;
/// cache.tags(&["posts"]).put("latest", &vec![11], ttl).await?;
///
/// cache.tags(&["users"]).flush().await?;     // invalidates everything tagged "users"
/// assert_eq!(cache.tags(&["users", "posts"]).get::<Vec<u32>>("user:1:posts").await?, None);
/// assert_eq!(cache.tags(&["posts"]).get::<Vec<u32>>("latest").await?, Some(vec![11]));
/// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
/// ```
///
/// The set of tags is part of an entry's address: read an entry through the same tags it was
/// written with (in any order). Tagged entries should have a TTL: a flushed entry written with
/// [`forever`](Self::forever) is unreachable but stays in the backend until a full flush.
#[derive(Clone)]
pub struct TaggedCache {
    cache: Cache,
    /// Sorted, without duplicates.
    tags: Arc<[String]>,
}

impl fmt::Debug for TaggedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaggedCache")
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// A view of this cache for entries tagged with every tag in `tags`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// # let ttl = Duration::from_secs(60);
    /// let cache = Cache::new(ArrayDriver::new());
    /// let users = cache.tags(&["users"]);
    /// users.put("user:1", &"Ana", ttl).await?;
    /// assert_eq!(users.get::<String>("user:1").await?.as_deref(), Some("Ana"));
    /// assert_eq!(cache.get::<String>("user:1").await?, None, "tagged entries live apart");
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn tags<S: AsRef<str>>(&self, tags: &[S]) -> TaggedCache {
        let mut tags: Vec<String> = tags.iter().map(|t| t.as_ref().to_owned()).collect();
        tags.sort_unstable();
        tags.dedup();
        TaggedCache {
            cache: self.clone(),
            tags: Arc::from(tags),
        }
    }
}

impl TaggedCache {
    /// The tags of this view, sorted and without duplicates.
    ///
    /// ```
    /// # use jtc_cache::{ArrayDriver, Cache};
    /// let cache = Cache::new(ArrayDriver::new());
    /// assert_eq!(cache.tags(&["posts", "users", "posts"]).tag_names(), ["posts", "users"]);
    /// ```
    pub fn tag_names(&self) -> &[String] {
        &self.tags
    }

    /// The value at `key` under these tags; see [`Cache::get`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// # let ttl = Duration::from_secs(60);
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.tags(&["a", "b"]).put("k", &1, ttl).await?;
    /// assert_eq!(cache.tags(&["b", "a"]).get::<i32>("k").await?, Some(1), "any order");
    /// assert_eq!(cache.tags(&["a"]).get::<i32>("k").await?, None, "another set of tags");
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::KeyTooLong`](crate::ErrorKind::KeyTooLong) for a key or tag over
    /// [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES), or the backend failing (reading the tags'
    /// versions or the entry). The same holds for every method of this type, and writes
    /// also fail as [`Cache::put`] does.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let op = self.cache.op(OpName::TaggedGet, key);
        op.run(async { op.read(&self.entry_key(&op).await?).await })
            .await
    }

    /// Whether a live entry exists at `key` under these tags.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// # let ttl = Duration::from_secs(60);
    /// let cache = Cache::new(ArrayDriver::new());
    /// let tagged = cache.tags(&["users"]);
    /// tagged.put("k", &1, ttl).await?;
    /// assert!(tagged.has("k").await?);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn has(&self, key: &str) -> Result<bool> {
        let op = self.cache.op(OpName::TaggedHas, key);
        op.run(async { op.has_entry(&self.entry_key(&op).await?).await })
            .await
    }

    /// Stores `value` for `ttl` under these tags; see [`Cache::put`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// # let ttl = Duration::from_secs(60);
    /// let cache = Cache::new(ArrayDriver::new());
    /// let tagged = cache.tags(&["users"]);
    /// tagged.put("k", &"v", ttl).await?;
    /// assert_eq!(tagged.get::<String>("k").await?.as_deref(), Some("v"));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), and as [`Cache::put`] for the value.
    pub async fn put<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<()> {
        let op = self.cache.op(OpName::TaggedPut, key);
        op.run(async {
            let at = self.entry_key(&op).await?;
            op.write(&at, value, Some(ttl)).await
        })
        .await
    }

    /// Stores `value` with no expiry under these tags. See the note on the type about
    /// flushed entries without a TTL.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// # let ttl = Duration::from_secs(60);
    /// let cache = Cache::new(ArrayDriver::new());
    /// let tagged = cache.tags(&["settings"]);
    /// tagged.forever("theme", &"dark").await?;
    /// assert!(tagged.has("theme").await?);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put).
    pub async fn forever<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let op = self.cache.op(OpName::TaggedForever, key);
        op.run(async {
            let at = self.entry_key(&op).await?;
            op.write(&at, value, None).await
        })
        .await
    }

    /// Stores `value` only if `key` holds no live entry under these tags; see [`Cache::add`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// # let ttl = Duration::from_secs(60);
    /// let cache = Cache::new(ArrayDriver::new());
    /// let tagged = cache.tags(&["users"]);
    /// assert!(tagged.add("k", &1, ttl).await?);
    /// assert!(!tagged.add("k", &2, ttl).await?);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put).
    pub async fn add<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<bool> {
        let op = self.cache.op(OpName::TaggedAdd, key);
        op.run(async {
            let at = self.entry_key(&op).await?;
            op.add_value(&at, value, ttl).await
        })
        .await
    }

    /// The value at `key` under these tags, or `load`'s, stored for `ttl`; see
    /// [`Cache::remember`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// # let ttl = Duration::from_secs(60);
    /// let cache = Cache::new(ArrayDriver::new());
    /// let tagged = cache.tags(&["reports"]);
    /// let n: u32 = tagged.remember("daily", ttl, || async { 7 }).await?;
    /// assert_eq!((n, tagged.get::<u32>("daily").await?), (7, Some(7)));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::remember`], and as [`get`](Self::get) for the tags.
    pub async fn remember<T, F, Fut>(&self, key: &str, ttl: Duration, load: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let op = self.cache.op(OpName::TaggedRemember, key);
        op.run(async {
            let at = self.entry_key(&op).await?;
            op.remember(&at, Some(ttl), infallible(load)).await
        })
        .await
    }

    /// Adds `by` to the counter at `key` under these tags; see [`Cache::increment`].
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// # let ttl = Duration::from_secs(60);
    /// let cache = Cache::new(ArrayDriver::new());
    /// let tagged = cache.tags(&["stats"]);
    /// assert_eq!(tagged.increment("views", 2).await?, 2);
    /// assert_eq!(tagged.increment("views", 1).await?, 3);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Cache::increment`], and as [`get`](Self::get) for the tags.
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64> {
        let op = self.cache.op(OpName::TaggedIncrement, key);
        op.run(async { op.add_to(&self.entry_key(&op).await?, by).await })
            .await
    }

    /// Removes `key` under these tags; returns whether a live entry was there.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// # let ttl = Duration::from_secs(60);
    /// let cache = Cache::new(ArrayDriver::new());
    /// let tagged = cache.tags(&["users"]);
    /// tagged.put("k", &1, ttl).await?;
    /// assert!(tagged.forget("k").await?);
    /// assert!(!tagged.forget("k").await?);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn forget(&self, key: &str) -> Result<bool> {
        let op = self.cache.op(OpName::TaggedForget, key);
        op.run(async { op.remove(&self.entry_key(&op).await?).await })
            .await
    }

    /// Invalidates every entry carrying any of these tags, whatever other tags it has: one
    /// write per tag, however many entries there are. Entries of other tags stay.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// # let ttl = Duration::from_secs(60);
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.tags(&["users", "posts"]).put("a", &1, ttl).await?;
    /// cache.tags(&["posts"]).put("b", &2, ttl).await?;
    /// cache.tags(&["users"]).flush().await?;
    /// assert_eq!(cache.tags(&["users", "posts"]).get::<i32>("a").await?, None);
    /// assert_eq!(cache.tags(&["posts"]).get::<i32>("b").await?, Some(2));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The backend failing; the tags before the failing one are flushed already.
    pub async fn flush(&self) -> Result<()> {
        let op = self.cache.op(OpName::TaggedFlush, "");
        op.run(async {
            for tag in self.tags.iter() {
                let version = Bytes::from(keys::token());
                op.put(&keys::internal(Record::Tag, tag), version, None)
                    .await?;
                op.event_on(EventKind::Flushed, tag);
            }
            Ok(())
        })
        .await
    }

    /// The storage key of the operation's key under the current versions of these tags.
    async fn entry_key(&self, op: &Op<'_>) -> Result<StoreKey<'static>> {
        keys::check(op.key())?;
        for tag in self.tags.iter() {
            keys::check(tag)?;
        }
        let tag_keys: Vec<StoreKey<'static>> = self
            .tags
            .iter()
            .map(|t| keys::internal(Record::Tag, t))
            .collect();
        let mut versions = op.many(&tag_keys).await?;
        for (version, at) in versions.iter_mut().zip(&tag_keys) {
            if version.is_none() {
                *version = Some(new_version(op, at).await?);
            }
        }
        let mut namespace = blake3::Hasher::new();
        for (tag, version) in self.tags.iter().zip(&versions) {
            let version = version.as_deref().unwrap_or_default();
            namespace.update(&(tag.len() as u64).to_le_bytes());
            namespace.update(tag.as_bytes());
            namespace.update(&(version.len() as u64).to_le_bytes());
            namespace.update(version);
        }
        let namespace = namespace.finalize().to_hex();
        let name = format!("{}:{}", &namespace[..32], op.key());
        Ok(keys::internal(Record::Tagged, &name))
    }
}

/// Gives a tag its first version; if another caller just did, uses theirs.
async fn new_version(op: &Op<'_>, at: &StoreKey<'_>) -> Result<Bytes> {
    let version = Bytes::from(keys::token());
    if op.add(at, version.clone(), None).await? {
        return Ok(version);
    }
    match op.get(at).await? {
        Some(theirs) => Ok(theirs),
        // Flushed between the two calls: ours is as good as any.
        None => {
            op.put(at, version.clone(), None).await?;
            Ok(version)
        }
    }
}

impl TaggedCache {
    // ---- bytes stored as they are (see cache/raw.rs) ----

    /// [`Cache::get_bytes`] under these tags: `None` once any of them was flushed.
    ///
    /// # Errors
    ///
    /// As [`Cache::get_bytes`].
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Bytes>> {
        let op = self.cache.op(OpName::TaggedGet, key);
        op.run(async { op.read_bytes(&self.entry_key(&op).await?).await })
            .await
    }

    /// [`Cache::put_bytes`] under these tags.
    ///
    /// # Errors
    ///
    /// As [`Cache::put_bytes`].
    pub async fn put_bytes(&self, key: &str, bytes: &[u8], ttl: Duration) -> Result<()> {
        let op = self.cache.op(OpName::TaggedPut, key);
        op.run(async {
            let at = self.entry_key(&op).await?;
            op.write_bytes(&at, bytes, ttl).await
        })
        .await
    }
}
