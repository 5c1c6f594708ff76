//! The storage contract every backend fulfils: bytes in, bytes out.

use std::{fmt, time::Duration};

use async_trait::async_trait;

use crate::Result;

/// A storage backend for [`Cache`](crate::Cache).
///
/// Drivers store opaque bytes under string keys; encoding typed values is the
/// [`Cache`](crate::Cache)'s job. The trait is object safe: a `Cache` holds an
/// `Arc<dyn CacheDriver>`, so the driver is chosen at run time (`CACHE_DRIVER`).
///
/// # Contract
///
/// Every driver in this crate passes one conformance suite; a driver written elsewhere should
/// keep the same promises:
///
/// - A `ttl` of `None` means the entry never expires. A zero `ttl` removes the key.
/// - An expired entry is indistinguishable from a missing one.
/// - Counters are stored as the plain decimal text of an `i64` (`b"42"`), the same bytes the
///   default codec writes for an integer value, so `put` then `increment` works and the Redis
///   driver can use `INCRBY`.
/// - `increment`, `add`, `hit` and `pull` are atomic with respect to every other operation on
///   the same key, from any task (and, for shared backends, any process).
#[async_trait]
pub trait CacheDriver: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and the CLI: `array`, `file`, `redis`.
    fn name(&self) -> &'static str;

    /// The stored bytes, or `None` when the key is missing or expired.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Stores `value`, replacing whatever was there.
    async fn put(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()>;

    /// Stores `value` only if the key is missing or expired; returns whether it stored.
    async fn add(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<bool>;

    /// Adds `by` to the integer at `key` and returns the new value.
    ///
    /// A missing or expired key starts from 0 and never expires; an existing key keeps its
    /// TTL. A value that is not an integer is an [`Error::NotAnInteger`](crate::Error) and is
    /// left unchanged, as is a counter that would overflow.
    async fn increment(&self, key: &str, by: i64) -> Result<i64>;

    /// Adds one to the counter at `key`, starting a window of `window` if the counter is new,
    /// in one atomic step. This is the rate limiter's operation.
    ///
    /// A counter found without a TTL is given `window` too: a counter that never expires
    /// would lock a client out for good.
    async fn hit(&self, key: &str, window: Duration) -> Result<Hit>;

    /// Removes the key; returns whether a live entry was there.
    async fn forget(&self, key: &str) -> Result<bool>;

    /// Removes the key and returns what it held, in one atomic step.
    async fn pull(&self, key: &str) -> Result<Option<Vec<u8>>>;

    /// Gives a live entry a new TTL (`None`: never expires); returns whether the key was live.
    async fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<bool>;

    /// Removes every entry this driver wrote, and nothing else.
    async fn flush(&self) -> Result<()>;

    /// The stored bytes of several keys, in order.
    async fn many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.get(key).await?);
        }
        Ok(values)
    }

    /// Stores several entries with one TTL.
    async fn put_many(&self, entries: &[(&str, Vec<u8>)], ttl: Option<Duration>) -> Result<()> {
        for (key, value) in entries {
            self.put(key, value, ttl).await?;
        }
        Ok(())
    }

    /// Removes expired entries that nobody has read since they expired; returns how many.
    ///
    /// Backends that expire entries by themselves (Redis) return 0.
    async fn prune(&self) -> Result<u64> {
        Ok(0)
    }
}

/// The state of a rate-limit counter right after [`CacheDriver::hit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The count including this hit.
    pub count: i64,
    /// The time left until the counter expires and the window starts over.
    pub expires_in: Duration,
}
