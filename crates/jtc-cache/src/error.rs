//! The one error type of this crate.

use std::{path::PathBuf, time::Duration};

/// A `Result` whose error defaults to this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a cache operation.
///
/// A value that can no longer be decoded is *not* an error: the cache treats it as a miss,
/// removes it and logs it. Errors are what the caller must see: a backend that fails, a value
/// that cannot be encoded, a counter that is not a number, a configuration that is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file operation of the file driver failed.
    #[error("cache file operation failed on {path}")]
    Io {
        /// The file or folder the operation was on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A value could not be encoded for storage.
    #[error("failed to encode the value for cache key {key:?}")]
    Encode {
        /// The key the value was meant for.
        key: String,
        /// The serializer's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// `increment` or `decrement` found a stored value that is not an integer.
    ///
    /// The stored value is left as it was.
    #[error("the value at cache key {key:?} is not an integer")]
    NotAnInteger {
        /// The key whose value is not an integer.
        key: String,
    },

    /// `increment` or `decrement` would leave the range of `i64`.
    ///
    /// The stored value is left as it was.
    #[error("incrementing cache key {key:?} would overflow an i64")]
    Overflow {
        /// The key of the counter.
        key: String,
    },

    /// A key (or lock name) is longer than [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES).
    #[error("a cache key of {length} bytes is longer than the limit of {limit} bytes")]
    KeyTooLong {
        /// The key's length in bytes (the key itself is not repeated: it is too long to log).
        length: usize,
        /// The limit.
        limit: usize,
    },

    /// A value is larger, once encoded, than the cache's limit
    /// ([`Cache::max_value_size`](crate::Cache::max_value_size)). Nothing was stored.
    #[error(
        "the value for cache key {key:?} is {size} bytes as stored, over the limit of {limit} bytes"
    )]
    ValueTooLarge {
        /// The key the value was meant for.
        key: String,
        /// The value's encoded size.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// A configuration value is missing or wrong.
    #[error("invalid {variable}={value:?}: {reason}")]
    Config {
        /// The setting, named as its environment variable (`CACHE_DRIVER`).
        variable: &'static str,
        /// The value that was given (never a secret).
        value: String,
        /// What is wrong and what would be right.
        reason: String,
    },

    /// The backend did not answer in time.
    #[error("cache {operation} timed out after {after:?}")]
    Timeout {
        /// The operation that timed out (`get`, `put`, `connect`, ...).
        operation: &'static str,
        /// The time limit that ran out.
        after: Duration,
    },

    /// Redis answered with an error, or the connection to it failed.
    #[cfg(feature = "redis")]
    #[error("redis {operation} failed")]
    Redis {
        /// The cache operation (`get`, `put`, `connect`, ...).
        operation: &'static str,
        /// The Redis client's error.
        #[source]
        source: redis::RedisError,
    },

    /// A blocking file task of the file driver was cancelled or panicked.
    #[error("a background file task of the cache failed")]
    Task(#[source] tokio::task::JoinError),

    /// [`Lock::acquire_timeout`](crate::Lock::acquire_timeout) waited its whole time and the
    /// lock stayed taken.
    #[error("lock {name:?} was still taken after waiting {waited:?}")]
    LockTimeout {
        /// The lock's name.
        name: String,
        /// How long the caller waited.
        waited: Duration,
    },

    /// A lock was asked for with a zero TTL, which would expire before anyone held it.
    #[error("lock {name:?} needs a TTL above zero (Cache::lock_forever makes a lock without one)")]
    ZeroLockTtl {
        /// The lock's name.
        name: String,
    },

    /// The closure given to [`Cache::try_remember`](crate::Cache::try_remember) failed.
    ///
    /// Nothing was stored.
    #[error("the value loader for cache key {key:?} failed")]
    Loader {
        /// The key being computed.
        key: String,
        /// The loader's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// An error and its causes on one line, for log fields.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}
