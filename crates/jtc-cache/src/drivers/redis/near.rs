//! The near cache's part of the Redis driver: redis-rs keeps the copies and drops them on the
//! server's invalidations (`connection.rs` turns it on); here are its counters and the write
//! barrier that makes this process's own writes visible to its very next read.

use redis::Cmd;

use super::{Inner, RedisDriver, connection::Connection};
use crate::Result;

/// The near cache's counters (see [`RedisDriver::near_cache_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NearCacheStats {
    /// Reads answered from this process's copy, with no network.
    pub hits: u64,
    /// Reads that went to Redis (and left a copy).
    pub misses: u64,
    /// Copies dropped because the server said the key changed.
    pub invalidations: u64,
}

impl RedisDriver {
    /// The near cache's counters since the driver connected (`None` without one): reads
    /// answered in process, reads that went to Redis, and copies the server invalidated.
    pub fn near_cache_stats(&self) -> Option<NearCacheStats> {
        if !self.inner.near_cache {
            return None;
        }
        let stats = match &self.inner.connection {
            Connection::Standalone(manager) => manager.get_cache_statistics(),
            Connection::Cluster(cluster) => cluster.get_cache_statistics(),
            Connection::Sentinel(_) => None,
        }?;
        Some(NearCacheStats {
            hits: stats.hit as u64,
            misses: stats.miss as u64,
            invalidations: stats.invalidate as u64,
        })
    }
}

impl Inner {
    /// With the near cache, after a write: the command whose reply proves that this
    /// connection has taken in the server's invalidation of what was written. Redis sends a
    /// writer its own invalidations right *after* the write's reply, so a read that followed
    /// at once could still find the old copy; the reply to one more command on the same
    /// connection (to the key's node in a cluster) comes after them. `None`: no write, or no
    /// near cache.
    pub(super) fn barrier_for(&self, operation: &'static str, cmd: &Cmd) -> Option<Cmd> {
        if !self.near_cache || matches!(operation, "get" | "many") {
            return None;
        }
        let key = cmd.args_iter().nth(1).and_then(|arg| match arg {
            redis::Arg::Simple(key) => Some(key.to_vec()),
            _ => None,
        });
        Some(match key {
            Some(key) => redis::cmd("PTTL").arg(key).clone(),
            None => redis::cmd("PING"),
        })
    }

    /// Waits for `barrier`'s reply (see [`barrier_for`](Self::barrier_for)).
    pub(super) async fn settle(&self, operation: &'static str, barrier: Option<Cmd>) -> Result<()> {
        let Some(barrier) = barrier else {
            return Ok(());
        };
        self.within(operation, |mut live| async move {
            barrier.query_async::<redis::Value>(&mut live).await
        })
        .await
        .map(drop)
    }

    /// The barrier after a write of `key` (which is already prefixed).
    pub(super) fn barrier_on(&self, operation: &'static str, key: &[u8]) -> Option<Cmd> {
        self.barrier_for(operation, redis::cmd("WRITE").arg(key))
    }
}
