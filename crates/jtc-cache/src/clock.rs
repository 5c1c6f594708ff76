//! Wall-clock time for expiry, replaceable in tests.
//!
//! Entries expire at an absolute wall-clock instant (Unix milliseconds): the file driver writes
//! that instant into each file, read from the [`SystemClock`], so that every process reading
//! the folder agrees on it. The in-process driver reads a [`MonotonicClock`] instead: Unix
//! milliseconds anchored at its creation that never step back when the system clock is set,
//! so its expiries are wall-clock instants too, within the process.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// A source of wall-clock time in Unix milliseconds.
///
/// The default is [`SystemClock`]. Tests use [`ManualClock`] to step time without sleeping.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock before 1970 is a broken machine; treat it as the epoch rather than panic.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

/// A fast, monotonic clock for in-process expiry: Unix milliseconds at its creation plus the
/// monotonic time elapsed since, read from the CPU's time-stamp counter where that is
/// reliable (`quanta`, as moka does), in about 10 ns instead of a system call's 30–40.
///
/// It never jumps when the wall clock is set. It is not for expiry shared between processes
/// (the file driver), since clocks of processes started at different times drift apart.
#[derive(Debug, Clone)]
pub struct MonotonicClock {
    clock: quanta::Clock,
    /// The clock's raw reading (TSC ticks where available) at creation.
    start_raw: u64,
    start_ms: u64,
}

impl MonotonicClock {
    /// A clock anchored at the current wall-clock time.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        Self {
            start_raw: clock.raw(),
            start_ms: SystemClock.now_ms(),
            clock,
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    #[inline]
    fn now_ms(&self) -> u64 {
        // Whole-integer arithmetic on the raw reading: no `Duration` or 128-bit division on
        // the path of every in-memory write.
        let elapsed_ns = self.clock.delta_as_nanos(self.start_raw, self.clock.raw());
        self.start_ms + elapsed_ns / 1_000_000
    }
}

/// A clock that only moves when told to: for tests of expiry and rate-limit windows.
///
/// Clones share the same time, so a test can keep one clone and hand another to a driver.
///
/// ```
/// use jtc_cache::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(1_000);
/// clock.advance(Duration::from_millis(250));
/// assert_eq!(clock.now_ms(), 1_250);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock that reads `start_ms` until advanced.
    pub fn new(start_ms: u64) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(start_ms)),
        }
    }

    /// A clock that starts at the current system time.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now_ms())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sets the clock to an absolute time.
    pub fn set_ms(&self, now_ms: u64) {
        self.now.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// The shared clock handle the drivers hold.
pub(crate) type SharedClock = Arc<dyn Clock>;

/// The absolute expiry of a TTL written now; `None` means the entry never expires.
pub(crate) fn expiry_at<C: Clock + ?Sized>(clock: &C, ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|ttl| clock.now_ms().saturating_add(duration_ms(ttl)))
}

/// A duration in whole milliseconds, rounding a sub-millisecond remainder up so that a
/// non-zero TTL never becomes zero.
pub(crate) fn duration_ms(d: Duration) -> u64 {
    let ms = d.as_millis();
    let ms = if Duration::from_millis(ms as u64) < d {
        ms + 1
    } else {
        ms
    };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// `pause` plus up to half of it again (from the OS's randomness), so that waiters started
/// together spread out: lock waits, and memcached's compare-and-set retries.
pub(crate) fn jittered(pause: Duration) -> Duration {
    let mut bytes = [0u8; 2];
    let spread = match getrandom::fill(&mut bytes) {
        Ok(()) => u32::from(u16::from_le_bytes(bytes)),
        Err(_) => 0x7fff,
    };
    pause + pause / 2 * spread / 0xffff
}
