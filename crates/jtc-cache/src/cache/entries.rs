//! Reading and writing entries: `get`, `has`, `has_many`, `many`, `pull`, `put`, `forever`, `add`,
//! `put_many`, `touch`, `forget`, `flush`, `prune`.
//!
//! # Errors
//!
//! Every operation here returns [`ErrorKind::KeyTooLong`] for a key over
//! [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES), and the backend's error when it fails: an
//! [`ErrorKind::Io`] from the file driver, an [`ErrorKind::Redis`] or [`ErrorKind::Timeout`]
//! from Redis. Writes also return [`ErrorKind::Encode`] for a value serde cannot encode and
//! [`ErrorKind::ValueTooLarge`] above [`Cache::max_value_size`].

use std::time::Duration;

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use super::{
    OpName,
    observe::{KeyHash, Op},
};
use crate::{Cache, EventKind, Result, codec::decode, keys, keys::StoreKey};

#[cfg(doc)]
use crate::ErrorKind;

impl Cache {
    /// The value at `key`, or `None` when it is missing, expired or undecodable as `T`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.put("theme", &"dark", Duration::from_secs(60)).await?;
    /// assert_eq!(cache.get::<String>("theme").await?.as_deref(), Some("dark"));
    /// assert_eq!(cache.get::<String>("missing").await?, None);
    /// assert_eq!(cache.get::<u64>("theme").await?, None, "not a u64: a miss, and removed");
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::KeyTooLong`] for a key over [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES), or
    /// the backend's error: [`ErrorKind::Io`] from the file driver, [`ErrorKind::Redis`] or
    /// [`ErrorKind::Timeout`] from Redis. The other operations fail the same ways.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Get, key);
        op.run(op.read(&at)).await
    }

    /// Whether a live entry exists at `key`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.put("k", &1, Duration::from_secs(60)).await?;
    /// assert!(cache.has("k").await?);
    /// assert!(!cache.has("other").await?);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// A key too long, or the backend failing.
    pub async fn has(&self, key: &str) -> Result<bool> {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Has, key);
        op.run(op.has_entry(&at)).await
    }

    /// Whether each of `keys` holds a live entry, in order, with one read of the backend
    /// (`MGET` on Redis) instead of one per key. Values are not decoded.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.put("a", &1, Duration::from_secs(60)).await?;
    /// assert_eq!(cache.has_many(&["a", "b"]).await?, vec![true, false]);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// A key too long, or the backend failing.
    pub async fn has_many(&self, keys: &[&str]) -> Result<Vec<bool>> {
        let at = keys
            .iter()
            .map(|key| keys::entry(key))
            .collect::<Result<Vec<_>>>()?;
        let op = self.op(OpName::Has, "");
        op.run(async {
            let stored = op.many(&at).await?;
            Ok(stored
                .iter()
                .zip(keys)
                .map(|(bytes, key)| {
                    self.op(OpName::Has, key).read_event(bytes.is_some());
                    bytes.is_some()
                })
                .collect())
        })
        .await
    }

    /// The values of several keys, in order; `None` for each miss.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.put_many(&[("a", 1), ("c", 3)], Duration::from_secs(60)).await?;
    /// assert_eq!(cache.many::<i32>(&["a", "b", "c"]).await?, vec![Some(1), None, Some(3)]);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// A key too long, or the backend failing; nothing is returned for the other keys then.
    pub async fn many<T: DeserializeOwned>(&self, keys: &[&str]) -> Result<Vec<Option<T>>> {
        let at = keys
            .iter()
            .map(|key| keys::entry(key))
            .collect::<Result<Vec<_>>>()?;
        let op = self.op(OpName::Many, "");
        op.run(async {
            let stored = op.many(&at).await?;
            let mut values = Vec::with_capacity(stored.len());
            for ((key, at), bytes) in keys.iter().zip(&at).zip(stored) {
                values.push(
                    self.op(OpName::Many, key)
                        .decode_or_forget(at, bytes)
                        .await?,
                );
            }
            Ok(values)
        })
        .await
    }

    /// Removes `key` and returns its value, atomically.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.put("once", &"token", Duration::from_secs(60)).await?;
    /// assert_eq!(cache.pull::<String>("once").await?.as_deref(), Some("token"));
    /// assert_eq!(cache.pull::<String>("once").await?, None);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// A key too long, or the backend failing.
    pub async fn pull<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Pull, key);
        op.run(async {
            let value = op.pull(&at).await?.and_then(|bytes| {
                op.event(EventKind::Forgotten);
                op.decode_logged(&bytes)
            });
            op.read_event(value.is_some());
            Ok(value)
        })
        .await
    }

    /// Stores `value` for `ttl`. A zero `ttl` removes the key instead.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.put("k", &[1, 2, 3], Duration::from_secs(60)).await?;
    /// assert_eq!(cache.get::<Vec<u8>>("k").await?, Some(vec![1, 2, 3]));
    /// cache.put("k", &0, Duration::ZERO).await?; // a zero TTL removes
    /// assert!(!cache.has("k").await?);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get), and [`ErrorKind::Encode`] for a value serde cannot encode or
    /// [`ErrorKind::ValueTooLarge`] above [`max_value_size`](Self::max_value_size). Nothing is
    /// stored then.
    pub async fn put<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<()> {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Put, key);
        op.run(op.write(&at, value, Some(ttl))).await
    }

    /// Stores `value` with no expiry.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache};
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.forever("site:name", &"jtc").await?;
    /// assert_eq!(cache.get::<String>("site:name").await?.as_deref(), Some("jtc"));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put).
    pub async fn forever<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Forever, key);
        op.run(op.write(&at, value, None)).await
    }

    /// Stores `value` only if `key` holds no live entry, atomically; returns whether it stored.
    /// A zero `ttl` stores nothing and returns `false`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// assert!(cache.add("k", &"first", Duration::from_secs(60)).await?);
    /// assert!(!cache.add("k", &"second", Duration::from_secs(60)).await?);
    /// assert_eq!(cache.get::<String>("k").await?.as_deref(), Some("first"));
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
        let at = keys::entry(key)?;
        let op = self.op(OpName::Add, key);
        op.run(op.add_value(&at, value, ttl)).await
    }

    /// Stores several values with one `ttl`. A zero `ttl` removes the keys instead.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.put_many(&[("a", "x"), ("b", "y")], Duration::from_secs(60)).await?;
    /// assert_eq!(cache.get::<String>("b").await?.as_deref(), Some("y"));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put). A key or value that fails to encode stores none of the entries.
    pub async fn put_many<T: Serialize>(&self, entries: &[(&str, T)], ttl: Duration) -> Result<()> {
        let op = self.op(OpName::PutMany, "");
        op.run(async {
            if ttl.is_zero() {
                for (key, _) in entries {
                    self.op(OpName::PutMany, key)
                        .remove(&keys::entry(key)?)
                        .await?;
                }
                return Ok(());
            }
            let encoded = entries
                .iter()
                .map(|(key, value)| Ok((keys::entry(key)?, self.encode(key, value)?)))
                .collect::<Result<Vec<_>>>()?;
            op.put_many(encoded, Some(ttl)).await?;
            for (key, _) in entries {
                op.event_on(EventKind::Written, key);
            }
            Ok(())
        })
        .await
    }

    /// Gives the live entry at `key` a new `ttl` (zero removes it); returns whether it was live.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.put("session", &"data", Duration::from_secs(60)).await?;
    /// assert!(cache.touch("session", Duration::from_secs(3600)).await?);
    /// assert!(!cache.touch("missing", Duration::from_secs(3600)).await?);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// A key too long, or the backend failing.
    pub async fn touch(&self, key: &str, ttl: Duration) -> Result<bool> {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Touch, key);
        op.run(async {
            let live = op.touch(&at, Some(ttl)).await?;
            if live {
                op.event(EventKind::Written);
            }
            Ok(live)
        })
        .await
    }

    /// Removes `key`; returns whether a live entry was there.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.put("k", &1, Duration::from_secs(60)).await?;
    /// assert!(cache.forget("k").await?);
    /// assert!(!cache.forget("k").await?);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// A key too long, or the backend failing.
    pub async fn forget(&self, key: &str) -> Result<bool> {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Forget, key);
        op.run(op.remove(&at)).await
    }

    /// Removes every entry of this cache, locks and tags included. Entries of other
    /// applications sharing the backend (other files in the folder, other Redis key prefixes)
    /// are left alone.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.put("a", &1, Duration::from_secs(60)).await?;
    /// cache.flush().await?;
    /// assert!(!cache.has("a").await?);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The backend failing; some entries may be gone already.
    pub async fn flush(&self) -> Result<()> {
        let op = self.op(OpName::Flush, "");
        op.run(async {
            op.flush().await?;
            op.event(EventKind::Flushed);
            Ok(())
        })
        .await
    }

    /// Removes expired entries that nobody has read since; returns how many (0 on Redis,
    /// which expires entries by itself). They count as deletes in [`stats`](Self::stats).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache, ManualClock};
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new(0);
    /// let cache = Cache::new(ArrayDriver::builder().clock(clock.clone()).build());
    /// cache.put("short", &1, Duration::from_secs(1)).await?;
    /// clock.advance(Duration::from_secs(2));
    /// assert_eq!(cache.prune().await?, 1);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The backend failing (a folder the file driver cannot read).
    pub async fn prune(&self) -> Result<u64> {
        let op = self.op(OpName::Prune, "");
        op.run(async {
            let removed = op.prune().await?;
            op.count_deletes(removed);
            Ok(removed)
        })
        .await
    }
}

/// Typed reads and writes at a storage key, shared by the cache, its tags and its fills.
impl Op<'_> {
    /// The value at `at`, decoded; a value that does not decode is removed and is a miss.
    pub(crate) async fn read<T: DeserializeOwned>(&self, at: &StoreKey<'_>) -> Result<Option<T>> {
        let bytes = self.get(at).await?;
        self.decode_or_forget(at, bytes).await
    }

    /// Whether a live entry exists at `at`.
    pub(crate) async fn has_entry(&self, at: &StoreKey<'_>) -> Result<bool> {
        let found = self.get(at).await?.is_some();
        self.read_event(found);
        Ok(found)
    }

    /// Stores `value` at `at`; a zero `ttl` removes it instead.
    pub(crate) async fn write<T: Serialize + ?Sized>(
        &self,
        at: &StoreKey<'_>,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<()> {
        if ttl.is_some_and(|t| t.is_zero()) {
            self.remove(at).await?;
            return Ok(());
        }
        let bytes = self.cache().encode(self.key(), value)?;
        self.store(at, bytes, ttl).await
    }

    /// Stores encoded `bytes` at `at`; a zero `ttl` removes the entry instead.
    pub(crate) async fn store(
        &self,
        at: &StoreKey<'_>,
        bytes: Bytes,
        ttl: Option<Duration>,
    ) -> Result<()> {
        if ttl.is_some_and(|t| t.is_zero()) {
            self.remove(at).await?;
            return Ok(());
        }
        self.put(at, bytes, ttl).await?;
        self.event(EventKind::Written);
        Ok(())
    }

    /// Stores `value` at `at` unless a live entry is there.
    pub(crate) async fn add_value<T: Serialize + ?Sized>(
        &self,
        at: &StoreKey<'_>,
        value: &T,
        ttl: Duration,
    ) -> Result<bool> {
        if ttl.is_zero() {
            return Ok(false);
        }
        let bytes = self.cache().encode(self.key(), value)?;
        let stored = self.add(at, bytes, Some(ttl)).await?;
        if stored {
            self.event(EventKind::Written);
        }
        Ok(stored)
    }

    /// Removes the entry at `at`; returns whether it was live.
    pub(crate) async fn remove(&self, at: &StoreKey<'_>) -> Result<bool> {
        let existed = self.forget(at).await?;
        if existed {
            self.event(EventKind::Forgotten);
        }
        Ok(existed)
    }

    /// Decodes what a read found; removes an entry that does not decode.
    pub(crate) async fn decode_or_forget<T: DeserializeOwned>(
        &self,
        at: &StoreKey<'_>,
        bytes: Option<Bytes>,
    ) -> Result<Option<T>> {
        self.take_read(at, bytes, std::any::type_name::<T>(), |b| decode(&b))
            .await
    }

    /// What a read found, turned into a value by `decode`; an entry that does not decode is
    /// logged (by key hash, as `what`), removed, and a miss.
    pub(crate) async fn take_read<T>(
        &self,
        at: &StoreKey<'_>,
        bytes: Option<Bytes>,
        what: &str,
        decode: impl FnOnce(Bytes) -> std::result::Result<T, String>,
    ) -> Result<Option<T>> {
        let Some(bytes) = bytes else {
            self.read_event(false);
            return Ok(None);
        };
        let value = self.logged(what, decode(bytes));
        if value.is_none() {
            self.forget(at).await?;
        }
        self.read_event(value.is_some());
        Ok(value)
    }

    /// Decodes `bytes` as a `T`, logging (by key hash) a value that does not decode.
    pub(crate) fn decode_logged<T: DeserializeOwned>(&self, bytes: &[u8]) -> Option<T> {
        self.logged(std::any::type_name::<T>(), decode(bytes))
    }

    /// The value, or `None` with a warning naming the key's hash, `what` was asked and why it
    /// did not decode.
    fn logged<T>(&self, what: &str, decoded: std::result::Result<T, String>) -> Option<T> {
        match decoded {
            Ok(value) => Some(value),
            Err(reason) => {
                tracing::warn!(
                    driver = self.cache().driver().name(),
                    key_hash = %KeyHash(self.key()),
                    r#type = what,
                    reason,
                    "removed a cache entry that does not decode"
                );
                None
            }
        }
    }
}
