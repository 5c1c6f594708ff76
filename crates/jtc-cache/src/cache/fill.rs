//! `remember`: load a missing value once, and store it.
//!
//! A miss is filled once per process — concurrent callers of one key join one flight (the
//! cache's [`SingleFlight`](crate::single_flight::SingleFlight)) — and, with stampede
//! protection on, once across processes: the leader takes a short fill lock in the backend,
//! and other processes wait a bounded time for its value instead of loading their own.

use std::{convert::Infallible, future::Future, time::Duration};

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use super::{
    OpName,
    filler::FillLock,
    fresh,
    observe::{KeyHash, Op},
};
use crate::{
    Cache, ErrorKind, Result,
    codec::decode,
    keys,
    keys::{Record, StoreKey},
};

/// How a filled value is stored: its TTL, and for `flexible` how long it stays fresh.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Keep {
    pub(crate) ttl: Option<Duration>,
    pub(crate) fresh: Option<Duration>,
}

/// What the fill lock of a miss came to.
enum Fill {
    /// This process holds the lock (with this token): load and store.
    Leader(String),
    /// Another process stored the value while this one waited.
    Done(Bytes),
    /// No lock: protection is off, or the wait ran out.
    Unguarded,
}

impl Cache {
    /// The value at `key`; on a miss, the value `load` computes, stored for `ttl`.
    ///
    /// Concurrent calls for the same key on this `Cache` (and its clones) share one call of
    /// `load`: the first caller computes, the others wait for its value. Concurrent misses in
    /// other processes sharing the backend (file, Redis) share that call too, through a short
    /// lock in the backend; see [`stampede_protection`](Self::stampede_protection).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// let ttl = Duration::from_secs(60);
    /// let first: String = cache.remember("greeting", ttl, || async { "hello".to_owned() }).await?;
    /// let second: String = cache.remember("greeting", ttl, || async { unreachable!() }).await?;
    /// assert_eq!((first.as_str(), second.as_str()), ("hello", "hello"));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::KeyTooLong`], a value that does not encode or is too large, or the backend
    /// failing (on the read, the fill lock or the write).
    pub async fn remember<T, F, Fut>(&self, key: &str, ttl: Duration, load: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Remember, key);
        op.run(op.remember(&at, Some(ttl), infallible(load))).await
    }

    /// Like [`remember`](Self::remember), with no expiry.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache};
    /// let cache = Cache::new(ArrayDriver::new());
    /// let n: u32 = cache.remember_forever("answer", || async { 42 }).await?;
    /// assert_eq!((n, cache.get::<u32>("answer").await?), (42, Some(42)));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`remember`](Self::remember).
    pub async fn remember_forever<T, F, Fut>(&self, key: &str, load: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Remember, key);
        op.run(op.remember(&at, None, infallible(load))).await
    }

    /// Like [`remember`](Self::remember), for a loader that can fail.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache, ErrorKind}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// let ttl = Duration::from_secs(60);
    /// let failed = cache.try_remember::<u32, _, _, _>("k", ttl, || async { Err("db down") }).await;
    /// assert!(matches!(failed.unwrap_err().kind(), ErrorKind::Loader { .. }));
    /// assert!(!cache.has("k").await?, "nothing was stored");
    /// let n: u32 = cache.try_remember("k", ttl, || async { Ok::<_, std::io::Error>(7) }).await?;
    /// assert_eq!(n, 7);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// A failure of `load` is [`ErrorKind::Loader`] and nothing is stored (a concurrent caller
    /// then tries its own loader); otherwise as [`remember`](Self::remember).
    pub async fn try_remember<T, E, F, Fut>(&self, key: &str, ttl: Duration, load: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Remember, key);
        op.run(op.remember(&at, Some(ttl), load)).await
    }
}

impl Op<'_> {
    /// The value at `at`, or `load`'s, stored for `ttl`.
    pub(crate) async fn remember<T, E, F, Fut>(
        &self,
        at: &StoreKey<'_>,
        ttl: Option<Duration>,
        load: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if let Some(value) = self.read(at).await? {
            return Ok(value);
        }
        self.fill(at, Keep { ttl, fresh: None }, load).await
    }

    /// After a miss: load once per process (the flight), once across processes (the fill
    /// lock), store, and hand every waiting caller the value.
    pub(crate) async fn fill<T, E, F, Fut>(
        &self,
        at: &StoreKey<'_>,
        keep: Keep,
        load: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let computed = self
            .cache()
            .filler()
            .flights
            .run(at.as_str(), || self.lead_fill(at, keep, load))
            .await;
        decode(&computed?).map_err(|reason| {
            ErrorKind::Encode {
                key: self.key().to_owned(),
                source: format!("the value does not decode back into its own type: {reason}")
                    .into(),
            }
            .into()
        })
    }

    /// The leader's part of a fill: take the fill lock (or learn that someone else filled the
    /// entry meanwhile), load, encode, store, release.
    async fn lead_fill<T, E, F, Fut>(&self, at: &StoreKey<'_>, keep: Keep, load: F) -> Result<Bytes>
    where
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let lock_key = keys::internal(Record::Fill, at.as_str());
        let owner = match self.fill_lock::<T>(at, &lock_key).await? {
            Fill::Done(bytes) => return Ok(bytes),
            Fill::Leader(owner) => Some(owner),
            Fill::Unguarded => None,
        };
        let stored = self.load_and_store(at, keep, load).await;
        if let Some(owner) = owner {
            self.release_quietly(&lock_key, &owner).await;
        }
        stored
    }

    /// Runs `load` and stores its value (and, for `flexible`, the freshness marker).
    pub(crate) async fn load_and_store<T, E, F, Fut>(
        &self,
        at: &StoreKey<'_>,
        keep: Keep,
        load: F,
    ) -> Result<Bytes>
    where
        T: Serialize + DeserializeOwned,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let value = load().await.map_err(|e| ErrorKind::Loader {
            key: self.key().to_owned(),
            source: e.into(),
        })?;
        let bytes = self.cache().encode(self.key(), &value)?;
        self.store(at, bytes.clone(), keep.ttl).await?;
        // A zero TTL removed the entry: nothing to mark fresh.
        let stored = !keep.ttl.is_some_and(|t| t.is_zero());
        if let Some(fresh) = keep.fresh.filter(|_| stored) {
            fresh::mark(self, at, fresh).await?;
        }
        Ok(bytes)
    }

    /// The stored bytes at `at` if they decode as a `T`.
    async fn readable<T: DeserializeOwned>(&self, at: &StoreKey<'_>) -> Result<Option<Bytes>> {
        let bytes = self.get(at).await?;
        Ok(bytes.filter(|bytes| decode::<T>(bytes).is_ok()))
    }

    /// Takes the fill lock of `at`, or waits for whoever holds it to store the value. Taking
    /// it is followed by a fresh read: the previous holder may have stored just before
    /// releasing. With the lock, a miss costs five backend operations (read, take, read,
    /// write, release); without, three (read, read, write).
    async fn fill_lock<T: DeserializeOwned>(
        &self,
        at: &StoreKey<'_>,
        lock_key: &StoreKey<'_>,
    ) -> Result<Fill> {
        let Some(FillLock { hold, wait }) = self.cache().filler().lock else {
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
            if self.add(lock_key, owner.clone().into(), Some(hold)).await? {
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
                    key_hash = %KeyHash(at.as_str()),
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
    pub(crate) async fn release_quietly(&self, lock_key: &StoreKey<'_>, owner: &str) {
        if let Err(error) = self.forget_if(lock_key, owner.as_bytes()).await {
            crate::outage::set_aside(
                &error,
                &KeyHash(lock_key.as_str()),
                "could not release an internal lock; it will expire by itself",
            );
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
