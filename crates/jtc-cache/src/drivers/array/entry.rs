//! One in-memory entry: its value (bytes, or a counter kept as a number) and its expiry.

use bytes::Bytes;

use crate::local::clock::LocalClock;
use crate::{
    ErrorKind, Result,
    counter::{format_integer, incremented},
};

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) value: Stored,
    /// Unix milliseconds; `None` never expires.
    pub(super) expires_at: Option<u64>,
}

/// A value as held in memory. Counters are kept as numbers once incremented, so further
/// increments do no parsing or formatting; readers still get the plain decimal bytes.
#[derive(Debug)]
pub(super) enum Stored {
    Bytes(Bytes),
    Integer(i64),
}

impl Stored {
    #[inline]
    pub(super) fn to_bytes(&self) -> Bytes {
        match self {
            Self::Bytes(bytes) => bytes.clone(),
            Self::Integer(n) => integer_bytes(*n),
        }
    }

    pub(super) fn into_bytes(self) -> Bytes {
        match self {
            Self::Bytes(bytes) => bytes,
            Self::Integer(n) => format_integer(n).into(),
        }
    }

    /// The counter after adding `by`; the stored value is unchanged on error.
    pub(super) fn incremented(&self, key: &str, by: i64) -> Result<i64> {
        match self {
            Self::Integer(n) => n.checked_add(by).ok_or_else(|| overflow(key)),
            Self::Bytes(bytes) => incremented(key, Some(bytes), by),
        }
    }
}

impl Entry {
    pub(super) fn is_live(&self, now: u64) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }

    /// Like `is_live`, asking the clock only about entries that can expire, and cheaply about
    /// those far from their expiry (see `clock.rs`).
    #[inline]
    pub(super) fn is_live_at(&self, clock: &LocalClock) -> bool {
        self.expires_at.is_none_or(|at| clock.is_before(at))
    }

    /// A placeholder for a new counter, expired so that it reads as absent.
    pub(super) fn vacant() -> Self {
        Self {
            value: Stored::Integer(0),
            expires_at: Some(0),
        }
    }
}

/// A counter's decimal bytes: off the path of plain values.
#[cold]
#[inline(never)]
fn integer_bytes(n: i64) -> Bytes {
    format_integer(n).into()
}

fn overflow(key: &str) -> crate::Error {
    ErrorKind::Overflow {
        key: key.to_owned(),
    }
    .into()
}
