//! Atomic locks stored in the cache's backend: one holder at a time across every task and,
//! on the file and Redis drivers, every process that shares the backend.

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;

use crate::{
    Cache, ErrorKind, EventKind, Result,
    cache::OpName,
    cache::observe::KeyHash,
    keys,
    keys::{Record, StoreKey},
};

/// A named lock in a cache's backend, made by [`Cache::lock`].
///
/// A `Lock` is only a name and a TTL; acquiring it gives a [`LockGuard`] that owns it under a
/// fresh random owner token. Only that owner can release it, so a holder whose lock expired
/// (its TTL ran out while it worked) cannot release the lock of the next holder. Lock names
/// live apart from cache keys: `lock("x")` never touches the entry `"x"`.
///
/// | driver | acquire                                  | release                          |
/// |--------|------------------------------------------|----------------------------------|
/// | array  | insert-if-absent under the entry's lock  | remove-if-owner under the same   |
/// | file   | create-if-absent under an OS file lock   | remove-if-owner under the same   |
/// | redis  | `SET key owner NX PX ttl`                | a compare-and-delete Lua script  |
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use jtc_cache::{ArrayDriver, Cache};
/// use std::time::Duration;
///
/// let cache = Cache::new(ArrayDriver::new());
/// let lock = cache.lock("reports:nightly", Duration::from_secs(30));
///
/// if let Some(guard) = lock.try_acquire().await? {
///     // Nobody else gets the lock until it is released or 30 s pass.
///     assert!(lock.try_acquire().await?.is_none());
///     guard.release().await?;
/// }
///
/// // Wait up to 5 s for the lock, then give up with ErrorKind::LockTimeout.
/// let guard = lock.acquire_timeout(Duration::from_secs(5)).await?;
/// guard.release().await?;
/// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Lock {
    cache: Cache,
    name: Arc<str>,
    key: Arc<StoreKey<'static>>,
    ttl: Option<Duration>,
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// The lock called `name`, held for at most `ttl` once acquired (it then expires by
    /// itself, so a crashed holder cannot keep it forever). A zero `ttl` is an
    /// [`ErrorKind::ZeroLockTtl`] when acquiring.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// let lock = cache.lock("invoices", Duration::from_secs(30));
    /// assert_eq!(lock.name(), "invoices");
    /// assert!(lock.try_acquire().await?.is_some());
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn lock(&self, name: &str, ttl: Duration) -> Lock {
        self.make_lock(name, Some(ttl))
    }

    /// The lock called `name`, held until released: a holder that dies without releasing
    /// keeps it until someone calls [`Lock::force_release`]. Prefer [`lock`](Self::lock).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// let lock = cache.lock_forever("migration");
    /// let guard = lock.try_acquire().await?.unwrap();
    /// assert!(guard.release().await?);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn lock_forever(&self, name: &str) -> Lock {
        self.make_lock(name, None)
    }

    /// The guard of a lock acquired elsewhere (another task or process) under `owner`, the
    /// token that holder got from [`LockGuard::owner`]: releasing it releases their
    /// acquisition, if it is still theirs.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache};
    /// # use std::time::Duration;
    /// # let cache = Cache::new(ArrayDriver::new());
    /// let guard = cache.lock("import", Duration::from_secs(60)).try_acquire().await?.unwrap();
    /// let owner: String = guard.keep(); // hand the token to the worker that finishes the job
    ///
    /// // ... in the worker:
    /// assert!(cache.restore_lock("import", &owner).release().await?);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn restore_lock(&self, name: &str, owner: &str) -> LockGuard {
        let lock = self.make_lock(name, None);
        LockGuard {
            lock,
            owner: owner.to_owned(),
            armed: true,
        }
    }

    fn make_lock(&self, name: &str, ttl: Option<Duration>) -> Lock {
        Lock {
            cache: self.clone(),
            name: Arc::from(name),
            key: Arc::new(keys::internal(Record::Lock, name)),
            ttl,
        }
    }
}

impl Lock {
    /// The lock's name.
    ///
    /// ```
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// assert_eq!(cache.lock("reports", Duration::from_secs(5)).name(), "reports");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Takes the lock if it is free; `None` if someone holds it.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// let lock = cache.lock("job", Duration::from_secs(30));
    /// let guard = lock.try_acquire().await?.expect("free");
    /// assert!(lock.try_acquire().await?.is_none(), "held");
    /// guard.release().await?;
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ZeroLockTtl`] for a lock made with a zero TTL, [`ErrorKind::KeyTooLong`]
    /// for a name over [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES), or the backend failing.
    pub async fn try_acquire(&self) -> Result<Option<LockGuard>> {
        keys::check(&self.name)?;
        if self.ttl.is_some_and(|ttl| ttl.is_zero()) {
            return Err(ErrorKind::ZeroLockTtl {
                name: self.name.to_string(),
            }
            .into());
        }
        let op = self.cache.op(OpName::LockAcquire, &self.name);
        op.run(async {
            let owner = keys::token();
            let value = Bytes::from(owner.clone());
            if !op.add(&self.key, value, self.ttl).await? {
                return Ok(None);
            }
            op.event(EventKind::LockAcquired);
            tracing::debug!(lock_hash = %KeyHash(&self.name), "lock acquired");
            Ok(Some(LockGuard {
                lock: self.clone(),
                owner,
                armed: true,
            }))
        })
        .await
    }

    /// Takes the lock, waiting up to `wait` for it to become free, then gives up with
    /// [`ErrorKind::LockTimeout`]. Retries with a growing pause (5 ms up to 200 ms, jittered).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// let lock = cache.lock("job", Duration::from_secs(30));
    /// let held = lock.try_acquire().await?.unwrap();
    /// let err = lock.acquire_timeout(Duration::from_millis(50)).await.unwrap_err();
    /// assert!(matches!(err.kind(), jtc_cache::ErrorKind::LockTimeout { .. }));
    /// held.release().await?;
    /// let guard = lock.acquire_timeout(Duration::from_millis(50)).await?;
    /// guard.release().await?;
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::LockTimeout`] when `wait` runs out; otherwise as
    /// [`try_acquire`](Self::try_acquire).
    pub async fn acquire_timeout(&self, wait: Duration) -> Result<LockGuard> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(guard) = self.try_acquire().await? {
                return Ok(guard);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ErrorKind::LockTimeout {
                    name: self.name.to_string(),
                    waited: wait,
                }
                .into());
            }
            tokio::time::sleep(crate::clock::jittered(pause).min(deadline - now)).await;
            pause = (pause * 2).min(Duration::from_millis(200));
        }
    }

    /// The owner token of whoever holds the lock now, or `None` when it is free.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// let lock = cache.lock("job", Duration::from_secs(30));
    /// assert_eq!(lock.owner().await?, None);
    /// let guard = lock.try_acquire().await?.unwrap();
    /// assert_eq!(lock.owner().await?.as_deref(), Some(guard.owner()));
    /// # guard.release().await?;
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The backend failing.
    pub async fn owner(&self) -> Result<Option<String>> {
        let op = self.cache.op(OpName::LockOwner, &self.name);
        let held = op.run(op.get(&self.key)).await?;
        Ok(held.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    }

    /// Releases the lock whoever holds it; returns whether it was held. For operators
    /// clearing a lock left by a holder that died; holders release through their guard.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// let lock = cache.lock_forever("stuck");
    /// let _ = lock.try_acquire().await?.unwrap().keep(); // a holder that died
    /// assert!(lock.force_release().await?);
    /// assert!(lock.try_acquire().await?.is_some());
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The backend failing.
    pub async fn force_release(&self) -> Result<bool> {
        let op = self.cache.op(OpName::LockForceRelease, &self.name);
        op.run(async {
            let released = op.forget(&self.key).await?;
            if released {
                op.event(EventKind::LockReleased);
            }
            Ok(released)
        })
        .await
    }

    async fn release_as(&self, owner: &str) -> Result<bool> {
        let op = self.cache.op(OpName::LockRelease, &self.name);
        op.run(async {
            let released = op.forget_if(&self.key, owner.as_bytes()).await?;
            if released {
                op.event(EventKind::LockReleased);
            }
            Ok(released)
        })
        .await
    }
}

/// An acquired lock. Release it with [`release`](Self::release); a guard dropped without
/// releasing releases in the background (on a Tokio runtime), and [`keep`](Self::keep)
/// leaves the lock held for someone else to release.
#[must_use = "a lock guard dropped at once releases the lock at once"]
pub struct LockGuard {
    lock: Lock,
    owner: String,
    armed: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.lock.name)
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// The lock's name.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// let guard = cache.lock("job", Duration::from_secs(30)).try_acquire().await?.unwrap();
    /// assert_eq!(guard.name(), "job");
    /// # guard.release().await?;
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn name(&self) -> &str {
        &self.lock.name
    }

    /// This acquisition's owner token: give it to [`Cache::restore_lock`] elsewhere to release
    /// the lock from there.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// let guard = cache.lock("job", Duration::from_secs(30)).try_acquire().await?.unwrap();
    /// assert_eq!(guard.owner().len(), 32, "128 random bits in hex");
    /// # guard.release().await?;
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Releases the lock if this acquisition still holds it; returns whether it did. `false`
    /// means the lock expired (and may now be someone else's, which this leaves alone).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// let lock = cache.lock("job", Duration::from_secs(30));
    /// let guard = lock.try_acquire().await?.unwrap();
    /// assert!(guard.release().await?);
    /// assert_eq!(lock.owner().await?, None);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The backend failing; the lock then stays held until its TTL runs out.
    pub async fn release(mut self) -> Result<bool> {
        self.armed = false;
        self.lock.release_as(&self.owner).await
    }

    /// Gives up the guard without releasing: the lock stays held until its TTL runs out or
    /// someone releases it with the returned owner token (see [`Cache::restore_lock`]).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// let lock = cache.lock("job", Duration::from_secs(30));
    /// let owner = lock.try_acquire().await?.unwrap().keep();
    /// assert_eq!(lock.owner().await?, Some(owner));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn keep(mut self) -> String {
        self.armed = false;
        std::mem::take(&mut self.owner)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                lock_hash = %KeyHash(&self.lock.name),
                "a lock guard was dropped outside a Tokio runtime; the lock stays until it expires"
            );
            return;
        };
        let lock = self.lock.clone();
        let owner = std::mem::take(&mut self.owner);
        runtime.spawn(async move {
            if let Err(error) = lock.release_as(&owner).await {
                tracing::warn!(
                    lock_hash = %KeyHash(&lock.name),
                    error = %crate::error::chain(&error),
                    "releasing a dropped lock guard failed; the lock stays until it expires"
                );
            }
        });
    }
}
