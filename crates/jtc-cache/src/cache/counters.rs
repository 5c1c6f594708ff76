//! Counters: `increment`, `decrement`, and the rate limiter's `hit`.

use std::time::Duration;

use crate::{
    Cache, ErrorKind, EventKind, Hit, RateRule, RateVerdict, Result, keys, keys::StoreKey,
};

use super::{OpName, observe::Op};

impl Cache {
    /// Adds `by` to the integer at `key` and returns the new value, atomically.
    ///
    /// A missing or expired key starts from 0 (and never expires); an existing key keeps its
    /// TTL. Integers written with [`put`](Self::put) are counters too.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// assert_eq!(cache.increment("visits", 1).await?, 1);
    /// cache.put("stock", &10, Duration::from_secs(60)).await?;
    /// assert_eq!(cache.increment("stock", 5).await?, 15);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotAnInteger`] when the stored value is not an integer and
    /// [`ErrorKind::Overflow`] past `i64`, both leaving the value as it was;
    /// [`ErrorKind::KeyTooLong`]; or the backend failing.
    pub async fn increment(&self, key: &str, by: i64) -> Result<i64> {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Increment, key);
        op.run(op.add_to(&at, by)).await
    }

    /// Subtracts `by` from the integer at `key`; see [`increment`](Self::increment).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.put("seats", &3, Duration::from_secs(60)).await?;
    /// assert_eq!(cache.decrement("seats", 1).await?, 2);
    /// assert_eq!(cache.decrement("fresh", 1).await?, -1);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`increment`](Self::increment); `i64::MIN` is an [`ErrorKind::Overflow`].
    pub async fn decrement(&self, key: &str, by: i64) -> Result<i64> {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Decrement, key);
        let by = by.checked_neg().ok_or_else(|| ErrorKind::Overflow {
            key: key.to_owned(),
        })?;
        op.run(op.add_to(&at, by)).await
    }

    /// Counts one hit on a rate-limit counter: adds one, giving a new counter `window` as its
    /// TTL in the same atomic step, and returns the count and the time left in the window.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// let window = Duration::from_secs(60);
    /// assert_eq!(cache.hit("login:ana", window).await?.count, 1);
    /// let second = cache.hit("login:ana", window).await?;
    /// assert_eq!(second.count, 2);
    /// assert!(second.expires_in <= window);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`increment`](Self::increment).
    pub async fn hit(&self, key: &str, window: Duration) -> Result<Hit> {
        self.hit_by(key, window, 1).await
    }

    /// Counts `by` hits (at least 1) on a rate-limit counter in one atomic step: the hits got
    /// the counts `count − by + 1 ..= count`. A limiter sends concurrent requests of one key
    /// this way, in one round trip.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// let window = Duration::from_secs(60);
    /// cache.hit("api:7", window).await?;
    /// let batch = cache.hit_by("api:7", window, 5).await?;
    /// assert_eq!(batch.count, 6, "the five got the counts 2 to 6");
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`increment`](Self::increment), and [`ErrorKind::Unsupported`] from a driver
    /// written elsewhere that counts only one hit at a time.
    pub async fn hit_by(&self, key: &str, window: Duration, by: u64) -> Result<Hit> {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Hit, key);
        op.run(async {
            let hit = op.hit(&at, window, by).await?;
            op.event(EventKind::Written);
            Ok(hit)
        })
        .await
    }

    /// Applies rate-limit `rules` to the record at `key` in one atomic step (one Redis script,
    /// one locked file) and returns one verdict per rule. With `consume` the request is
    /// counted — when every rule admits it (fixed windows count it regardless); without, the
    /// record is only read. The algorithms are described in [`RateKind`](crate::RateKind); `jtc-throttle`
    /// is built on this operation.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// use jtc_cache::{RateKind, RateRule};
    ///
    /// let cache = Cache::new(ArrayDriver::new());
    /// let second = RateRule { limit: 2, window: Duration::from_secs(1), kind: RateKind::FixedWindow };
    /// let minute = RateRule { limit: 3, window: Duration::from_secs(60), kind: RateKind::SlidingWindow };
    /// let rules = [second, minute];
    /// for _ in 0..2 {
    ///     assert!(cache.rate("user:7", &rules, true).await?.iter().all(|v| v.allowed));
    /// }
    /// let third = cache.rate("user:7", &rules, true).await?;
    /// assert!(!third[0].allowed, "two per second");
    /// let look = cache.rate("user:7", &rules, false).await?; // counts nothing
    /// assert_eq!(look[1].remaining, 1, "the sliding window did not count the rejection");
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// An invalid key ([`ErrorKind::KeyTooLong`]), a backend failure, or
    /// [`ErrorKind::Unsupported`] from a driver written elsewhere that does not offer it.
    pub async fn rate(
        &self,
        key: &str,
        rules: &[RateRule],
        consume: bool,
    ) -> Result<Vec<RateVerdict>> {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Rate, key);
        op.run(async {
            let verdicts = op.rate(&at, rules, consume).await?;
            if consume {
                op.event(EventKind::Written);
            }
            Ok(verdicts)
        })
        .await
    }

    /// As [`rate`](Self::rate) counting `by` requests (at least 1) one after the other: each
    /// request's verdicts, in order, as `by` calls of `rate` would give them. `jtc-throttle`
    /// sends concurrent requests of one key this way. On Redis a lone fixed window takes them
    /// in one `INCRBY`, other rules in one script run per 250 requests.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// use jtc_cache::{RateKind, RateRule};
    ///
    /// let cache = Cache::new(ArrayDriver::new());
    /// let rules = [
    ///     RateRule { limit: 2, window: Duration::from_secs(1), kind: RateKind::FixedWindow },
    ///     RateRule { limit: 30, window: Duration::from_secs(60), kind: RateKind::SlidingWindow },
    /// ];
    /// let three = cache.rate_by("user:7", &rules, 3).await?;
    /// let allowed: Vec<bool> = three.iter().map(|v| v.iter().all(|v| v.allowed)).collect();
    /// assert_eq!(allowed, [true, true, false], "two per second");
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`rate`](Self::rate), and [`ErrorKind::Unsupported`] for `by > 1` from a driver
    /// that counts one request at a time (Redis and the array driver count several).
    pub async fn rate_by(
        &self,
        key: &str,
        rules: &[RateRule],
        by: u64,
    ) -> Result<Vec<Vec<RateVerdict>>> {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Rate, key);
        op.run(async {
            let verdicts = op.rate_by(&at, rules, by.max(1)).await?;
            op.event(EventKind::Written);
            Ok(verdicts)
        })
        .await
    }
}

impl Op<'_> {
    /// Adds `by` to the counter at `at`.
    pub(crate) async fn add_to(&self, at: &StoreKey<'_>, by: i64) -> Result<i64> {
        let n = self.increment(at, by).await?;
        self.event(EventKind::Written);
        Ok(n)
    }
}
