//! The one error type of this crate.

use std::{fmt, path::PathBuf, time::Duration};

/// A `Result` whose error defaults to this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a cache operation; what went wrong is its
/// [`kind`](Error::kind).
///
/// A value that can no longer be decoded is *not* an error: the cache treats it as a miss,
/// removes it and logs it. Errors are what the caller must see: a backend that fails, a value
/// that cannot be encoded, a counter that is not a number, a configuration that is wrong.
///
/// The error is one pointer wide (its details live on the heap), so a `Result` of this crate
/// costs no more to move than the value it carries: cache reads that succeed, by far the most
/// common case, do not pay for the size of the rarest error.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use jtc_cache::{ArrayDriver, Cache, ErrorKind};
/// use std::time::Duration;
///
/// let cache = Cache::new(ArrayDriver::new());
/// cache.put("name", &"ada", Duration::from_secs(60)).await?;
/// let err = cache.increment("name", 1).await.unwrap_err();
/// assert!(matches!(err.kind(), ErrorKind::NotAnInteger { key } if key == "name"));
/// assert_eq!(err.to_string(), r#"the value at cache key "name" is not an integer"#);
/// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
/// ```
pub struct Error(Box<ErrorKind>);

impl Error {
    /// What went wrong, with its details.
    pub fn kind(&self) -> &ErrorKind {
        &self.0
    }

    /// What went wrong, owned.
    pub fn into_kind(self) -> ErrorKind {
        *self.0
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Error {
    /// A failed database `operation`.
    pub(crate) fn database(operation: &'static str, source: sqlx::Error) -> Self {
        ErrorKind::Database { operation, source }.into()
    }
}

#[cfg(feature = "redis")]
impl Error {
    /// A failed Redis `operation`.
    pub(crate) fn redis(operation: &'static str, source: redis::RedisError) -> Self {
        ErrorKind::Redis { operation, source }.into()
    }
}

impl From<ErrorKind> for Error {
    #[cold]
    fn from(kind: ErrorKind) -> Self {
        Self(Box::new(kind))
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// The kinds of [`Error`], each with its details.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
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

    /// A configuration value is missing or wrong. Its message shows the value with any
    /// secret in it masked ([`mask_url`](crate::mask_url)).
    #[error("invalid {variable}={:?}: {reason}", crate::mask_url(.value))]
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
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    #[error("redis {operation} failed")]
    Redis {
        /// The cache operation (`get`, `put`, `connect`, ...).
        operation: &'static str,
        /// The Redis client's error.
        #[source]
        source: redis::RedisError,
    },

    /// The database answered with an error, or the connection to it failed.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    #[cfg_attr(docsrs, doc(cfg(any(feature = "sqlite", feature = "postgres"))))]
    #[error("database {operation} failed")]
    Database {
        /// The cache operation (`get`, `put`, `connect`, ...).
        operation: &'static str,
        /// The database client's error.
        #[source]
        source: sqlx::Error,
    },

    /// A memcached server failed, timed out, could not be reached or refused a command.
    #[cfg(feature = "memcached")]
    #[cfg_attr(docsrs, doc(cfg(feature = "memcached")))]
    #[error("memcached {operation} on {server} failed: {reason}")]
    Memcached {
        /// What the cache was doing (`get`, `put`, ...).
        operation: &'static str,
        /// The server's `host:port`.
        server: String,
        /// What went wrong.
        reason: String,
    },

    /// The backend of a driver written outside this crate failed: it could not be reached,
    /// timed out or answered with an error of its own. Outside drivers return this for
    /// everything that is the store's fault rather than the caller's, so that
    /// [`Error::is_backend`] (and with it a rate limiter's outage policy) sees it as an outage.
    ///
    /// ```
    /// use jtc_cache::{Error, ErrorKind};
    /// let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
    /// let error = Error::from(ErrorKind::Backend {
    ///     driver: "etcd",
    ///     operation: "get",
    ///     source: Box::new(refused),
    /// });
    /// assert!(error.is_backend());
    /// assert_eq!(error.to_string(), "etcd get failed");
    /// ```
    #[error("{driver} {operation} failed")]
    Backend {
        /// The driver's name (`etcd`, `dynamodb`, ...).
        driver: &'static str,
        /// The cache operation (`get`, `put`, `connect`, ...).
        operation: &'static str,
        /// The client library's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A Redis Cluster `flush` could not reach every master that holds slots: the entries on
    /// the masters it did not reach are still there, and come back when those masters do.
    /// Nothing is wrong with the entries it did reach (they are gone); run the flush again
    /// once the cluster is whole.
    #[error("flush reached masters for {covered} of 16384 cluster slots; not reached: {unreached}")]
    IncompleteFlush {
        /// How many of the 16384 slots belong to masters the flush scanned.
        covered: u32,
        /// The masters it did not reach (`host:port` and why), or `unassigned slots`.
        unreached: String,
    },

    /// The driver does not offer this operation (a driver written outside this crate that
    /// keeps the default of an optional [`CacheDriver`](crate::CacheDriver) method).
    #[error("the {driver} cache driver does not support {operation}")]
    Unsupported {
        /// The operation (`rate`).
        operation: &'static str,
        /// The driver's name.
        driver: &'static str,
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

impl ErrorKind {
    /// A short, stable name for this kind of error (`io`, `timeout`, `redis`, ...): the `kind`
    /// label of the `jtc_cache_errors_total` metric, and handy in logs and alerts.
    ///
    /// ```
    /// use jtc_cache::ErrorKind;
    /// use std::time::Duration;
    /// let kind = ErrorKind::Timeout { operation: "get", after: Duration::from_secs(1) };
    /// assert_eq!(kind.code(), "timeout");
    /// ```
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Encode { .. } => "encode",
            Self::NotAnInteger { .. } => "not_an_integer",
            Self::Overflow { .. } => "overflow",
            Self::KeyTooLong { .. } => "key_too_long",
            Self::ValueTooLarge { .. } => "value_too_large",
            Self::Config { .. } => "config",
            Self::Timeout { .. } => "timeout",
            #[cfg(feature = "redis")]
            Self::Redis { .. } => "redis",
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            Self::Database { .. } => "database",
            #[cfg(feature = "memcached")]
            Self::Memcached { .. } => "memcached",
            Self::Backend { .. } => "backend",
            Self::IncompleteFlush { .. } => "incomplete_flush",
            Self::Unsupported { .. } => "unsupported",
            Self::Task(_) => "task",
            Self::LockTimeout { .. } => "lock_timeout",
            Self::ZeroLockTtl { .. } => "zero_lock_ttl",
            Self::Loader { .. } => "loader",
        }
    }
}

impl Error {
    /// Whether the backend failed (a file operation, Redis, a database, memcached, a timeout,
    /// an outside driver's [`ErrorKind::Backend`]), as opposed to the call being refused for
    /// its input (a key too long, a value that is not a counter, a bad configuration).
    ///
    /// Only backend failures say anything about the store's health: a rate limiter applies
    /// its outage policy to them, and to nothing else, so one request with a bad key cannot
    /// switch the policy on for every client.
    ///
    /// ```
    /// use jtc_cache::{Error, ErrorKind};
    /// let too_long = Error::from(ErrorKind::KeyTooLong { length: 70_000, limit: 65_536 });
    /// assert!(!too_long.is_backend());
    /// let timeout = Error::from(ErrorKind::Timeout {
    ///     operation: "get",
    ///     after: std::time::Duration::from_secs(1),
    /// });
    /// assert!(timeout.is_backend());
    /// ```
    pub fn is_backend(&self) -> bool {
        match self.kind() {
            ErrorKind::Io { .. }
            | ErrorKind::Backend { .. }
            | ErrorKind::Timeout { .. }
            | ErrorKind::IncompleteFlush { .. }
            | ErrorKind::Task(_) => true,
            #[cfg(feature = "redis")]
            ErrorKind::Redis { .. } => true,
            #[cfg(any(feature = "sqlite", feature = "postgres"))]
            ErrorKind::Database { .. } => true,
            #[cfg(feature = "memcached")]
            ErrorKind::Memcached { .. } => true,
            _ => false,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ErrorKind::Io {
            path: path.into(),
            source,
        }
        .into()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation returns a `Result`; an error as wide as its largest variant made reads of
    /// the in-memory driver measurably slower (docs/benchmarks.md).
    #[test]
    fn results_are_no_wider_than_their_values() {
        assert_eq!(size_of::<Error>(), size_of::<usize>());
        assert_eq!(
            size_of::<Result<Option<bytes::Bytes>>>(),
            size_of::<Option<bytes::Bytes>>() + size_of::<usize>()
        );
    }

    #[test]
    fn display_debug_and_source_are_the_kinds() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let error = Error::io("/cache/ab", io);
        assert_eq!(
            error.to_string(),
            "cache file operation failed on /cache/ab"
        );
        assert!(format!("{error:?}").starts_with("Io {"), "{error:?}");
        let source = std::error::Error::source(&error).expect("the io error");
        assert_eq!(source.to_string(), "denied");
        assert!(matches!(error.into_kind(), ErrorKind::Io { .. }));
    }
}
