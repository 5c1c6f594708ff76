//! The storage backends.

pub(crate) mod array;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) mod database;
#[cfg(feature = "dynamodb")]
pub(crate) mod dynamodb;
pub(crate) mod file;
#[cfg(feature = "memcached")]
pub(crate) mod memcached;
#[cfg(feature = "object-store")]
pub(crate) mod objects;
#[cfg(feature = "redis")]
pub(crate) mod redis;
