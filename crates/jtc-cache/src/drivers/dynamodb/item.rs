//! The item layout: one item per cache entry, in a table whose hash key is `key` (S).
//!
//! | attribute | type | holds |
//! |---|---|---|
//! | `key` | S | `<prefix><generation>/<key>`, or `<prefix><generation>#<BLAKE3 of the key>` for keys over 1,024 bytes |
//! | `v` | B | the value's bytes (absent on a counter) |
//! | `n` | N | a counter (`increment`, `hit`; absent on a value) |
//! | `xms` | N | when the entry expires, Unix milliseconds; absent: never |
//! | `ttl` | N | the same in whole seconds, rounded up, for DynamoDB's TTL clean-up |
//!
//! Plus one item per prefix, `<prefix>#generation` with `g` (S): the current generation,
//! which `flush` replaces.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;

use crate::{ErrorKind, Result};

pub(super) const KEY: &str = "key";
pub(super) const VALUE: &str = "v";
pub(super) const NUMBER: &str = "n";
pub(super) const EXPIRES_MS: &str = "xms";
pub(super) const TTL: &str = "ttl";
pub(super) const GENERATION: &str = "g";

/// DynamoDB's item limit: 400 KB, attribute names and values together.
pub(super) const MAX_ITEM: usize = 400 * 1024;
/// A generation's length: 12 hex digits.
pub(super) const GENERATION_LEN: usize = 12;
/// Keys longer than this are stored under their digest (DynamoDB's hash keys end at 2,048
/// bytes).
const MAX_PLAIN_KEY: usize = 1024;

pub(super) type Item = HashMap<String, AttributeValue>;

/// The item key of `key` under `prefix` and `generation`.
pub(super) fn item_key(prefix: &str, generation: &str, key: &str) -> String {
    if key.len() <= MAX_PLAIN_KEY {
        let mut out = String::with_capacity(prefix.len() + generation.len() + 1 + key.len());
        out.push_str(prefix);
        out.push_str(generation);
        out.push('/');
        out.push_str(key);
        out
    } else {
        format!(
            "{prefix}{generation}#{}",
            blake3::hash(key.as_bytes()).to_hex()
        )
    }
}

/// Whether `stored` is the item key of an entry under `prefix` (any generation).
pub(super) fn is_entry_of(prefix: &str, stored: &str) -> bool {
    stored.strip_prefix(prefix).is_some_and(|rest| {
        let bytes = rest.as_bytes();
        bytes.len() > GENERATION_LEN
            && bytes[..GENERATION_LEN].iter().all(u8::is_ascii_hexdigit)
            && matches!(bytes[GENERATION_LEN], b'/' | b'#')
    })
}

/// The item holding `prefix`'s generation.
pub(super) fn generation_key(prefix: &str) -> String {
    format!("{prefix}#generation")
}

/// A number attribute.
pub(super) fn number(n: impl itoa::Integer) -> AttributeValue {
    AttributeValue::N(itoa::Buffer::new().format(n).to_owned())
}

/// What an item holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stored {
    Value(Bytes),
    Counter(i64),
}

/// An item as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) stored: Stored,
    /// Unix milliseconds; `None`: never expires.
    pub(super) expires_ms: Option<u64>,
}

impl Entry {
    /// Reads an item of this driver; `None` for one it did not write.
    pub(super) fn decode(item: &Item) -> Option<Self> {
        let expires_ms = match item.get(EXPIRES_MS) {
            Some(AttributeValue::N(ms)) => Some(ms.parse().ok()?),
            _ => None,
        };
        let stored = match (item.get(NUMBER), item.get(VALUE)) {
            (Some(AttributeValue::N(n)), _) => Stored::Counter(n.parse().ok()?),
            (_, Some(AttributeValue::B(blob))) => {
                Stored::Value(Bytes::copy_from_slice(blob.as_ref()))
            }
            _ => return None,
        };
        Some(Self { stored, expires_ms })
    }

    pub(super) fn live(&self, now_ms: u64) -> bool {
        self.expires_ms.is_none_or(|at| at > now_ms)
    }

    /// The stored bytes: a counter as its decimal text, as every driver stores counters.
    pub(super) fn bytes(self) -> Bytes {
        match self.stored {
            Stored::Value(bytes) => bytes,
            Stored::Counter(n) => Bytes::copy_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        }
    }

    /// The counter this entry holds: a counter, or a value that is an integer's text.
    pub(super) fn integer(&self, key: &str) -> Result<i64> {
        match &self.stored {
            Stored::Counter(n) => Ok(*n),
            Stored::Value(bytes) => std::str::from_utf8(bytes)
                .ok()
                .and_then(|text| text.parse().ok())
                .ok_or_else(|| {
                    ErrorKind::NotAnInteger {
                        key: key.to_owned(),
                    }
                    .into()
                }),
        }
    }
}

/// The expiry attributes of an entry that expires at `deadline_ms` (none for `None`).
pub(super) fn expiry(item: &mut Item, deadline_ms: Option<u64>) {
    if let Some(ms) = deadline_ms {
        item.insert(EXPIRES_MS.to_owned(), number(ms));
        item.insert(TTL.to_owned(), number(ms.div_ceil(1000)));
    }
}

/// An item holding `value`.
pub(super) fn value_item(key: String, value: &Bytes, deadline_ms: Option<u64>) -> Item {
    let mut item = Item::with_capacity(4);
    item.insert(KEY.to_owned(), AttributeValue::S(key));
    item.insert(
        VALUE.to_owned(),
        AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(value.to_vec())),
    );
    expiry(&mut item, deadline_ms);
    item
}

/// An item holding the counter `n`.
pub(super) fn counter_item(key: String, n: i64, deadline_ms: Option<u64>) -> Item {
    let mut item = Item::with_capacity(4);
    item.insert(KEY.to_owned(), AttributeValue::S(key));
    item.insert(NUMBER.to_owned(), number(n));
    expiry(&mut item, deadline_ms);
    item
}

/// The key attribute alone, for reads and deletes.
pub(super) fn key_only(key: String) -> Item {
    HashMap::from([(KEY.to_owned(), AttributeValue::S(key))])
}

/// How many bytes the largest value may have under `item_key`: DynamoDB counts attribute
/// names and values; the expiry numbers take at most 40 more.
pub(super) fn value_limit(item_key: &str) -> usize {
    MAX_ITEM.saturating_sub(KEY.len() + item_key.len() + VALUE.len() + 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_go_under_their_digest_and_cannot_meet_a_plain_key() {
        let long = "k".repeat(5_000);
        let stored = item_key("p:", "0a1b", &long);
        assert!(
            stored.len() < 100 && stored.starts_with("p:0a1b#"),
            "{stored}"
        );
        assert_eq!(stored, item_key("p:", "0a1b", &long));
        // A plain key that looks like a digest still has the `/`.
        let digest = stored.trim_start_matches("p:0a1b#");
        assert_ne!(item_key("p:", "0a1b", &format!("#{digest}")), stored);
        assert_eq!(item_key("p:", "0a1b", "../x"), "p:0a1b/../x");
    }

    #[test]
    fn entries_of_a_prefix_are_told_from_a_longer_prefix() {
        let generation = "0123456789ab";
        assert!(is_entry_of("app:", &item_key("app:", generation, "k")));
        assert!(is_entry_of(
            "app:",
            &item_key("app:", generation, &"k".repeat(2_000))
        ));
        assert!(!is_entry_of("app:", &item_key("app:eu:", generation, "k")));
        assert!(!is_entry_of("app:", &generation_key("app:")));
        assert!(!is_entry_of("app:", "app:"));
    }

    #[test]
    fn entries_decode_what_was_encoded() {
        let value = Bytes::from_static(b"\x00bytes");
        let item = value_item("k".into(), &value, Some(1_500));
        assert_eq!(item.get(TTL), Some(&AttributeValue::N("2".into())));
        let entry = Entry::decode(&item).unwrap();
        assert_eq!(entry.expires_ms, Some(1_500));
        assert!(entry.live(1_499) && !entry.live(1_500));
        assert_eq!(entry.bytes(), value);
        let entry = Entry::decode(&counter_item("k".into(), -7, None)).unwrap();
        assert_eq!(entry.integer("k").unwrap(), -7);
        assert_eq!(entry.bytes(), Bytes::from_static(b"-7"));
        // Someone else's item is not an entry.
        assert_eq!(Entry::decode(&key_only("k".into())), None);
    }

    #[test]
    fn integers_in_values_are_counters_and_text_is_not() {
        let entry = |bytes: &'static [u8]| Entry {
            stored: Stored::Value(Bytes::from_static(bytes)),
            expires_ms: None,
        };
        assert_eq!(entry(b"41").integer("k").unwrap(), 41);
        assert!(matches!(
            entry(b"forty").integer("k").unwrap_err().kind(),
            ErrorKind::NotAnInteger { .. }
        ));
    }
}
