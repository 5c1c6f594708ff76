//! How a counter is stored: the plain decimal text of an `i64` (`b"42"`).
//!
//! Every driver stores counters this way — the same bytes the default codec writes for an
//! integer value — so a value written with `put` can be incremented, Redis can `INCRBY` it and
//! `redis-cli GET` shows `42`.

use crate::{ErrorKind, Result};

/// The integer in a stored counter: ASCII decimal, optional leading `-`, fitting `i64`.
pub(crate) fn parse_integer(bytes: &[u8]) -> Option<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The stored form of a counter.
pub(crate) fn format_integer(n: i64) -> Vec<u8> {
    itoa::Buffer::new().format(n).as_bytes().to_vec()
}

/// The value of a counter after adding `by` to its stored form (`None`: a new counter).
pub(crate) fn incremented(key: &str, stored: Option<&[u8]>, by: i64) -> Result<i64> {
    let current = match stored {
        Some(bytes) => parse_integer(bytes).ok_or_else(|| ErrorKind::NotAnInteger {
            key: key.to_owned(),
        })?,
        None => 0,
    };
    current.checked_add(by).ok_or_else(|| {
        ErrorKind::Overflow {
            key: key.to_owned(),
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_parsing_is_strict() {
        assert_eq!(parse_integer(b"0"), Some(0));
        assert_eq!(parse_integer(b"-12"), Some(-12));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b"1.0",
            b" 1",
            b"1e3",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_integer(bad), None, "{bad:?}");
        }
    }
}
