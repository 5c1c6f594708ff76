//! How a value becomes the bytes a driver stores: the codec, the size limit, compression.

use bytes::Bytes;
use serde::Serialize;

use crate::{Cache, ErrorKind, Result};

impl Cache {
    /// Encodes `value` with this cache's codec, refusing oversized values and compressing
    /// large ones.
    pub(crate) fn encode<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<Bytes> {
        let encoded = self.inner.settings.codec.encode(key, value)?;
        self.limited(key, encoded)
    }

    /// `encoded` as it is stored: refused above the size limit, compressed when large.
    pub(crate) fn limited(&self, key: &str, encoded: Vec<u8>) -> Result<Bytes> {
        let settings = &self.inner.settings;
        // The limit is on the encoded size, before compression: that is what every reader
        // holds in memory, however well the value compresses.
        if encoded.len() > settings.max_value {
            return Err(ErrorKind::ValueTooLarge {
                key: key.to_owned(),
                size: encoded.len(),
                limit: settings.max_value,
            }
            .into());
        }
        #[cfg(feature = "compression")]
        #[allow(clippy::let_and_return)]
        let encoded = match settings.compress_above {
            Some(threshold) => crate::codec::compress(encoded, threshold),
            None => encoded,
        };
        Ok(Bytes::from(encoded))
    }
}
