//! What `remember` keeps in a cache handle: one flight per key being loaded in this process
//! ([`SingleFlight`]), and the settings of the fill lock that other processes wait on. Data
//! only: the fill itself is in `fill.rs`.

use std::time::Duration;

use bytes::Bytes;

use crate::single_flight::SingleFlight;

/// How long a fill holds its cross-process lock, and how long others wait for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FillLock {
    pub(crate) hold: Duration,
    pub(crate) wait: Duration,
}

/// What `remember` needs of a cache: one flight per key being loaded in this process, and
/// the fill lock's settings for the other processes.
#[derive(Debug)]
pub(crate) struct Filler {
    pub(crate) flights: SingleFlight<Bytes>,
    pub(crate) lock: Option<FillLock>,
}

impl Filler {
    pub(super) fn new(lock: Option<FillLock>) -> Self {
        Self {
            flights: SingleFlight::default(),
            lock: lock.filter(|lock| !lock.hold.is_zero()),
        }
    }
}
