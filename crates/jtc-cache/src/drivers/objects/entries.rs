//! How an entry is stored in an object, and every operation on entries.
//!
//! An object holds `jtc1`, the entry's deadline (Unix milliseconds, big-endian `u64`; 0: never
//! expires), then the value's bytes. An object whose deadline has passed is a miss; released
//! locks and pulled entries are rewritten with a deadline in the past (a tombstone), because
//! a delete cannot be made conditional here and an unconditional one could remove an entry
//! written in between.

use std::{sync::atomic::Ordering, time::Duration};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use object_store::{
    GetOptions, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion, path::Path,
};

use super::ObjectStoreDriver;
use crate::{ErrorKind, Hit, RateRecord, RateRule, RateVerdict, Result, contention::Backoff};

const MAGIC: &[u8; 4] = b"jtc1";
const HEADER: usize = 12;
/// The deadline of a tombstone: long past.
const TOMBSTONE: u64 = 1;

/// An entry as read: its deadline and value, and the version to write over.
struct Read {
    deadline: u64,
    value: Bytes,
    version: UpdateVersion,
}

impl Read {
    fn live(&self, now: u64) -> bool {
        self.deadline == 0 || self.deadline > now
    }
}

/// How long a guard (stores without conditional updates) holds before another writer may
/// take it over.
const GUARD_MS: u64 = 10_000;

/// What a conditional write did.
enum Written {
    Done,
    /// The object changed since it was read (or appeared, or went).
    Lost,
    /// The store has no conditional update (the local filesystem).
    Unsupported,
}

/// What one try of a compare-and-swap did.
enum Swapped<T> {
    Done(T),
    Lost,
    Unsupported,
}

/// What a compare-and-swap step decided.
enum Step<T> {
    /// Write this value with this deadline (0: never), then answer `T`.
    Write(Bytes, u64, T),
    /// Write nothing; answer `T`.
    Keep(T),
}

fn encode(deadline: u64, value: &[u8]) -> PutPayload {
    let mut bytes = BytesMut::with_capacity(HEADER + value.len());
    bytes.put_slice(MAGIC);
    bytes.put_u64(deadline);
    bytes.put_slice(value);
    PutPayload::from(bytes.freeze())
}

/// The deadline and value of an object's bytes; `None` for an object this driver did not
/// write (treated as a miss).
fn decode(mut bytes: Bytes) -> Option<(u64, Bytes)> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return None;
    }
    let deadline = u64::from_be_bytes(bytes[4..HEADER].try_into().ok()?);
    Some((deadline, bytes.split_off(HEADER)))
}

fn deadline(now: u64, ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, |ttl| {
        now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
    })
}

/// An object store's error as the cache's: a backend error of `object-store`.
pub(crate) fn backend(operation: &'static str, error: object_store::Error) -> crate::Error {
    ErrorKind::Backend {
        driver: "object-store",
        operation,
        source: Box::new(error),
    }
    .into()
}

fn integer(value: &[u8], key: &str) -> Result<i64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            ErrorKind::NotAnInteger {
                key: key.to_owned(),
            }
            .into()
        })
}

fn text(n: i64) -> Bytes {
    Bytes::copy_from_slice(itoa::Buffer::new().format(n).as_bytes())
}

impl ObjectStoreDriver {
    /// The object of `key`: the root, then 128 bits of the key's BLAKE3 hash in hex.
    fn path(&self, key: &str) -> Path {
        let digest = blake3::hash(key.as_bytes()).to_hex();
        self.root.clone().join(&digest[..32])
    }

    async fn read(&self, path: &Path, operation: &'static str) -> Result<Option<Read>> {
        match self.store.get_opts(path, GetOptions::default()).await {
            Ok(found) => {
                let version = UpdateVersion {
                    e_tag: found.meta.e_tag.clone(),
                    version: found.meta.version.clone(),
                };
                let bytes = found.bytes().await.map_err(|e| backend(operation, e))?;
                Ok(decode(bytes).map(|(deadline, value)| Read {
                    deadline,
                    value,
                    version,
                }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(backend(operation, error)),
        }
    }

    /// Writes `payload` at `path` only if the object is still as read (`over`), or still
    /// absent.
    async fn write_over(
        &self,
        path: &Path,
        payload: PutPayload,
        over: Option<UpdateVersion>,
        operation: &'static str,
    ) -> Result<Written> {
        let mode = match over {
            Some(version) => PutMode::Update(version),
            None => PutMode::Create,
        };
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self.store.put_opts(path, payload, options).await {
            Ok(_) => Ok(Written::Done),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                // An update of an object deleted in between.
                | object_store::Error::NotFound { .. },
            ) => Ok(Written::Lost),
            Err(object_store::Error::NotImplemented { .. }) => Ok(Written::Unsupported),
            Err(error) => Err(backend(operation, error)),
        }
    }

    /// A compare-and-swap loop on the object of `key`: `step` sees the live entry (or none)
    /// and decides; a write that loses a race reads again. On a store without conditional
    /// updates (the local filesystem) each try runs under a guard object instead.
    async fn swap<T>(
        &self,
        key: &str,
        operation: &'static str,
        mut step: impl FnMut(Option<(u64, &Bytes)>, u64) -> Result<Step<T>>,
    ) -> Result<T> {
        let path = self.path(key);
        let _turn = self.turns.turn(path.as_ref().as_bytes()).await;
        let mut backoff = Backoff::new("object-store");
        loop {
            let guard = match self.guarded.load(Ordering::Relaxed) {
                true => Some(self.guard(&path, operation).await?),
                false => None,
            };
            let tried = self
                .try_swap(&path, operation, &mut step, guard.is_some())
                .await;
            if let Some(guard) = &guard {
                self.unguard(guard).await;
            }
            match tried? {
                Swapped::Done(answer) => return Ok(answer),
                Swapped::Lost => backoff.wait().await?,
                Swapped::Unsupported => self.guarded.store(true, Ordering::Relaxed),
            }
        }
    }

    async fn try_swap<T>(
        &self,
        path: &Path,
        operation: &'static str,
        step: &mut impl FnMut(Option<(u64, &Bytes)>, u64) -> Result<Step<T>>,
        guarded: bool,
    ) -> Result<Swapped<T>> {
        let read = self.read(path, operation).await?;
        let now = self.now();
        let live = read
            .as_ref()
            .filter(|r| r.live(now))
            .map(|r| (r.deadline, &r.value));
        let (value, deadline, answer) = match step(live, now)? {
            Step::Keep(answer) => return Ok(Swapped::Done(answer)),
            Step::Write(value, deadline, answer) => (value, deadline, answer),
        };
        let payload = encode(deadline, &value);
        if guarded {
            // Under the guard nobody else writes this key: a plain overwrite.
            self.store
                .put(path, payload)
                .await
                .map_err(|e| backend(operation, e))?;
            return Ok(Swapped::Done(answer));
        }
        Ok(
            match self
                .write_over(path, payload, read.map(|r| r.version), operation)
                .await?
            {
                Written::Done => Swapped::Done(answer),
                Written::Lost => Swapped::Lost,
                Written::Unsupported => Swapped::Unsupported,
            },
        )
    }

    /// Takes the guard of `path` — an object created only if absent, so one writer at a
    /// time, in any process — waiting while another holds it. A guard left by a writer that
    /// died is taken over once its deadline (10 s) has passed.
    async fn guard(&self, path: &Path, operation: &'static str) -> Result<Path> {
        let guard = Path::from(format!("{path}.guard"));
        let mut backoff = Backoff::new("object-store");
        loop {
            let now = self.now();
            let payload = encode(now + GUARD_MS, b"");
            let options = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            match self.store.put_opts(&guard, payload, options).await {
                Ok(_) => return Ok(guard),
                Err(object_store::Error::AlreadyExists { .. }) => {
                    let held = self.read(&guard, operation).await?;
                    if held.is_none_or(|held| !held.live(now)) {
                        self.unguard(&guard).await;
                    }
                }
                Err(error) => return Err(backend(operation, error)),
            }
            backoff.wait().await?;
        }
    }

    async fn unguard(&self, guard: &Path) {
        if let Err(error) = self.store.delete(guard).await
            && !matches!(error, object_store::Error::NotFound { .. })
        {
            tracing::warn!(%error, "jtc-cache: could not remove an object-store guard");
        }
    }

    pub(super) async fn get_entry(&self, key: &str) -> Result<Option<Bytes>> {
        let read = self.read(&self.path(key), "get").await?;
        let now = self.now();
        Ok(read.filter(|r| r.live(now)).map(|r| r.value))
    }

    pub(super) async fn put_entry(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<()> {
        if ttl == Some(Duration::ZERO) {
            return self.remove_entry(key).await.map(drop);
        }
        let payload = encode(deadline(self.now(), ttl), &value);
        self.store
            .put(&self.path(key), payload)
            .await
            .map_err(|e| backend("put", e))?;
        Ok(())
    }

    pub(super) async fn add_entry(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        if ttl == Some(Duration::ZERO) {
            return Ok(false);
        }
        self.swap(key, "add", |live, now| {
            Ok(match live {
                Some(_) => Step::Keep(false),
                None => Step::Write(value.clone(), deadline(now, ttl), true),
            })
        })
        .await
    }

    /// Deletes the object; whether a live entry was there is read first (the delete itself
    /// cannot say).
    pub(super) async fn remove_entry(&self, key: &str) -> Result<bool> {
        let path = self.path(key);
        let read = self.read(&path, "forget").await?;
        let now = self.now();
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(backend("forget", error)),
        }
        Ok(read.is_some_and(|r| r.live(now)))
    }

    /// Lock release: a tombstone written over the entry only if it still holds `expected`.
    pub(super) async fn remove_entry_if(&self, key: &str, expected: &[u8]) -> Result<bool> {
        self.swap(key, "forget_if", |live, _| {
            Ok(match live {
                Some((_, value)) if value.as_ref() == expected => {
                    Step::Write(Bytes::new(), TOMBSTONE, true)
                }
                _ => Step::Keep(false),
            })
        })
        .await
    }

    /// `pull`: a tombstone written over the entry read, so two pulls never both take it.
    pub(super) async fn take_entry(&self, key: &str) -> Result<Option<Bytes>> {
        self.swap(key, "pull", |live, _| {
            Ok(match live {
                Some((_, value)) => Step::Write(Bytes::new(), TOMBSTONE, Some(value.clone())),
                None => Step::Keep(None),
            })
        })
        .await
    }

    pub(super) async fn touch_entry(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        if ttl == Some(Duration::ZERO) {
            return self.remove_entry(key).await;
        }
        self.swap(key, "touch", |live, now| {
            Ok(match live {
                Some((_, value)) => Step::Write(value.clone(), deadline(now, ttl), true),
                None => Step::Keep(false),
            })
        })
        .await
    }

    pub(super) async fn increment_counter(&self, key: &str, by: i64) -> Result<i64> {
        self.swap(key, "increment", |live, _| {
            let Some((deadline, value)) = live else {
                return Ok(Step::Write(text(by), 0, by));
            };
            let sum = integer(value, key)?.checked_add(by).ok_or_else(|| {
                crate::Error::from(ErrorKind::Overflow {
                    key: key.to_owned(),
                })
            })?;
            Ok(Step::Write(text(sum), deadline, sum))
        })
        .await
    }

    pub(super) async fn hit_counter(&self, key: &str, window: Duration, by: u64) -> Result<Hit> {
        let by = i64::try_from(by).unwrap_or(i64::MAX);
        self.swap(key, "hit", |live, now| {
            let (count, deadline) = match live {
                None => (by, deadline(now, Some(window))),
                Some((at, value)) => {
                    let at = if at == 0 {
                        deadline(now, Some(window))
                    } else {
                        at
                    };
                    (integer(value, key)?.saturating_add(by), at)
                }
            };
            let hit = Hit {
                count,
                expires_in: Duration::from_millis(deadline.saturating_sub(now)),
            };
            Ok(Step::Write(text(count), deadline, hit))
        })
        .await
    }

    pub(super) async fn rate_record(
        &self,
        key: &str,
        rules: &[RateRule],
        consume: bool,
    ) -> Result<Vec<RateVerdict>> {
        self.swap(key, "rate", |live, now| {
            let mut record =
                live.map_or_else(RateRecord::default, |(_, value)| RateRecord::decode(value));
            let now_us = i64::try_from(now.saturating_mul(1_000)).unwrap_or(i64::MAX);
            let verdicts = record.apply(rules, now_us, consume);
            if !consume {
                return Ok(Step::Keep(verdicts));
            }
            let ttl = record.ttl(now_us).unwrap_or(Duration::from_millis(1));
            Ok(Step::Write(
                Bytes::from(record.encode()),
                deadline(now, Some(ttl)),
                verdicts,
            ))
        })
        .await
    }

    /// `flush`: every object under the root, listed and deleted in the store's batches (S3:
    /// 1,000 a request); nothing outside the root.
    pub(super) async fn delete_all(&self) -> Result<()> {
        let listed = self
            .store
            .list(Some(&self.root))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.store.delete_stream(listed);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(backend("flush", error)),
            }
        }
        Ok(())
    }

    /// `prune`: the objects under the root whose deadline has passed (expired entries,
    /// tombstones), each found by reading its first 12 bytes, deleted in batches.
    pub(super) async fn prune_dead(&self) -> Result<u64> {
        let mut listed = self.store.list(Some(&self.root));
        let mut dead = Vec::new();
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(|e| backend("prune", e))?;
            let header = match self.store.get_range(&meta.location, 0..HEADER as u64).await {
                Ok(header) => header,
                Err(object_store::Error::NotFound { .. }) => continue,
                // Shorter than a header: not ours, left alone.
                Err(_) if meta.size < HEADER as u64 => continue,
                Err(error) => return Err(backend("prune", error)),
            };
            let mut padded = BytesMut::from(&header[..]);
            padded.resize(HEADER, 0);
            if let Some((deadline, _)) = decode(padded.freeze())
                && deadline != 0
                && deadline <= self.now()
            {
                dead.push(Ok(meta.location));
            }
        }
        let removed = dead.len() as u64;
        let mut deleted = self
            .store
            .delete_stream(futures_util::stream::iter(dead).boxed());
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(backend("prune", error)),
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_hold_their_deadline_and_value_and_foreign_bytes_are_not_entries() {
        let payload = encode(1_234, b"value");
        let bytes: Bytes = payload.into_iter().flatten().collect();
        assert_eq!(decode(bytes), Some((1_234, Bytes::from_static(b"value"))));
        assert_eq!(decode(Bytes::from_static(b"a plain file")), None);
        assert_eq!(decode(Bytes::from_static(b"jtc1")), None);
    }
}
