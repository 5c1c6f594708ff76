//! The storage backends.

pub(crate) mod array;
pub(crate) mod file;
