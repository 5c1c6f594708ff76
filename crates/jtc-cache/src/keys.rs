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

/// The storage key of a user's key; an error for a key over [`MAX_KEY_BYTES`].
#[inline]
pub(crate) fn entry(key: &str) -> Result<Cow<'_, str>> {
    check(key)?;
    Ok(if key.as_bytes().first() == Some(&0) {
        Cow::Owned(format!("\0{key}"))
    } else {
        Cow::Borrowed(key)
    })
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
pub(crate) fn internal(kind: &str, name: &str) -> String {
    debug_assert!(!kind.is_empty() && !kind.starts_with('\0'));
    let mut key = String::with_capacity(2 + kind.len() + name.len());
    key.push('\0');
    key.push_str(kind);
    key.push(':');
    key.push_str(name);
    key
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
        assert_eq!(entry("lock:a"), "lock:a");
        assert!(matches!(entry("plain"), Cow::Borrowed(_)));
        let sneaky = "\0lock:a";
        assert_ne!(entry(sneaky), internal("lock", "a"));
        assert_eq!(entry(sneaky), "\0\0lock:a");
        assert_eq!(internal("lock", "a"), "\0lock:a");
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
