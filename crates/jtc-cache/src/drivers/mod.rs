//! The storage backends.

pub(crate) mod array;
pub(crate) mod file;
#[cfg(feature = "redis")]
pub(crate) mod redis;
