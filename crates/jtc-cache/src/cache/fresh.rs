//! The freshness marker of a `flexible` value: an internal record next to the entry that
//! lives for the value's fresh time. While it lives the value is fresh; once it is gone the
//! value is stale. Written by the fill that stores such a value, read by `flexible`.

use std::time::Duration;

use bytes::Bytes;

use super::observe::Op;
use crate::{
    Result, keys,
    keys::{Record, StoreKey},
};

/// The key of the marker of the value at `at`.
pub(super) fn marker(at: &StoreKey<'_>) -> StoreKey<'static> {
    keys::internal(Record::Fresh, at.as_str())
}

/// Stores the marker that says the value at `at` is fresh for `fresh`.
pub(super) async fn mark(op: &Op<'_>, at: &StoreKey<'_>, fresh: Duration) -> Result<()> {
    op.put(&marker(at), Bytes::from_static(b"1"), Some(fresh))
        .await
}
