//! The near cache: values read from Redis kept in this process (a bounded table, the array
//! driver's), answered without any command, and dropped when the server says they changed.
//!
//! # How it stays coherent
//!
//! The connection runs RESP3 with `CLIENT TRACKING ON OPTIN`. A read that may be kept is one
//! pipeline, `CLIENT CACHING YES` + `GET` + `PTTL`: the server then tracks that key for this
//! connection and pushes an invalidation when anyone changes it (writes, expiry, eviction;
//! `FLUSHDB` sends one for everything). The `CLIENT CACHING` reply proves that the connection
//! which served the read tracks it; a new connection that does not yet (after a reconnect)
//! refuses it, and the read is not kept while tracking is turned on again.
//!
//! Pushes and replies reach this process by different paths, so a push may be handled before
//! or after the read it concerns is stored. Each key hashes to one of [`STRIPES`] sequence
//! numbers; every invalidation of a key (from the server, or this process's own write of it,
//! before and after the write) bumps that number while holding the key's table shard, and a
//! read stores its value only if the number (and the generation, bumped by a flush, a lost
//! connection or `FLUSHDB`) is unchanged since the read was sent — checked under the same
//! shard. A push handled first makes the read store nothing; a push handled later removes what
//! it stored.
//!
//! Every kept value expires at the key's TTL on the server (`PTTL`) or after the maximum age
//! (`RedisConfig::near_cache_max_age`, off by default), whichever comes first; values above
//! [`MAX_VALUE`] are never kept, so the table holds at most `entries × 64 KiB` of values.

use std::{
    fmt,
    sync::atomic::{
        AtomicBool, AtomicU64,
        Ordering::{AcqRel, Acquire, Relaxed},
    },
    task::Poll,
};

use bytes::Bytes;
use redis::{PushInfo, PushKind, Value};

use super::{
    Inner, RedisDriver,
    connection::{tracked_read, turn_tracking_on},
};
use crate::{
    Clock, Error, NearCacheStats, Result,
    driver::{Boxed, ReadHeld},
    local::{
        clock::LocalClock,
        stripes::{STRIPES as TALLY_STRIPES, stripe},
        table::Shards,
    },
};

/// Sequence numbers of keys: a key's invalidation bumps its stripe's.
const STRIPES: usize = 1024;
/// Values larger than this are never kept (64 KiB).
pub(super) const MAX_VALUE: usize = 64 * 1024;

/// A kept value and when it stops being valid (the table's clock, in ms; `None`: when the
/// server says so). A value that cannot expire is answered without reading the clock.
#[derive(Debug)]
struct Held {
    value: Bytes,
    expires_at: Option<u64>,
}

/// What a read saw when it was sent: it may store its value only if nothing changed since.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ticket {
    generation: u64,
    stripe: usize,
    sequence: u64,
}

/// The near cache of one driver.
#[derive(Debug)]
pub(super) struct Near {
    /// The driver's key prefix: pushes name full keys, the table holds them without it.
    prefix: Vec<u8>,
    held: Shards<Held>,
    clock: LocalClock,
    stripes: Box<[AtomicU64]>,
    generation: AtomicU64,
    max_value: usize,
    max_age_ms: Option<u64>,
    /// Set while a call turns tracking back on, so that only one does.
    enabling: AtomicBool,
    hits: Tally,
    misses: Tally,
    invalidations: Tally,
    /// Values stored; what is neither held now nor dropped by an invalidation was evicted.
    stored: Tally,
}

impl Near {
    pub(super) fn new(
        prefix: &str,
        entries: usize,
        max_value: usize,
        max_age_ms: Option<u64>,
    ) -> Self {
        Self {
            prefix: prefix.as_bytes().to_vec(),
            held: Shards::bounded(entries.max(1)),
            clock: LocalClock::default(),
            stripes: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            generation: AtomicU64::new(0),
            max_value,
            max_age_ms,
            enabling: AtomicBool::new(false),
            hits: Tally::default(),
            misses: Tally::default(),
            invalidations: Tally::default(),
            stored: Tally::default(),
        }
    }

    /// The kept value of `key`, if there is one and it is still valid.
    #[inline]
    pub(super) fn lookup(&self, key: &str) -> Option<Bytes> {
        let found = self.held.read(key, |held| {
            held.filter(|h| h.expires_at.is_none_or(|at| self.clock.is_before(at)))
                .map(|h| h.value.clone())
        });
        if found.is_some() {
            self.hits.add(1);
        } else {
            self.misses.add(1);
        }
        found
    }

    /// What a read of `key` must present to store its value later.
    pub(super) fn ticket(&self, key: &str) -> Ticket {
        let stripe = stripe_of(key.as_bytes());
        Ticket {
            generation: self.generation.load(Acquire),
            stripe,
            sequence: self.stripes[stripe].load(Acquire),
        }
    }

    /// Stores `value` read for `key` under `ticket`, if nothing invalidated the key since and
    /// the value is small enough; `pttl` is the key's TTL on the server in ms (negative: none).
    pub(super) fn keep(&self, key: &str, ticket: Ticket, value: Bytes, pttl: i64) {
        if value.len() > self.max_value || pttl == 0 || pttl == -2 {
            return;
        }
        let age = match (u64::try_from(pttl).ok(), self.max_age_ms) {
            (Some(ttl), Some(max)) => Some(ttl.min(max)),
            (ttl, max) => ttl.or(max),
        };
        let expires_at = age.map(|age| self.clock.now_ms().saturating_add(age));
        self.held.write(key, |slot| {
            let unchanged = self.generation.load(Acquire) == ticket.generation
                && self.stripes[ticket.stripe].load(Acquire) == ticket.sequence;
            if unchanged {
                let replaced = slot.insert(Held { value, expires_at });
                if replaced.is_some() {
                    self.invalidations.add(1); // a newer value read over a held one
                }
                self.stored.add(1);
            }
        });
    }

    /// Drops `key` (a name without the prefix) and stops reads in flight from storing it.
    pub(super) fn invalidate(&self, key: &[u8]) {
        let Ok(key) = std::str::from_utf8(key) else {
            return; // the driver only ever reads keys that are text
        };
        let stripe = &self.stripes[stripe_of(key.as_bytes())];
        let removed = self.held.write(key, |slot| {
            stripe.fetch_add(1, AcqRel);
            slot.remove()
        });
        if removed.is_some() {
            self.invalidations.add(1);
        }
    }

    /// Drops everything and stops every read in flight from storing.
    pub(super) fn clear(&self) {
        self.generation.fetch_add(1, AcqRel);
        let held = self.held.len() as u64;
        self.held.clear();
        self.invalidations.add(held);
    }

    /// Handles a push from the server or the client library.
    pub(super) fn on_push(&self, push: &PushInfo) {
        match push.kind {
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) => {
                    for key in keys {
                        if let Value::BulkString(key) = key
                            && let Some(key) = key.strip_prefix(self.prefix.as_slice())
                        {
                            self.invalidate(key);
                        }
                    }
                }
                // A null list: the server dropped everything (FLUSHDB, FLUSHALL).
                _ => self.clear(),
            },
            // The connection went away: what it tracked is no longer tracked.
            PushKind::Disconnection => self.clear(),
            _ => {}
        }
    }

    /// Claims the turn to turn tracking back on; `false` if another call has it.
    pub(super) fn claim_enabling(&self) -> bool {
        !self.enabling.swap(true, AcqRel)
    }

    pub(super) fn release_enabling(&self) {
        self.enabling.store(false, Relaxed);
    }

    pub(super) fn stats(&self) -> NearCacheStats {
        let (invalidations, entries) = (self.invalidations.sum(), self.held.len() as u64);
        NearCacheStats {
            hits: self.hits.sum(),
            misses: self.misses.sum(),
            invalidations,
            evictions: self
                .stored
                .sum()
                .saturating_sub(invalidations)
                .saturating_sub(entries),
            entries,
        }
    }
}

impl RedisDriver {
    /// The near cache's counters since the driver connected (`None` without one): reads
    /// answered in process, reads that went to Redis, copies dropped, and copies held now.
    pub fn near_cache_stats(&self) -> Option<NearCacheStats> {
        self.inner.near.as_ref().map(|near| near.stats())
    }
}

/// `get` with a near cache: the held copy when there is one (looked for when the future is
/// first polled, so that no result is written into the future and read back), else a read
/// from the server that may be kept.
impl ReadHeld<Option<Bytes>> for RedisDriver {
    #[inline]
    fn held(&self, key: &str) -> Poll<Result<Option<Bytes>>> {
        match self.inner.near.as_ref().and_then(|near| near.lookup(key)) {
            Some(value) => Poll::Ready(Ok(Some(value))),
            None => Poll::Pending,
        }
    }

    fn fetch<'a>(&'a self, key: &'a str) -> Boxed<'a, Option<Bytes>> {
        Box::pin(self.inner.get(key))
    }
}

impl Inner {
    /// A read that may be kept: `CLIENT CACHING YES` (the server tracks the key for this
    /// connection), `GET` and `PTTL` in one pipeline.
    pub(super) async fn get_near(&self, near: &Near, key: &str) -> Result<Option<Bytes>> {
        let ticket = near.ticket(key);
        let full = [self.prefix.as_bytes(), key.as_bytes()].concat();
        let mut pipe = redis::pipe();
        pipe.ignore_errors()
            .cmd("CLIENT")
            .arg("CACHING")
            .arg("YES")
            .cmd("GET")
            .arg(&full)
            .cmd("PTTL")
            .arg(&full);
        let replies: Vec<redis::RedisResult<Value>> = self
            .within("get", |live| async move {
                tracked_read(live, pipe, &full).await
            })
            .await?;
        let mut replies = replies.into_iter();
        let (caching, value, pttl) = (replies.next(), replies.next(), replies.next());
        let value = match value {
            Some(Ok(Value::BulkString(bytes))) => Some(Bytes::from(bytes)),
            Some(Ok(Value::Nil)) | None => None,
            Some(Ok(other)) => {
                let error = redis::RedisError::from((
                    redis::ErrorKind::UnexpectedReturnType,
                    "GET answered",
                    format!("{other:?}"),
                ));
                return Err(Error::redis("get", error));
            }
            Some(Err(error)) => return Err(Error::redis("get", error)),
        };
        match caching {
            Some(Ok(_)) => {
                if let (Some(value), Some(Ok(Value::Int(pttl)))) = (&value, pttl) {
                    near.keep(key, ticket, value.clone(), pttl);
                }
            }
            // This connection does not track (a new one, after a reconnect): turn it on.
            _ => self.enable_tracking(near).await,
        }
        Ok(value)
    }

    /// Turns tracking on for the connection (every node's, on a cluster); one call at a time.
    pub(super) async fn enable_tracking(&self, near: &Near) {
        if !near.claim_enabling() {
            return;
        }
        let result = self
            .within(
                "near cache",
                |live| async move { turn_tracking_on(live).await },
            )
            .await;
        near.release_enabling();
        if let Err(error) = result {
            tracing::debug!(error = %crate::error::chain(&error), "could not turn client tracking on");
        }
    }

    /// The key a write changes (without the prefix), for the near cache; `None` for reads,
    /// without a near cache, and for a flush (which empties the near cache itself).
    pub(super) fn written_key(&self, operation: &'static str, cmd: &redis::Cmd) -> Option<Vec<u8>> {
        if self.near.is_none() || matches!(operation, "get" | "many" | "flush") {
            return None;
        }
        match cmd.args_iter().nth(1)? {
            redis::Arg::Simple(key) => key.strip_prefix(self.prefix.as_bytes()).map(<[u8]>::to_vec),
            _ => None,
        }
    }

    /// Drops `key` from the near cache, if there is one: before a write (so no read in flight
    /// stores the old value) and after it (so the next read goes to the server).
    pub(super) fn forget_near(&self, key: Option<&[u8]>) {
        if let (Some(near), Some(key)) = (&self.near, key) {
            near.invalidate(key);
        }
    }

    /// Empties the near cache, if there is one.
    pub(super) fn clear_near(&self) {
        if let Some(near) = &self.near {
            near.clear();
        }
    }
}

/// One counter spread over the stripes: cheap to add to from many threads at once.
#[derive(Default)]
pub(super) struct Tally([TallyStripe; TALLY_STRIPES]);

#[repr(align(128))]
#[derive(Default)]
struct TallyStripe(AtomicU64);

impl Tally {
    #[inline]
    pub(super) fn add(&self, n: u64) {
        self.0[stripe()].0.fetch_add(n, Relaxed);
    }

    pub(super) fn sum(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

impl fmt::Debug for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Tally").field(&self.sum()).finish()
    }
}

fn stripe_of(key: &[u8]) -> usize {
    crc32fast::hash(key) as usize % STRIPES
}

#[cfg(test)]
mod tests {
    use super::*;

    fn near() -> Near {
        Near::new("p:", 100, 1024, None)
    }

    #[test]
    fn a_read_stores_only_if_nothing_invalidated_its_key_meanwhile() {
        let near = near();
        let ticket = near.ticket("k");
        near.invalidate(b"k");
        near.keep("k", ticket, Bytes::from_static(b"old"), -1);
        assert_eq!(near.lookup("k"), None, "an invalidation during the read");
        let ticket = near.ticket("k");
        near.clear();
        near.keep("k", ticket, Bytes::from_static(b"old"), -1);
        assert_eq!(near.lookup("k"), None, "a clear during the read");
        let ticket = near.ticket("k");
        near.keep("k", ticket, Bytes::from_static(b"new"), -1);
        assert_eq!(near.lookup("k").as_deref(), Some(&b"new"[..]));
        near.invalidate(b"k");
        assert_eq!(near.lookup("k"), None, "an invalidation after the read");
    }

    #[test]
    fn pushes_name_full_keys_and_a_null_list_clears_everything() {
        let near = near();
        for key in ["a", "b"] {
            let ticket = near.ticket(key);
            near.keep(key, ticket, Bytes::from_static(b"v"), -1);
        }
        let push = |data| PushInfo {
            kind: PushKind::Invalidate,
            data,
        };
        near.on_push(&push(vec![Value::Array(vec![Value::BulkString(
            b"p:a".to_vec(),
        )])]));
        assert_eq!(near.lookup("a"), None);
        assert!(near.lookup("b").is_some());
        near.on_push(&push(vec![Value::Nil]));
        assert_eq!(near.lookup("b"), None);
        assert!(near.stats().invalidations >= 2);
    }

    #[test]
    fn keys_without_ttl_live_the_maximum_age_and_big_values_are_not_kept() {
        let near = Near::new("p:", 100, 4, Some(0));
        let ticket = near.ticket("k");
        near.keep("k", ticket, Bytes::from_static(b"v"), -1);
        assert_eq!(
            near.lookup("k"),
            None,
            "a maximum age of zero keeps nothing"
        );
        let near = Near::new("p:", 100, 4, Some(60_000));
        let ticket = near.ticket("big");
        near.keep("big", ticket, Bytes::from_static(b"too big"), 10_000);
        assert_eq!(near.lookup("big"), None);
        let ticket = near.ticket("gone");
        near.keep("gone", ticket, Bytes::from_static(b"v"), -2);
        assert_eq!(
            near.lookup("gone"),
            None,
            "PTTL -2: the key no longer exists"
        );
    }
}
