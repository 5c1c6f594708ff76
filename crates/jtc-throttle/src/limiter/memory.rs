//! The memory store: counters in process memory, exact and bounded.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use dashmap::DashMap;
use jtc_cache::Clock;

use super::{Algorithm, Decision, Quota};
use crate::key::CounterKey;

/// Counters in process memory, bounded.
///
/// A sharded map (DashMap with aHash) holds one small counter per key; each request updates
/// its counter under the shard lock, so counting is exact. Memory is bounded two ways:
/// counters whose window is over are swept out (at most once per window, on the request path),
/// and when `capacity` keys are held, a sweep first drops the finished windows and then, if
/// still full, the lightest counters (one request, then two, ...) until a tenth is free —
/// one-off clients go before the clients the limiter is actually holding back.
pub(crate) struct MemoryStore {
    counters: DashMap<CounterKey, Slot, ahash::RandomState>,
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

    pub(crate) fn hit(&self, key: &CounterKey, quota: Quota) -> Decision {
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

#[cfg(test)]
mod tests {
    use super::{super::quota, *};
    use jtc_cache::ManualClock;

    #[test]
    fn fixed_window_counts_from_the_first_request() {
        let clock = ManualClock::new(1_000_000);
        let store = MemoryStore::new(100, Arc::new(clock.clone()));
        let q = quota(2, 60_000, Algorithm::FixedWindow);
        let k = CounterKey::Custom("k".into());
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
        let k = CounterKey::Custom("k".into());
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
                        let k = CounterKey::Custom("k".into());
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
        let k = CounterKey::Custom("k".into());
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
    fn finished_windows_are_swept_out() {
        let clock = ManualClock::new(0);
        let store = MemoryStore::new(1_000_000, Arc::new(clock.clone()));
        let q = quota(5, 60_000, Algorithm::FixedWindow);
        for i in 0..10_000 {
            store.hit(&CounterKey::Custom(format!("client-{i}")), q);
        }
        assert_eq!(store.len(), 10_000);
        clock.advance(Duration::from_secs(61));
        store.hit(&CounterKey::Custom("late".into()), q);
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
        let heavy = CounterKey::Custom("heavy".into());
        for _ in 0..10 {
            store.hit(&heavy, q);
        }
        for i in 0..5_000 {
            store.hit(&CounterKey::Custom(format!("once-{i}")), q);
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
            store.hit(&CounterKey::Custom(format!("client-{i}")), q);
        }
        assert!(store.len() <= 1_000, "{}", store.len());
    }
}
