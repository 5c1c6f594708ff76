//! The clock of in-process tables (the in-memory driver, the Redis near cache), read on every
//! lookup of an entry that can expire.
//!
//! A precise reading (the CPU's time-stamp counter, through [`MonotonicClock`]) costs 15–30 ns
//! on the machines measured, because it holds up the instructions around it; that was more
//! than the whole map lookup. Most lookups do not need it: an entry that expires in an hour is
//! live whatever the exact millisecond. So a lookup first reads the kernel's coarse monotonic
//! clock (`CLOCK_MONOTONIC_COARSE`: the time of the last timer tick, one memory read in the
//! vDSO, no counter) and asks only "is the expiry further away than any error this estimate
//! can have?". Entries closer to their expiry than [`GUARD_MS`], and every lookup where the
//! estimate cannot be trusted, read the precise clock as before. The answer is the same either
//! way; only its cost differs.
//!
//! The coarse clock and the precise clock are different time lines (the first is the kernel's,
//! slewed by NTP; the second counts CPU cycles scaled at start-up), so the estimate is the
//! coarse reading plus an offset measured from both clocks at one moment (an anchor). Its error
//! is bounded by how far the coarse clock lags the kernel's own time (a few timer ticks: Linux
//! forces an update after five missed ticks, 20 ms at 250 Hz) plus how far the two clocks drift
//! apart since the anchor (NTP slews at most 500 ppm: 4 ms over [`ANCHOR_MAX_AGE_MS`]).
//! [`GUARD_MS`], one second, is some forty times that. An anchor older than
//! [`ANCHOR_MAX_AGE_MS`] is not used; the next precise reading renews it.

use std::sync::{
    Arc,
    atomic::{
        AtomicI64, AtomicU64,
        Ordering::{Acquire, Relaxed, Release},
    },
};

use crate::{Clock, MonotonicClock, clock::SharedClock};

/// How far before its expiry an entry is still judged by the coarse estimate.
const GUARD_MS: u64 = 1_000;

/// How long an anchor is trusted.
const ANCHOR_MAX_AGE_MS: u64 = 8_000;

/// An anchor is renewed by a precise reading once it is this old (not on every precise
/// reading, so that lookups near expiry do not all write the same cache line).
const ANCHOR_RENEW_AGE_MS: u64 = 1_000;

/// Coarse clocks with a tick longer than this are not used at all.
const MAX_COARSE_RESOLUTION_MS: u64 = 100;

/// The clock of an in-memory store.
#[derive(Debug)]
pub(crate) enum LocalClock {
    /// The default: a precise monotonic clock, with the coarse estimate in front of it where
    /// the platform has a coarse clock.
    Monotonic {
        precise: MonotonicClock,
        coarse: Option<CoarseEstimate>,
    },
    /// A clock given by the user (a [`ManualClock`](crate::ManualClock) in tests): always read.
    Custom(SharedClock),
}

impl LocalClock {
    pub(crate) fn custom(clock: impl Clock) -> Self {
        Self::Custom(Arc::new(clock))
    }

    /// Whether `deadline` (Unix milliseconds on this clock) is still ahead: `now < deadline`,
    /// reading the precise clock only when the coarse estimate cannot tell.
    #[inline]
    pub(crate) fn is_before(&self, deadline: u64) -> bool {
        match self {
            Self::Monotonic {
                precise,
                coarse: Some(coarse),
            } => coarse.is_before(precise, deadline),
            _ => self.now_ms() < deadline,
        }
    }
}

impl Default for LocalClock {
    fn default() -> Self {
        let precise = MonotonicClock::new();
        let coarse = CoarseEstimate::new(&precise);
        Self::Monotonic { precise, coarse }
    }
}

impl Clock for LocalClock {
    #[inline]
    fn now_ms(&self) -> u64 {
        match self {
            Self::Monotonic { precise, .. } => precise.now_ms(),
            Self::Custom(clock) => clock.now_ms(),
        }
    }
}

/// The precise clock's time estimated from the coarse clock and an anchor.
#[derive(Debug)]
pub(crate) struct CoarseEstimate {
    /// Precise minus coarse milliseconds, measured at the anchor.
    offset: AtomicI64,
    /// The coarse clock's reading at the anchor.
    anchored_at: AtomicU64,
}

impl CoarseEstimate {
    /// `None` where the platform has no usable coarse clock.
    fn new(precise: &MonotonicClock) -> Option<Self> {
        if coarse_resolution_ms()? > MAX_COARSE_RESOLUTION_MS {
            return None;
        }
        let estimate = Self {
            offset: AtomicI64::new(0),
            anchored_at: AtomicU64::new(0),
        };
        estimate.anchor(precise.now_ms(), coarse_ms()?);
        Some(estimate)
    }

    #[inline]
    fn is_before(&self, precise: &MonotonicClock, deadline: u64) -> bool {
        let Some(coarse) = coarse_ms() else {
            return precise.now_ms() < deadline;
        };
        // Acquire: an anchor seen here comes with the offset stored before it (`anchor`).
        let anchored_at = self.anchored_at.load(Acquire);
        let age = coarse.wrapping_sub(anchored_at);
        if age < ANCHOR_MAX_AGE_MS {
            let estimate = coarse.wrapping_add_signed(self.offset.load(Relaxed));
            if estimate.saturating_add(GUARD_MS) < deadline {
                return true;
            }
        }
        self.is_before_precisely(precise, deadline, coarse, age)
    }

    #[cold]
    #[inline(never)]
    fn is_before_precisely(
        &self,
        precise: &MonotonicClock,
        deadline: u64,
        coarse: u64,
        age: u64,
    ) -> bool {
        let now = precise.now_ms();
        if age >= ANCHOR_RENEW_AGE_MS {
            self.anchor(now, coarse);
        }
        now < deadline
    }

    /// Records the offset between the clocks. The offset is stored first and the anchor's time
    /// with `Release`, so a reader that trusts the new anchor also reads the new offset; a reader
    /// that sees the old anchor with the new offset uses a fresher offset than it trusts, which
    /// is no worse. (Two threads renewing at once leave offsets measured nanoseconds apart.)
    fn anchor(&self, precise_ms: u64, coarse_ms: u64) {
        let offset = precise_ms.wrapping_sub(coarse_ms) as i64;
        self.offset.store(offset, Relaxed);
        self.anchored_at.store(coarse_ms, Release);
    }
}

/// The kernel's coarse monotonic clock in milliseconds.
#[cfg(target_os = "linux")]
#[inline]
fn coarse_ms() -> Option<u64> {
    use rustix::time::{ClockId, clock_gettime};
    let now = clock_gettime(ClockId::MonotonicCoarse);
    Some(timespec_ms(now.tv_sec, now.tv_nsec))
}

#[cfg(not(target_os = "linux"))]
#[inline]
fn coarse_ms() -> Option<u64> {
    None
}

#[cfg(target_os = "linux")]
fn coarse_resolution_ms() -> Option<u64> {
    use rustix::time::{ClockId, clock_getres};
    let resolution = clock_getres(ClockId::MonotonicCoarse);
    Some(timespec_ms(resolution.tv_sec, resolution.tv_nsec).max(1))
}

#[cfg(not(target_os = "linux"))]
fn coarse_resolution_ms() -> Option<u64> {
    None
}

#[cfg(target_os = "linux")]
#[inline]
fn timespec_ms(secs: i64, nanos: i64) -> u64 {
    (secs as u64)
        .wrapping_mul(1_000)
        .wrapping_add(nanos as u64 / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_agrees_with_the_precise_clock() {
        let clock = LocalClock::default();
        let LocalClock::Monotonic { coarse, .. } = &clock else {
            unreachable!()
        };
        if cfg!(target_os = "linux") {
            assert!(coarse.is_some(), "Linux has CLOCK_MONOTONIC_COARSE");
        }
        for _ in 0..10_000 {
            let now = clock.now_ms();
            // Far ahead: live; passed: not; at the very edge the precise clock decides.
            assert!(clock.is_before(now + 3_600_000));
            assert!(!clock.is_before(now));
            assert!(!clock.is_before(now.saturating_sub(5)));
            let edge = clock.now_ms() + 2;
            let live = clock.is_before(edge);
            assert!(live || clock.now_ms() >= edge);
        }
    }

    #[test]
    fn a_stale_or_wrong_anchor_falls_back_to_the_precise_clock() {
        let precise = MonotonicClock::new();
        let estimate = CoarseEstimate::new(&precise);
        if !cfg!(target_os = "linux") && estimate.is_none() {
            return; // no coarse clock on this platform: every read is precise
        }
        let estimate = estimate.expect("Linux has CLOCK_MONOTONIC_COARSE");
        // An anchor from long ago is not trusted, even with an offset that would say "live".
        estimate.offset.store(i64::MAX / 4, Relaxed);
        estimate.anchored_at.store(
            coarse_ms().unwrap().wrapping_sub(ANCHOR_MAX_AGE_MS + 1),
            Relaxed,
        );
        let now = precise.now_ms();
        assert!(!estimate.is_before(&precise, now));
        // The precise reading renewed the anchor, so the estimate is right again.
        assert!(estimate.anchored_at.load(Relaxed) + 10 >= coarse_ms().unwrap());
        assert!(estimate.is_before(&precise, precise.now_ms() + 3_600_000));
        assert!(!estimate.is_before(&precise, precise.now_ms()));
    }
}
