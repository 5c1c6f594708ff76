//! Bytes stored as they are, without a codec: `get_bytes` and `put_bytes` (under tags: in
//! tags.rs).
//!
//! For values an app has already serialized in a form of its own (a rendered page, a
//! protobuf, a response the HTTP cache keeps): no serde on the way in, and on the way out a
//! slice of what the driver returned — with the array driver and the near cache, the stored
//! buffer itself, not a copy.

use std::time::Duration;

use bytes::Bytes;

use super::{OpName, observe::Op};
use crate::{Cache, Result, codec, keys, keys::StoreKey};

#[cfg(doc)]
use crate::ErrorKind;

impl Cache {
    /// The bytes [`put_bytes`](Self::put_bytes) stored at `key`, or `None` when the entry is
    /// missing or expired. An entry stored otherwise (a typed value, a counter) is a miss and
    /// is removed, as [`get`](Self::get) treats a value of another type.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.put_bytes("page:/", b"<html>...</html>", Duration::from_secs(60)).await?;
    /// let page = cache.get_bytes("page:/").await?.unwrap();
    /// assert_eq!(&page[..], b"<html>...</html>");
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    pub async fn get_bytes(&self, key: &str) -> Result<Option<Bytes>> {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Get, key);
        op.run(op.read_bytes(&at)).await
    }

    /// [`get_bytes`](Self::get_bytes) answered at once, when the driver has the entry at
    /// hand: the array driver always, the file driver when the file is in the page cache, a
    /// Redis driver when its near cache holds a copy. `None` when the answer must wait —
    /// nothing was asked of the store then, and nothing counted: call `get_bytes`. (Also
    /// `None` for an entry stored otherwise, which `get_bytes` removes.) Counted and timed as
    /// `get_bytes` is.
    ///
    /// For a caller that can answer without a future when the value is at hand (the response
    /// cache answers such hits in its `call`, with no future to allocate).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// # use jtc_cache::{ArrayDriver, Cache}; use std::time::Duration;
    /// let cache = Cache::new(ArrayDriver::new());
    /// cache.put_bytes("page:/", b"<html>...</html>", Duration::from_secs(60)).await?;
    /// let page = cache.get_bytes_now("page:/").expect("held in process")?.unwrap();
    /// assert_eq!(&page[..], b"<html>...</html>");
    /// assert!(cache.get_bytes_now("page:/other").expect("held in process")?.is_none());
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn get_bytes_now(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        let at = match keys::entry(key) {
            Ok(at) => at,
            Err(error) => return Some(Err(error)),
        };
        let op = self.op(OpName::Get, key);
        op.now(|| match op.get_now(&at)? {
            Err(error) => Some(Err(error)),
            Ok(None) => {
                op.read_event(false);
                Some(Ok(None))
            }
            // An entry that does not decode is left to `get_bytes`, which removes it.
            Ok(Some(stored)) => {
                let bytes = codec::bytes_of(stored).ok()?;
                op.read_event(true);
                Some(Ok(Some(bytes)))
            }
        })
    }

    /// Stores `bytes` at `key` for `ttl`, as they are: no codec, read back with
    /// [`get_bytes`](Self::get_bytes) (or with `get::<serde_bytes::ByteBuf>`). The cache's
    /// size limit and compression apply as to any value.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put): [`ErrorKind::ValueTooLarge`] above
    /// [`max_value_size`](Self::max_value_size), or the backend's error.
    pub async fn put_bytes(&self, key: &str, bytes: &[u8], ttl: Duration) -> Result<()> {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Put, key);
        op.run(op.write_bytes(&at, bytes, ttl)).await
    }
}

impl Op<'_> {
    /// The bytes stored at `at` by `put_bytes`; removes an entry stored otherwise.
    pub(crate) async fn read_bytes(&self, at: &StoreKey<'_>) -> Result<Option<Bytes>> {
        let stored = self.get(at).await?;
        self.take_read(at, stored, "bytes", codec::bytes_of).await
    }

    /// Stores `bytes` at `at` as they are; a zero `ttl` removes the entry instead.
    pub(crate) async fn write_bytes(
        &self,
        at: &StoreKey<'_>,
        bytes: &[u8],
        ttl: Duration,
    ) -> Result<()> {
        if ttl.is_zero() {
            self.remove(at).await?;
            return Ok(());
        }
        let stored = self
            .cache()
            .limited(self.key(), codec::bytes_entry(bytes))?;
        self.store(at, stored, Some(ttl)).await
    }
}
