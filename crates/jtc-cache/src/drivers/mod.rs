//! The storage backends.

pub(crate) mod array;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod database;
pub(crate) mod file;
#[cfg(feature = "memcached")]
pub(crate) mod memcached;
#[cfg(feature = "redis")]
pub(crate) mod redis;
