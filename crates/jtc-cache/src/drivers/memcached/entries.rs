//! The memcached driver's entry operations: reads, writes, `add`, removal and `touch`.
//!
//! Operations that must see an entry before changing it (`add` over an expired item, `pull`,
//! `forget_if`, `touch`) read it with its CAS value and write or delete only if nobody changed
//! it in between, trying again otherwise: atomic without locks.

use std::time::Duration;

use bytes::Bytes;

use super::{
    At, MemcachedDriver,
    item::{self, Item},
    wire::{self, Mode, Status},
};
use crate::{ErrorKind, Result, contention::Backoff};

/// The largest item data sent (memcached's default item limit is 1 MiB, its item header and
/// key included).
pub(super) const MAX_DATA: usize = 1024 * 1024 - 512;

/// An item read for an update: what it holds at the driver's clock and its CAS value.
pub(super) struct Read {
    pub(super) item: Item,
    pub(super) cas: u64,
}

impl MemcachedDriver {
    pub(super) async fn get_entry(&self, key: &str) -> Result<Option<Bytes>> {
        let at = self.route(key).await?;
        let mut request = Vec::with_capacity(at.wire.len() + 12);
        wire::get(&mut request, &at.wire, "v f");
        let reply = at.server.one("get", &request).await?;
        Ok(self.live(reply.flags, reply.value))
    }

    /// The value of a `VA` reply if it is live.
    fn live(&self, flags: Option<u32>, value: Option<Bytes>) -> Option<Bytes> {
        match item::decode(flags.unwrap_or(0), value?, self.now()) {
            Item::Live { value, .. } => Some(value),
            Item::Dead => None,
        }
    }

    pub(super) async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let mut routed = Vec::with_capacity(keys.len());
        for key in keys {
            routed.push(self.route(key).await?);
        }
        // One pipelined request per server, the servers asked at the same time.
        let asked = self.servers.iter().filter_map(|server| {
            let mine: Vec<usize> = (0..keys.len())
                .filter(|&i| std::ptr::eq(routed[i].server, server))
                .collect();
            if mine.is_empty() {
                return None;
            }
            let mut request = Vec::new();
            for &i in &mine {
                wire::get(&mut request, &routed[i].wire, "v f");
            }
            Some(async move {
                let replies = server.exchange("many", &request, mine.len()).await?;
                let mut found = Vec::with_capacity(mine.len());
                for (i, reply) in mine.into_iter().zip(replies) {
                    let reply = reply.map_err(|refusal| server.refused("many", &refusal))?;
                    found.push((i, self.live(reply.flags, reply.value)));
                }
                Ok::<_, crate::Error>(found)
            })
        });
        let mut values = vec![None; keys.len()];
        for (i, value) in futures_util::future::try_join_all(asked)
            .await?
            .into_iter()
            .flatten()
        {
            values[i] = value;
        }
        Ok(values)
    }

    pub(super) async fn put_entry(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<()> {
        if ttl.is_some_and(|t| t.is_zero()) {
            return self.take(key, "put", |_| true).await.map(drop);
        }
        let at = self.route(key).await?;
        let now = self.now();
        let deadline = item::deadline(now, ttl);
        self.store(&at, &value, deadline, None, "put")
            .await
            .map(drop)
    }

    /// Writes `value` until `deadline`: whatever is there (`cas` of `None`), or only under
    /// the condition of [`Cas`]. Returns whether it stored.
    pub(super) async fn store(
        &self,
        at: &At<'_>,
        value: &Bytes,
        deadline: Option<u64>,
        cas: Option<Cas>,
        operation: &'static str,
    ) -> Result<bool> {
        let (flags, parts) = item::encode(value, deadline);
        self.store_raw(at, flags, &[&parts[0], &parts[1]], deadline, cas, operation)
            .await
    }

    /// Writes item data already in its stored format (`flags`, `parts`).
    pub(super) async fn store_raw(
        &self,
        at: &At<'_>,
        flags: u32,
        parts: &[&[u8]],
        deadline: Option<u64>,
        cas: Option<Cas>,
        operation: &'static str,
    ) -> Result<bool> {
        let size: usize = parts.iter().map(|p| p.len()).sum();
        if size > MAX_DATA {
            return Err(too_large(at.key, size));
        }
        let (mode, compare) = match cas {
            None => (Mode::Set, None),
            Some(Cas::Absent) => (Mode::Add, None),
            Some(Cas::Is(cas)) => (Mode::Set, Some(cas)),
        };
        let mut request = Vec::with_capacity(at.wire.len() + size + 48);
        let exptime = item::exptime(deadline, self.now());
        wire::set(&mut request, &at.wire, parts, exptime, flags, mode, compare);
        let reply = at.server.exchange(operation, &request, 1).await?.pop();
        match reply {
            Some(Ok(reply)) => Ok(reply.status == Status::Done),
            Some(Err(refusal)) if refusal.is_too_large() => Err(too_large(at.key, size)),
            Some(Err(refusal)) => Err(at.server.refused(operation, &refusal)),
            None => Ok(false),
        }
    }

    /// Reads `wire` with its flags and CAS value; `None` when memcached holds nothing.
    pub(super) async fn read(&self, at: &At<'_>, operation: &'static str) -> Result<Option<Read>> {
        let mut request = Vec::with_capacity(at.wire.len() + 14);
        wire::get(&mut request, &at.wire, "v f c");
        let reply = at.server.one(operation, &request).await?;
        let (Some(value), Some(cas)) = (reply.value, reply.cas) else {
            return Ok(None);
        };
        Ok(Some(Read {
            item: item::decode(reply.flags.unwrap_or(0), value, self.now()),
            cas,
        }))
    }

    pub(super) async fn add_entry(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        if ttl.is_some_and(|t| t.is_zero()) {
            return Ok(false);
        }
        let at = self.route(key).await?;
        let deadline = item::deadline(self.now(), ttl);
        let mut backoff = Backoff::new("memcached");
        loop {
            if self
                .store(&at, &value, deadline, Some(Cas::Absent), "add")
                .await?
            {
                return Ok(true);
            }
            // Taken, unless what is there has expired by its deadline: replace that, if it is
            // still the same item.
            match self.read(&at, "add").await? {
                Some(Read {
                    item: Item::Live { .. },
                    ..
                }) => return Ok(false),
                Some(Read {
                    item: Item::Dead,
                    cas,
                }) => {
                    let cas = Some(Cas::Is(cas));
                    if self.store(&at, &value, deadline, cas, "add").await? {
                        return Ok(true);
                    }
                }
                None => {}
            }
            backoff.wait().await?;
        }
    }

    /// Removes the entry at `key` if it is live and its value passes `wanted`, in one atomic
    /// step (read, then delete only that version); returns what it held.
    pub(super) async fn take(
        &self,
        key: &str,
        operation: &'static str,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Result<Option<Bytes>> {
        let at = self.route(key).await?;
        let mut backoff = Backoff::new("memcached");
        loop {
            let Some(read) = self.read(&at, operation).await? else {
                return Ok(None);
            };
            let live = match read.item {
                Item::Live { value, .. } if wanted(&value) => Some(value),
                Item::Live { .. } => return Ok(None),
                Item::Dead => None,
            };
            let mut request = Vec::with_capacity(at.wire.len() + 28);
            wire::delete(&mut request, &at.wire, Some(read.cas));
            match at.server.one(operation, &request).await?.status {
                Status::Done | Status::NotFound => return Ok(live),
                _ => backoff.wait().await?, // changed since the read
            }
        }
    }

    pub(super) async fn touch_entry(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        if ttl.is_some_and(|t| t.is_zero()) {
            return Ok(self.take(key, "touch", |_| true).await?.is_some());
        }
        let at = self.route(key).await?;
        let mut backoff = Backoff::new("memcached");
        loop {
            let Some(Read {
                item: Item::Live { value, .. },
                cas,
            }) = self.read(&at, "touch").await?
            else {
                return Ok(false);
            };
            let deadline = item::deadline(self.now(), ttl);
            if self
                .store(&at, &value, deadline, Some(Cas::Is(cas)), "touch")
                .await?
            {
                return Ok(true);
            }
            backoff.wait().await?;
        }
    }
}

/// The condition of a write.
#[derive(Debug, Clone, Copy)]
pub(super) enum Cas {
    /// Only if memcached holds nothing at the key.
    Absent,
    /// Only if the item is still the one read with this CAS value.
    Is(u64),
}

fn too_large(key: &str, size: usize) -> crate::Error {
    ErrorKind::ValueTooLarge {
        key: key.to_owned(),
        size,
        limit: MAX_DATA,
    }
    .into()
}

/// `forget` and `forget_if`: a take that keeps nothing.
impl MemcachedDriver {
    pub(super) async fn remove_entry(&self, key: &str) -> Result<bool> {
        Ok(self.take(key, "forget", |_| true).await?.is_some())
    }

    pub(super) async fn remove_entry_if(&self, key: &str, expected: &[u8]) -> Result<bool> {
        Ok(self
            .take(key, "forget_if", |v| v == expected)
            .await?
            .is_some())
    }
}
