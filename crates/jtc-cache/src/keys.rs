//! Where the cache's own bookkeeping lives next to users' entries.
//!
//! Locks, tag versions, freshness markers and fill locks are stored through the same driver as
//! users' values, so they must never collide with a key a user can pass. Internal keys start
//! with a NUL byte followed by a kind (`\0lock:name`). A user key that itself starts with NUL
//! gets one more NUL in front (`\0x` is stored as `\0\0x`), so the two sets can never meet, and
//! every other key — all keys anyone writes in practice — is stored exactly as given.

use std::borrow::Cow;

use crate::{ErrorKind, Result};

/// The longest key (and lock name) the cache accepts, in bytes of UTF-8.
///
/// Far above any real key (the conformance suite uses 10 kB keys), low enough that a key
/// built from unbounded input (a whole request body, say) is refused with a clear error
/// instead of being hashed and shipped to the backend on every call.
pub const MAX_KEY_BYTES: usize = 64 * 1024;

/// A key as a driver stores it: a user's key (escaped when it starts with NUL) or the key of
/// one of the cache's own records. Built only in this module, so a raw user key can never reach
/// a driver by mistake: every driver call of the cache takes a `StoreKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreKey<'a>(Cow<'a, str>);

impl StoreKey<'_> {
    /// The key as the driver sees it.
    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The same key, owning its text (for work that outlives the caller's borrow).
    pub(crate) fn into_owned(self) -> StoreKey<'static> {
        StoreKey(Cow::Owned(self.0.into_owned()))
    }
}

/// The kinds of record the cache keeps next to users' entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    /// A lock, by its name.
    Lock,
    /// A tag's current version, by the tag.
    Tag,
    /// An entry written through tags, by the tags' versions and the key.
    Tagged,
    /// The marker that a `flexible` value is still fresh, by the entry's storage key.
    Fresh,
    /// The cross-process lock of a `remember` fill, by the entry's storage key.
    Fill,
    /// The lock of a `flexible` background refresh, by the entry's storage key.
    Refresh,
}

impl Record {
    fn prefix(self) -> &'static str {
        match self {
            Self::Lock => "lock",
            Self::Tag => "tag",
            Self::Tagged => "tagged",
            Self::Fresh => "fresh",
            Self::Fill => "fill",
            Self::Refresh => "refresh",
        }
    }
}

/// The storage key of a user's key; an error for a key over [`MAX_KEY_BYTES`].
#[inline]
pub(crate) fn entry(key: &str) -> Result<StoreKey<'_>> {
    check(key)?;
    Ok(StoreKey(if key.as_bytes().first() == Some(&0) {
        Cow::Owned(format!("\0{key}"))
    } else {
        Cow::Borrowed(key)
    }))
}

/// Refuses a key or name over [`MAX_KEY_BYTES`].
#[inline]
pub(crate) fn check(key: &str) -> Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(ErrorKind::KeyTooLong {
            length: key.len(),
            limit: MAX_KEY_BYTES,
        }
        .into());
    }
    Ok(())
}

/// The storage key of the cache's own record of `kind` about `name`.
pub(crate) fn internal(kind: Record, name: &str) -> StoreKey<'static> {
    let kind = kind.prefix();
    let mut key = String::with_capacity(2 + kind.len() + name.len());
    key.push('\0');
    key.push_str(kind);
    key.push(':');
    key.push_str(name);
    StoreKey(Cow::Owned(key))
}

/// A fresh random token: 128 bits as 32 hex digits. Lock owners and tag versions.
pub(crate) fn token() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness (a very unusual sandbox): fall back to a hash of what differs
        // between calls. Unique, if not unpredictable.
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut hasher = blake3::Hasher::new();
        hasher.update(&std::process::id().to_le_bytes());
        hasher.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        hasher.update(&now.as_nanos().to_le_bytes());
        bytes.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
    }
    let mut hex = String::with_capacity(32);
    for byte in bytes {
        hex.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
        hex.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_keys_never_meet_internal_keys() {
        let entry = |key| entry(key).unwrap();
        assert_eq!(entry("lock:a").as_str(), "lock:a");
        assert!(matches!(entry("plain").0, Cow::Borrowed(_)));
        let sneaky = "\0lock:a";
        assert_ne!(entry(sneaky), internal(Record::Lock, "a"));
        assert_eq!(entry(sneaky).as_str(), "\0\0lock:a");
        assert_eq!(internal(Record::Lock, "a").as_str(), "\0lock:a");
    }

    #[test]
    fn keys_over_the_limit_are_refused() {
        assert!(entry(&"k".repeat(MAX_KEY_BYTES)).is_ok());
        let err = entry(&"k".repeat(MAX_KEY_BYTES + 1)).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::KeyTooLong { length, .. } if *length == MAX_KEY_BYTES + 1)
        );
    }

    #[test]
    fn tokens_are_distinct_hex() {
        let a = token();
        let b = token();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
