//! The limiting algorithms, over process memory or a shared `jtc_cache::Cache`.
//!
//! **Fixed window** (the default): a window of `window` starts at a client's first request;
//! every request in it counts, rejected ones included; when it ends the count starts over.
//! Over a cache this is one atomic [`Cache::hit`]: increment, and give a new counter its TTL,
//! in one step.
//!
//! **Sliding window**: windows aligned on multiples of `window`; a request is admitted when
//! `previous × (time left of the previous window's span) + current + 1 ≤ limit`. Rejected
//! requests are not counted, so a client that keeps retrying gets back in as the estimate
//! slides down. Over a cache: read the previous window, count the request (`hit`), and take
//! the count back if the estimate says no. Admitted requests are never taken back, so at most
//! `limit` are admitted per window, and exactly `limit` when more arrive at once.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use dashmap::DashMap;

use jtc_cache::{Cache, Clock};

use crate::key::MemoryKey;

/// Which algorithm a [`ThrottleLayer`](crate::ThrottleLayer) uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Algorithm {
    /// A window starting at the client's first request; every request counts. The default,
    /// and Laravel's behaviour.
    #[default]
    FixedWindow,
    /// A sliding-window counter that does not count rejected requests.
    SlidingWindow,
}

/// What the limiter decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) allowed: bool,
    pub(crate) limit: u64,
    pub(crate) remaining: u64,
    /// Until the window (or enough of it) has passed: when to retry, when the count resets.
    pub(crate) reset_after: Duration,
}

/// The numbers a limiter works with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Quota {
    pub(crate) limit: u64,
    pub(crate) window: Duration,
    pub(crate) algorithm: Algorithm,
}

impl Quota {
    fn window_ms(self) -> u64 {
        u64::try_from(self.window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    fn fixed(self, count: u64, reset_after: Duration) -> Decision {
        Decision {
            allowed: count <= self.limit,
            limit: self.limit,
            remaining: self.limit.saturating_sub(count),
            reset_after,
        }
    }

    /// The sliding-window decision for `current` requests already counted in the window that
    /// started `elapsed_ms` ago, after `previous` in the window before.
    fn sliding(self, previous: u64, current: u64, elapsed_ms: u64) -> Decision {
        let window = self.window_ms();
        let left = window.saturating_sub(elapsed_ms);
        let carried = previous * left / window; // floor(previous × share of its span left)
        let estimate = carried + current;
        if estimate < self.limit {
            return Decision {
                allowed: true,
                limit: self.limit,
                remaining: self.limit - estimate - 1,
                reset_after: Duration::from_millis(left),
            };
        }
        // Rejected: when does carried + current + 1 ≤ limit become true?
        let wait = if current >= self.limit || previous == 0 {
            left // not before this window ends
        } else {
            // previous × (window − e) / window ≤ limit − current − 1, e = elapsed + wait
            let allowed_carry = self.limit - current - 1;
            let needed_elapsed = window - allowed_carry * window / previous;
            needed_elapsed.saturating_sub(elapsed_ms).max(1)
        };
        Decision {
            allowed: false,
            limit: self.limit,
            remaining: 0,
            reset_after: Duration::from_millis(wait),
        }
    }
}

/// Counters in process memory, bounded.
///
/// A sharded map (DashMap with aHash) holds one small counter per key; each request updates
/// its counter under the shard lock, so counting is exact. Memory is bounded two ways:
/// counters whose window is over are swept out (at most once per window, on the request path),
/// and when `capacity` keys are held, a sweep first drops the finished windows and then, if
/// still full, the lightest counters (one request, then two, ...) until a tenth is free —
/// one-off clients go before the clients the limiter is actually holding back.
pub(crate) struct MemoryStore {
    counters: DashMap<MemoryKey, Slot, ahash::RandomState>,
    held: AtomicUsize,
    capacity: usize,
    next_sweep: AtomicU64,
    /// Clock reading at creation: packed fixed-window starts count from here.
    epoch: u64,
    clock: Arc<dyn Clock>,
}

/// One key's state. A fixed window with a limit below [`PACKED_LIMIT`] lives in `packed`
/// (window start and count in one word), updated by compare-and-swap under the map's shared
/// read lock, so concurrent requests of one client do not queue on a write lock. Everything
/// else lives in `counter`, updated under the map's write lock.
#[derive(Debug, Default)]
struct Slot {
    packed: AtomicU64,
    counter: Counter,
}

const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Limits from here on use the locked counter: a packed count saturates at 2^24 − 1.
const PACKED_LIMIT: u64 = 1 << (COUNT_BITS - 1);

impl Slot {
    /// Start (ms since the store's epoch) and count of a packed fixed window.
    fn unpack(&self) -> (u64, u64) {
        let word = self.packed.load(Ordering::Acquire);
        (word >> COUNT_BITS, word & COUNT_MASK)
    }

    fn is_live(&self, now: u64, epoch: u64, quota: Quota) -> bool {
        if packs(quota) {
            let (start, count) = self.unpack();
            count > 0 && now.saturating_sub(epoch) < start.saturating_add(quota.window_ms())
        } else {
            self.counter.is_live(now, quota)
        }
    }

    fn count(&self, quota: Quota) -> u64 {
        if packs(quota) {
            self.unpack().1
        } else {
            self.counter.count
        }
    }

    /// A fixed-window hit on the packed word: one compare-and-swap, retried on contention.
    fn hit_packed(&self, now: u64, epoch: u64, quota: Quota) -> Decision {
        let window = quota.window_ms();
        let relative = now.saturating_sub(epoch).min(u64::MAX >> COUNT_BITS);
        let mut word = self.packed.load(Ordering::Acquire);
        loop {
            let (start, count) = (word >> COUNT_BITS, word & COUNT_MASK);
            let (start, count) = if count == 0 || relative >= start.saturating_add(window) {
                (relative, 1)
            } else {
                (start, (count + 1).min(COUNT_MASK))
            };
            let next = (start << COUNT_BITS) | count;
            match self
                .packed
                .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let reset_after = Duration::from_millis(start + window - relative);
                    return quota.fixed(count, reset_after);
                }
                Err(actual) => word = actual,
            }
        }
    }
}

fn packs(quota: Quota) -> bool {
    quota.algorithm == Algorithm::FixedWindow && quota.limit < PACKED_LIMIT
}

#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    /// Fixed: when the window started. Sliding: the index of the current window.
    start: u64,
    count: u64,
    previous: u64,
}

impl Counter {
    /// Whether this counter still matters at `now`.
    fn is_live(&self, now: u64, quota: Quota) -> bool {
        let window = quota.window_ms();
        match quota.algorithm {
            Algorithm::FixedWindow => now < self.start.saturating_add(window),
            Algorithm::SlidingWindow => now / window <= self.start + 1,
        }
    }

    fn hit(&mut self, now: u64, quota: Quota) -> Decision {
        let window = quota.window_ms();
        match quota.algorithm {
            Algorithm::FixedWindow => {
                if self.count == 0 || now >= self.start.saturating_add(window) {
                    *self = Self {
                        start: now,
                        count: 0,
                        previous: 0,
                    };
                }
                self.count += 1;
                let reset_after = Duration::from_millis(self.start + window - now);
                quota.fixed(self.count, reset_after)
            }
            Algorithm::SlidingWindow => {
                let index = now / window;
                if index != self.start {
                    self.previous = if index == self.start + 1 {
                        self.count
                    } else {
                        0
                    };
                    self.count = 0;
                    self.start = index;
                }
                let decision = quota.sliding(self.previous, self.count, now % window);
                if decision.allowed {
                    self.count += 1;
                }
                decision
            }
        }
    }
}

impl MemoryStore {
    pub(crate) fn new(capacity: u64, clock: Arc<dyn Clock>) -> Self {
        Self {
            counters: DashMap::default(),
            held: AtomicUsize::new(0),
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX).max(1),
            next_sweep: AtomicU64::new(0),
            epoch: clock.now_ms(),
            clock,
        }
    }

    pub(crate) fn hit(&self, key: &MemoryKey, quota: Quota) -> Decision {
        let now = self.clock.now_ms();
        if packs(quota) {
            if let Some(slot) = self.counters.get(key) {
                return slot.hit_packed(now, self.epoch, quota);
            }
        } else if let Some(mut slot) = self.counters.get_mut(key) {
            return slot.counter.hit(now, quota);
        }
        self.maybe_sweep(now, quota);
        let slot = self.counters.entry(key.clone()).or_insert_with(|| {
            self.held.fetch_add(1, Ordering::Relaxed);
            Slot::default()
        });
        if packs(quota) {
            let slot = slot.downgrade();
            slot.hit_packed(now, self.epoch, quota)
        } else {
            let mut slot = slot;
            slot.counter.hit(now, quota)
        }
    }

    /// Sweeps when a window has passed since the last sweep, or when the store is full.
    fn maybe_sweep(&self, now: u64, quota: Quota) {
        let full = self.held.load(Ordering::Relaxed) >= self.capacity;
        let due = now >= self.next_sweep.load(Ordering::Relaxed);
        if !full && !due {
            return;
        }
        self.next_sweep
            .store(now.saturating_add(quota.window_ms()), Ordering::Relaxed);
        self.retain(|slot| slot.is_live(now, self.epoch, quota));
        let target = self.capacity - self.capacity / 10;
        let mut lightest = 1;
        while self.held.load(Ordering::Relaxed) > target && lightest < u64::MAX / 2 {
            self.retain(|slot| slot.count(quota) > lightest);
            lightest *= 2;
        }
    }

    fn retain(&self, keep: impl Fn(&Slot) -> bool) {
        self.counters.retain(|_, slot| {
            let kept = keep(slot);
            if !kept {
                self.held.fetch_sub(1, Ordering::Relaxed);
            }
            kept
        });
    }

    /// How many keys are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.counters.len()
    }
}

/// Counting in a shared cache.
pub(crate) async fn hit_cache(
    cache: &Cache,
    clock: &dyn Clock,
    key: &str,
    quota: Quota,
) -> jtc_cache::Result<Decision> {
    match quota.algorithm {
        Algorithm::FixedWindow => {
            let hit = cache.hit(key, quota.window).await?;
            Ok(quota.fixed(hit.count.max(0).unsigned_abs(), hit.expires_in))
        }
        Algorithm::SlidingWindow => {
            let window = quota.window_ms();
            let now = clock.now_ms();
            let index = now / window;
            // One hash tag for both windows' keys, so a cluster keeps them on one node.
            let current_key = format!("{{{key}}}:{index}");
            let previous_key = format!("{{{key}}}:{}", index.wrapping_sub(1));
            let previous: u64 = cache
                .get::<i64>(&previous_key)
                .await?
                .unwrap_or(0)
                .max(0)
                .unsigned_abs();
            let hit = cache
                .hit(&current_key, quota.window.saturating_mul(2))
                .await?;
            let counted = hit.count.max(1).unsigned_abs();
            let decision = quota.sliding(previous, counted - 1, now % window);
            if !decision.allowed {
                cache.increment(&current_key, -1).await?;
            }
            Ok(decision)
        }
    }
}

/// Logs store failures without flooding: the first at once, then one summary per interval.
#[derive(Debug, Default)]
pub(crate) struct FailureLog {
    /// Unix ms before which further failures are only counted.
    quiet_until: AtomicU64,
    suppressed: AtomicU64,
    /// Unix ms until which the store is not asked again (0: closed circuit).
    open_until: AtomicU64,
}

/// How long the limiter leaves a failing store alone before asking it again.
const RETRY_STORE_AFTER: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(10);

impl FailureLog {
    /// Whether the store should be skipped right now (it failed less than a second ago).
    pub(crate) fn skip_store(&self, now: u64) -> bool {
        now < self.open_until.load(Ordering::Relaxed)
    }

    pub(crate) fn failed(&self, now: u64, error: &jtc_cache::Error, policy: &str) {
        self.open_until.store(
            now + RETRY_STORE_AFTER.as_millis() as u64,
            Ordering::Relaxed,
        );
        let quiet_until = self.quiet_until.load(Ordering::Relaxed);
        if now < quiet_until {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self
            .quiet_until
            .compare_exchange(
                quiet_until,
                now + LOG_EVERY.as_millis() as u64,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
        {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(
                error = %error_chain(error),
                policy,
                suppressed,
                "jtc-throttle: the rate-limit store failed; applying the store-error policy"
            );
        }
    }

    pub(crate) fn succeeded(&self) {
        // A plain load on the hot path; the write happens once per recovery.
        if self.open_until.load(Ordering::Relaxed) != 0
            && self.open_until.swap(0, Ordering::Relaxed) != 0
        {
            tracing::info!(
                "jtc-throttle: the rate-limit store answers again; back to shared counting"
            );
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use jtc_cache::ManualClock;

    fn quota(limit: u64, window_ms: u64, algorithm: Algorithm) -> Quota {
        Quota {
            limit,
            window: Duration::from_millis(window_ms),
            algorithm,
        }
    }

    #[test]
    fn fixed_window_counts_from_the_first_request() {
        let clock = ManualClock::new(1_000_000);
        let store = MemoryStore::new(100, Arc::new(clock.clone()));
        let q = quota(2, 60_000, Algorithm::FixedWindow);
        let k = MemoryKey::Custom("k".into());
        assert_eq!(store.hit(&k, q).remaining, 1);
        assert_eq!(store.hit(&k, q).remaining, 0);
        clock.advance(Duration::from_secs(58));
        let third = store.hit(&k, q);
        assert!(!third.allowed);
        assert_eq!(third.reset_after, Duration::from_secs(2));
        clock.advance(Duration::from_secs(2));
        assert!(store.hit(&k, q).allowed);
    }

    #[test]
    fn large_limits_count_exactly_in_the_locked_counter() {
        let clock = ManualClock::new(5_000);
        let store = MemoryStore::new(100, Arc::new(clock.clone()));
        let q = quota(PACKED_LIMIT, 60_000, Algorithm::FixedWindow);
        assert!(!packs(q));
        let k = MemoryKey::Custom("k".into());
        assert_eq!(store.hit(&k, q).remaining, PACKED_LIMIT - 1);
        assert_eq!(store.hit(&k, q).remaining, PACKED_LIMIT - 2);
        clock.advance(Duration::from_secs(60));
        assert_eq!(store.hit(&k, q).remaining, PACKED_LIMIT - 1, "a new window");
    }

    #[test]
    fn packed_counters_are_exact_across_threads() {
        let store = Arc::new(MemoryStore::new(100, Arc::new(ManualClock::new(1_000))));
        let q = quota(1_000, 60_000, Algorithm::FixedWindow);
        assert!(packs(q));
        let allowed: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let store = Arc::clone(&store);
                    scope.spawn(move || {
                        let k = MemoryKey::Custom("k".into());
                        (0..2_000).filter(|_| store.hit(&k, q).allowed).count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 1_000);
    }

    #[test]
    fn sliding_window_forgets_rejections_and_slides() {
        let clock = ManualClock::new(60_000 * 1_000);
        let store = MemoryStore::new(100, Arc::new(clock.clone()));
        let q = quota(10, 60_000, Algorithm::SlidingWindow);
        let k = MemoryKey::Custom("k".into());
        for _ in 0..10 {
            assert!(store.hit(&k, q).allowed);
        }
        for _ in 0..50 {
            assert!(!store.hit(&k, q).allowed, "rejections are not counted");
        }
        // Next window, 30 s in: 10 × 0.5 = 5 carried, so 5 more fit.
        clock.advance(Duration::from_secs(90));
        let admitted = (0..10).filter(|_| store.hit(&k, q).allowed).count();
        assert_eq!(admitted, 5);
    }

    #[test]
    fn sliding_retry_after_is_when_the_estimate_drops() {
        let q = quota(10, 60_000, Algorithm::SlidingWindow);
        // 10 carried at the start of the window, none yet in it.
        let d = q.sliding(10, 0, 0);
        assert!(!d.allowed);
        assert_eq!(d.reset_after, Duration::from_millis(6_000)); // 10 × 54/60 = 9 → one fits
        let later = q.sliding(10, 0, 6_000);
        assert!(later.allowed);
    }

    #[test]
    fn finished_windows_are_swept_out() {
        let clock = ManualClock::new(0);
        let store = MemoryStore::new(1_000_000, Arc::new(clock.clone()));
        let q = quota(5, 60_000, Algorithm::FixedWindow);
        for i in 0..10_000 {
            store.hit(&MemoryKey::Custom(format!("client-{i}")), q);
        }
        assert_eq!(store.len(), 10_000);
        clock.advance(Duration::from_secs(61));
        store.hit(&MemoryKey::Custom("late".into()), q);
        assert_eq!(
            store.len(),
            1,
            "the next new client sweeps the finished windows"
        );
    }

    #[test]
    fn a_full_store_keeps_the_clients_it_is_holding_back() {
        let store = MemoryStore::new(1_000, Arc::new(ManualClock::new(0)));
        let q = quota(5, 60_000, Algorithm::FixedWindow);
        let heavy = MemoryKey::Custom("heavy".into());
        for _ in 0..10 {
            store.hit(&heavy, q);
        }
        for i in 0..5_000 {
            store.hit(&MemoryKey::Custom(format!("once-{i}")), q);
        }
        assert!(
            !store.hit(&heavy, q).allowed,
            "the heavy client is still limited"
        );
    }

    #[test]
    fn memory_is_bounded_by_capacity() {
        let store = MemoryStore::new(1_000, Arc::new(ManualClock::new(0)));
        let q = quota(5, 60_000, Algorithm::FixedWindow);
        for i in 0..20_000 {
            store.hit(&MemoryKey::Custom(format!("client-{i}")), q);
        }
        assert!(store.len() <= 1_000, "{}", store.len());
    }
}
