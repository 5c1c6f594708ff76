//! `RateLimiter`: the limiter without the layer — in a login handler keyed by e-mail, in a job,
//! in `middleware::from_fn`. Laravel's `RateLimiter::hit / tooManyAttempts / clear`.

use std::{fmt, sync::Arc};

use jtc_cache::{Cache, Clock, MonotonicClock};

use crate::{
    Decision, Limit, Limits, StoreErrorPolicy,
    key::CounterKey,
    limiter::{Counters, Plan},
};

/// Keys the in-process counters keep at most, unless told otherwise.
pub(crate) const DEFAULT_MEMORY_CAPACITY: u64 = 100_000;

/// The name of a limiter that was not given one.
const DEFAULT_NAME: &str = "limiter";

/// Counts hits on keys you choose, with the algorithms, keys and stores of
/// [`ThrottleLayer`](crate::ThrottleLayer): in process memory, or in a shared cache where every
/// app instance sees one count.
///
/// Cheap to clone; clones share the counters. A limiter with the same name and cache as a
/// layer — or the one [`ThrottleLayer::limiter`](crate::ThrottleLayer::limiter) hands out —
/// reads and clears what that layer counts under [`Limit::by`] keys.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use jtc_cache::{ArrayDriver, Cache};
/// use jtc_throttle::{Limit, RateLimiter};
///
/// let cache = Cache::new(ArrayDriver::new()); // Cache::from_env() in an app
/// let limiter = RateLimiter::with_cache(cache.clone());
/// let login = Limit::per_minute(2);
/// for _ in 0..2 {
///     assert!(limiter.hit("login:ana@example.com", &login).await?.allowed());
/// }
/// let third = limiter.hit("login:ana@example.com", &login).await?;
/// assert!(!third.allowed());
/// let wait = third.retry_after(); // until the window ends: a minute less the time spent
/// assert!(wait > std::time::Duration::from_secs(59) && wait <= std::time::Duration::from_secs(60));
/// limiter.clear("login:ana@example.com").await?; // she logged in: start over
/// assert_eq!(limiter.check("login:ana@example.com", &login).await?.remaining(), 2);
/// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
#[must_use]
pub struct RateLimiter {
    counters: Arc<Counters>,
}

impl RateLimiter {
    /// Counts in process memory (bounded, exact within the process).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_throttle::{Limit, RateLimiter};
    /// let limiter = RateLimiter::memory();
    /// assert!(limiter.hit("job:reindex", &Limit::per_hour(1)).await?.allowed());
    /// assert!(!limiter.hit("job:reindex", &Limit::per_hour(1)).await?.allowed());
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn memory() -> Self {
        Self::build(None, DEFAULT_NAME, Arc::new(MonotonicClock::new()))
    }

    /// Counts in `cache` (file, Redis, Redis Cluster): one atomic step per call, shared by
    /// every instance using the same cache. Rejections are remembered in process until they
    /// end (see [`ThrottleLayer::deny_cache`](crate::ThrottleLayer::deny_cache)).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache};
    /// use jtc_throttle::{Limit, RateLimiter};
    /// let cache = Cache::new(ArrayDriver::new());
    /// let one = RateLimiter::with_cache(cache.clone());
    /// let other = RateLimiter::with_cache(cache); // another app instance
    /// assert!(one.hit("k", &Limit::per_minute(1)).await?.allowed());
    /// assert!(!other.hit("k", &Limit::per_minute(1)).await?.allowed());
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn with_cache(cache: Cache) -> Self {
        Self::build(Some(cache), DEFAULT_NAME, Arc::new(MonotonicClock::new()))
    }

    /// Names the limiter: its counters are kept under `throttle:<name>:<key>`. Default:
    /// `limiter`. Give it a layer's name to reach that layer's counters.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache};
    /// use jtc_throttle::{Limit, RateLimiter};
    /// let cache = Cache::new(ArrayDriver::new());
    /// let limiter = RateLimiter::with_cache(cache.clone()).name("login");
    /// limiter.hit("ana", &Limit::per_minute(5)).await?;
    /// assert!(cache.has("throttle:login:ana").await?);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn name(self, name: &str) -> Self {
        let clock = Arc::clone(&self.counters.clock);
        Self::build(self.counters.cache.clone(), name, clock)
    }

    /// The clock for windows in memory and for [`Decision::reset_at`]; tests pass a
    /// [`jtc_cache::ManualClock`]. A cache counts on its own clock (Redis: the server's).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_cache::ManualClock;
    /// use jtc_throttle::{Limit, RateLimiter};
    /// use std::time::Duration;
    /// let clock = ManualClock::new(0);
    /// let limiter = RateLimiter::memory().clock(clock.clone());
    /// limiter.hit("k", &Limit::per_second(1)).await?;
    /// clock.advance(Duration::from_secs(1));
    /// assert!(limiter.hit("k", &Limit::per_second(1)).await?.allowed());
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn clock(self, clock: impl Clock) -> Self {
        let prefix = self.counters.prefix.clone();
        Self {
            counters: Arc::new(Counters::new(
                self.counters.cache.clone(),
                prefix,
                Arc::new(clock),
                DEFAULT_MEMORY_CAPACITY,
                true,
                StoreErrorPolicy::FailClosed,
            )),
        }
    }

    fn build(cache: Option<Cache>, name: &str, clock: Arc<dyn Clock>) -> Self {
        Self {
            counters: Arc::new(Counters::new(
                cache,
                format!("throttle:{name}:"),
                clock,
                DEFAULT_MEMORY_CAPACITY,
                true,
                StoreErrorPolicy::FailClosed,
            )),
        }
    }

    pub(crate) fn from_counters(counters: Arc<Counters>) -> Self {
        Self { counters }
    }

    /// Counts one hit on `key` against `limits` (a [`Limit`], [`Limits`], or a slice of
    /// them; all must admit) and says whether it was admitted.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_throttle::{Limit, RateLimiter};
    /// let limiter = RateLimiter::memory();
    /// let limits = [Limit::per_second(1), Limit::per_minute(10)];
    /// assert_eq!(limiter.hit("api:token-1", &limits).await?.remaining(), 0);
    /// assert!(!limiter.hit("api:token-1", &limits).await?.allowed());
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The cache's error when it cannot be reached (or the key is too long for it); nothing
    /// is counted then. In memory, never.
    pub async fn hit<L>(&self, key: &str, limits: &L) -> jtc_cache::Result<Decision>
    where
        L: AsRef<[Limit]> + ?Sized,
    {
        self.run(key, limits.as_ref(), true).await
    }

    /// What a hit on `key` would get now, counting nothing (Laravel's `tooManyAttempts` and
    /// `remaining`; the `limits` library's `test`).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_throttle::{Limit, RateLimiter};
    /// let limiter = RateLimiter::memory();
    /// let limit = Limit::per_minute(3);
    /// limiter.hit("k", &limit).await?;
    /// for _ in 0..5 {
    ///     assert_eq!(limiter.check("k", &limit).await?.remaining(), 2);
    /// }
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`hit`](Self::hit).
    pub async fn check<L>(&self, key: &str, limits: &L) -> jtc_cache::Result<Decision>
    where
        L: AsRef<[Limit]> + ?Sized,
    {
        self.run(key, limits.as_ref(), false).await
    }

    /// Forgets every count on `key` (all its limits), e.g. after a successful login.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_throttle::{Limit, RateLimiter};
    /// let limiter = RateLimiter::memory();
    /// limiter.hit("k", &Limit::per_hour(1)).await?;
    /// limiter.clear("k").await?;
    /// assert!(limiter.hit("k", &Limit::per_hour(1)).await?.allowed());
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// The cache's error when it cannot be reached.
    pub async fn clear(&self, key: &str) -> jtc_cache::Result<()> {
        self.counters.clear(&CounterKey::custom(key)).await
    }

    /// What the limiter's in-process counters hold now: how many keys, and the bytes they
    /// take. Every key costs a bounded amount, whatever its length: a key longer than
    /// [`MAX_KEY_TEXT_BYTES`](crate::MAX_KEY_TEXT_BYTES) is kept as a fixed-length digest.
    /// With a cache, this is the fallback counters of the store-error policy.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use jtc_throttle::{Limit, RateLimiter};
    /// let limiter = RateLimiter::memory();
    /// limiter.hit(&"x".repeat(100_000), &Limit::per_minute(5)).await?;
    /// let usage = limiter.memory_usage();
    /// assert_eq!(usage.keys, 1);
    /// assert!(usage.bytes < 1_000, "{usage:?}");
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn memory_usage(&self) -> MemoryUsage {
        let (keys, bytes) = self.counters.memory.footprint();
        MemoryUsage { keys, bytes }
    }

    async fn run(&self, key: &str, limits: &[Limit], consume: bool) -> jtc_cache::Result<Decision> {
        let now = self.counters.clock.now_ms();
        let plan = Plan::new(Limits::from(limits.to_vec()));
        let default = CounterKey::custom(key);
        match &self.counters.cache {
            Some(cache) => {
                let counters = &self.counters;
                counters
                    .try_in_cache(cache, &plan, &default, now, consume)
                    .await
            }
            None => Ok(self.counters.in_memory(&plan, &default, now, consume)),
        }
    }
}

/// What a limiter's in-process counters hold ([`RateLimiter::memory_usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryUsage {
    /// Keys (clients, or custom keys) with a counter.
    pub keys: usize,
    /// The bytes those counters and their keys take.
    pub bytes: usize,
}

impl AsRef<[Limit]> for Limit {
    fn as_ref(&self) -> &[Limit] {
        std::slice::from_ref(self)
    }
}

impl AsRef<[Limit]> for Limits {
    fn as_ref(&self) -> &[Limit] {
        self.as_slice()
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("prefix", &self.counters.prefix)
            .field("cache", &self.counters.cache)
            .finish_non_exhaustive()
    }
}
