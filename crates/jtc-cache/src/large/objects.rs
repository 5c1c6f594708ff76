//! How the tier stores a large value: the pointer left in the primary, the object in the
//! store, and the sweep that removes objects no pointer names.
//!
//! - A **pointer** is `jtc` and the format byte `0x40` (a format no codec writes, so a cache
//!   without the tier reads it as undecodable: a miss), 32 hex digits naming the object, and
//!   the value's length (big-endian `u64`) — 44 bytes in all.
//! - An **object** is `jtcL`, the key's length (big-endian `u32`), the key, then the value's
//!   bytes, at `<root>/large/<32 hex digits>`. Every write makes a new name, so an object is
//!   written once and never changed: a reader holding a pointer reads exactly the value that
//!   was written with it, or nothing.
//! - The key inside the object lets [`Objects::sweep`] ask the primary whether the object is
//!   still the one its key points at.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, path::Path};

use crate::{ErrorKind, Result, drivers::objects::backend, keys::token};

const POINTER_MAGIC: &[u8; 4] = b"jtc\x40";
const NAME_LEN: usize = 32;
const POINTER_LEN: usize = POINTER_MAGIC.len() + NAME_LEN + 8;
const OBJECT_MAGIC: &[u8; 4] = b"jtcL";
/// The object's header before the key: magic and the key's length.
const OBJECT_HEAD: usize = OBJECT_MAGIC.len() + 4;
/// How much of an object the sweep reads first: the head and a key of ordinary length.
const SWEEP_READ: u64 = (OBJECT_HEAD + 1024) as u64;

/// A pointer to one write's object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pointer {
    name: String,
    len: u64,
}

impl Pointer {
    /// A pointer to a new, unique object for a value of `len` bytes.
    pub(super) fn fresh(len: usize) -> Self {
        Self {
            name: token(),
            len: len as u64,
        }
    }

    /// The pointer in `stored`, or `None` for an ordinary value.
    pub(super) fn parse(stored: &[u8]) -> Option<Self> {
        if stored.len() != POINTER_LEN || &stored[..4] != POINTER_MAGIC {
            return None;
        }
        let name = std::str::from_utf8(&stored[4..4 + NAME_LEN]).ok()?;
        if !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let len = u64::from_be_bytes(stored[4 + NAME_LEN..].try_into().ok()?);
        Some(Self {
            name: name.to_owned(),
            len,
        })
    }

    pub(super) fn to_bytes(&self) -> Bytes {
        let mut bytes = BytesMut::with_capacity(POINTER_LEN);
        bytes.put_slice(POINTER_MAGIC);
        bytes.put_slice(self.name.as_bytes());
        bytes.put_u64(self.len);
        bytes.freeze()
    }

    /// The object's name, for logs: it says nothing of the key.
    pub(super) fn name(&self) -> &str {
        &self.name
    }
}

/// What reading a pointer's object found.
pub(super) enum Fetched {
    Value(Bytes),
    /// No object, or not the object this pointer names (another key, another length).
    Missing,
}

/// The tier's objects: a store and the folder they live in.
#[derive(Debug)]
pub(super) struct Objects {
    store: std::sync::Arc<dyn ObjectStore>,
    /// `<the driver's root>/large`.
    root: Path,
}

impl Objects {
    pub(super) fn new(store: std::sync::Arc<dyn ObjectStore>, root: &Path) -> Self {
        Self {
            store,
            root: root.clone().join("large"),
        }
    }

    fn path(&self, name: &str) -> Path {
        self.root.clone().join(name)
    }

    /// Writes `value` as the object of `pointer`, for `key`. The value is sent as it is,
    /// behind a small header: no copy of it is made.
    pub(super) async fn write(&self, pointer: &Pointer, key: &str, value: Bytes) -> Result<()> {
        let key_len = u32::try_from(key.len()).map_err(|_| {
            crate::Error::from(ErrorKind::KeyTooLong {
                length: key.len(),
                limit: crate::MAX_KEY_BYTES,
            })
        })?;
        let mut head = BytesMut::with_capacity(OBJECT_HEAD + key.len());
        head.put_slice(OBJECT_MAGIC);
        head.put_u32(key_len);
        head.put_slice(key.as_bytes());
        let payload: PutPayload = [head.freeze(), value].into_iter().collect();
        self.store
            .put(&self.path(&pointer.name), payload)
            .await
            .map_err(|e| backend("put", e))?;
        Ok(())
    }

    /// The value behind `pointer`, read whole into one buffer; [`Fetched::Missing`] when the
    /// object is gone or is not the one the pointer names.
    pub(super) async fn read(&self, pointer: &Pointer, key: &str) -> Result<Fetched> {
        let found = match self.store.get(&self.path(&pointer.name)).await {
            Ok(found) => found,
            Err(object_store::Error::NotFound { .. }) => return Ok(Fetched::Missing),
            Err(error) => return Err(backend("get", error)),
        };
        // Longer than any object of this pointer could be: not read at all.
        let most = (OBJECT_HEAD + key.len()) as u64 + pointer.len;
        if found.meta.size != most {
            return Ok(Fetched::Missing);
        }
        let mut bytes = match found.bytes().await {
            Ok(bytes) => bytes,
            Err(object_store::Error::NotFound { .. }) => return Ok(Fetched::Missing),
            Err(error) => return Err(backend("get", error)),
        };
        match split_object(&bytes) {
            Some((stored_key, start))
                if stored_key == key.as_bytes() && (bytes.len() - start) as u64 == pointer.len =>
            {
                Ok(Fetched::Value(bytes.split_off(start)))
            }
            _ => Ok(Fetched::Missing),
        }
    }

    /// Deletes the object of `pointer`; an object already gone is fine.
    pub(super) async fn delete(&self, pointer: &Pointer) -> Result<()> {
        match self.store.delete(&self.path(&pointer.name)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(backend("delete", error)),
        }
    }

    /// Deletes every object of the tier (listed, then deleted in the store's batches).
    pub(super) async fn delete_all(&self) -> Result<()> {
        let listed = self
            .store
            .list(Some(&self.root))
            .map(|meta| meta.map(|meta| meta.location))
            .boxed();
        self.delete_stream(listed, "flush").await.map(drop)
    }

    /// Deletes the objects that no pointer names any more — overwritten by a small value,
    /// expired, or left by a write that failed half way — and returns how many. An object
    /// younger than `grace` is left alone: its pointer may be on its way. `points_at(key)`
    /// answers with the pointer the primary holds for `key` now.
    pub(super) async fn sweep<F, Fut>(&self, grace: Duration, points_at: F) -> Result<u64>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<Option<Pointer>>>,
    {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        let mut listed = self.store.list(Some(&self.root));
        let mut orphans = Vec::new();
        while let Some(meta) = listed.next().await {
            let meta = meta.map_err(|e| backend("prune", e))?;
            if now_ms.saturating_sub(meta.last_modified.timestamp_millis()) < grace_ms {
                continue;
            }
            let Some(name) = meta.location.filename().map(str::to_owned) else {
                continue;
            };
            let Some(key) = self.key_of(&meta.location, meta.size).await? else {
                // Not an object of the tier: left alone.
                continue;
            };
            if points_at(key)
                .await?
                .is_none_or(|pointer| pointer.name != name)
            {
                orphans.push(Ok(meta.location));
            }
        }
        self.delete_stream(futures_util::stream::iter(orphans).boxed(), "prune")
            .await
    }

    /// The key an object was written for, read from its head; `None` for a foreign object.
    async fn key_of(&self, location: &Path, size: u64) -> Result<Option<String>> {
        let read = |range: std::ops::Range<u64>| async move {
            match self.store.get_range(location, range).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(error) => Err(backend("prune", error)),
            }
        };
        if size < OBJECT_HEAD as u64 {
            return Ok(None);
        }
        let Some(mut head) = read(0..size.min(SWEEP_READ)).await? else {
            return Ok(None);
        };
        if &head[..4] != OBJECT_MAGIC {
            return Ok(None);
        }
        let key_len = u64::from(u32::from_be_bytes(head[4..8].try_into().unwrap_or([0; 4])));
        let end = OBJECT_HEAD as u64 + key_len;
        // No key is longer than the cache allows: anything else is not the tier's object.
        if key_len > crate::MAX_KEY_BYTES as u64 || end > size {
            return Ok(None);
        }
        if end > head.len() as u64 {
            let Some(whole) = read(0..end).await? else {
                return Ok(None);
            };
            head = whole;
        }
        Ok(String::from_utf8(head[OBJECT_HEAD..end as usize].to_vec()).ok())
    }

    async fn delete_stream(
        &self,
        paths: futures_util::stream::BoxStream<'static, object_store::Result<Path>>,
        operation: &'static str,
    ) -> Result<u64> {
        let mut deleted = self.store.delete_stream(paths);
        let mut count = 0;
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) => count += 1,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(backend(operation, error)),
            }
        }
        Ok(count)
    }
}

/// The key and where the value starts, in an object's bytes.
fn split_object(bytes: &[u8]) -> Option<(&[u8], usize)> {
    if bytes.len() < OBJECT_HEAD || &bytes[..4] != OBJECT_MAGIC {
        return None;
    }
    let key_len = u32::from_be_bytes(bytes[4..8].try_into().ok()?) as usize;
    let start = OBJECT_HEAD.checked_add(key_len)?;
    Some((bytes.get(OBJECT_HEAD..start)?, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pointer_round_trips_and_ordinary_values_are_not_pointers() {
        let pointer = Pointer::fresh(1_000_000);
        let bytes = pointer.to_bytes();
        assert_eq!(bytes.len(), POINTER_LEN);
        assert_eq!(Pointer::parse(&bytes), Some(pointer.clone()));
        assert_ne!(
            Pointer::fresh(1).name,
            pointer.name,
            "every write a new name"
        );
        for ordinary in [&b"42"[..], b"jtc\x01value", b"", &bytes[..POINTER_LEN - 1]] {
            assert_eq!(Pointer::parse(ordinary), None);
        }
        let mut not_hex = bytes.to_vec();
        not_hex[4] = b'/';
        assert_eq!(
            Pointer::parse(&not_hex),
            None,
            "a name is hex, never a path"
        );
    }

    #[test]
    fn an_object_names_its_key_and_a_truncated_one_is_not_read() {
        let mut object = Vec::from(&OBJECT_MAGIC[..]);
        object.extend_from_slice(&3u32.to_be_bytes());
        object.extend_from_slice(b"keyvalue");
        assert_eq!(split_object(&object), Some((&b"key"[..], 11)));
        assert_eq!(split_object(&object[..9]), None);
        object[7] = 200;
        assert_eq!(split_object(&object), None, "a key longer than the object");
    }
}
