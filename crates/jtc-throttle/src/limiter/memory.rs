//! The memory store: counters in process memory, exact and bounded.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use dashmap::DashMap;
use jtc_cache::{Clock, RateKind, RateRecord, RateRule, RateVerdict};

use crate::key::CounterKey;

/// Counters in process memory, bounded.
///
/// A sharded map (DashMap with aHash) holds one small slot per key. Memory is bounded two
/// ways: slots whose windows are over are swept out (at most once per window, on the request
/// path), and when `capacity` keys are held, a sweep first drops the finished ones and then,
/// if still full, the lightest (one request counted, then two, ...) until a tenth is free —
/// one-off clients go before the clients the limiter is actually holding back.
pub(crate) struct MemoryStore {
    counters: DashMap<CounterKey, Slot, ahash::RandomState>,
    held: AtomicUsize,
    capacity: usize,
    next_sweep: AtomicU64,
    /// Clock reading at creation: packed expiries count from here.
    epoch: u64,
    clock: Arc<dyn Clock>,
}

/// One key's state. A lone fixed window with a limit below [`PACKED_LIMIT`] lives in `packed`
/// (window end and count in one word), a lone token bucket in `tat` (its theoretical arrival
/// time, as governor keeps it): each updated by compare-and-swap under the map's shared read
/// lock, so concurrent requests of one client do not queue on a write lock. Everything else —
/// sliding windows, several limits — lives in `record`, the same state every other store
/// keeps (`jtc_cache::RateRecord`), updated under the map's write lock.
#[derive(Debug, Default)]
struct Slot {
    packed: AtomicU64,
    /// Microseconds since the store's epoch; 0: a full bucket.
    tat: AtomicU64,
    record: RateRecord,
}

const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;
/// Limits from here on use the record: a packed count saturates at 2^24 − 1.
const PACKED_LIMIT: u64 = 1 << (COUNT_BITS - 1);

/// Whether `rules` take a single-word path.
pub(crate) fn packs(rules: &[RateRule]) -> bool {
    match rules {
        [rule] => match rule.kind {
            RateKind::FixedWindow => rule.limit < PACKED_LIMIT,
            RateKind::TokenBucket { .. } => rule.limit > 0,
            _ => false,
        },
        _ => false,
    }
}

impl Slot {
    /// The end (ms since the store's epoch) and count of a packed fixed window.
    fn unpack(&self) -> (u64, u64) {
        let word = self.packed.load(Ordering::Acquire);
        (word >> COUNT_BITS, word & COUNT_MASK)
    }

    fn is_live(&self, relative: u64, now_us: i64) -> bool {
        let (end, count) = self.unpack();
        (count > 0 && relative < end)
            || self.tat.load(Ordering::Acquire) > relative * 1_000
            || self.record.ttl(now_us).is_some()
    }

    /// How much it holds back: its count, or a bucket's debt in milliseconds.
    fn weight(&self, relative: u64) -> u64 {
        let debt = self
            .tat
            .load(Ordering::Acquire)
            .saturating_sub(relative * 1_000)
            .div_ceil(1_000);
        self.unpack().1 + debt + self.record.weight()
    }

    /// A token-bucket hit (or look) on the `tat` word: `jtc_cache`'s GCRA step
    /// (`RateRule::token_bucket`), in one compare-and-swap, retried on contention.
    fn bucket(&self, relative: u64, rule: &RateRule, consume: bool) -> RateVerdict {
        let now = i64::try_from(relative * 1_000).unwrap_or(i64::MAX / 4);
        let mut stored = self.tat.load(Ordering::Acquire);
        loop {
            let tat = i64::try_from(stored).unwrap_or(i64::MAX / 4);
            let (verdict, taken) = rule.token_bucket(tat, now, consume);
            let Some(next) = taken.and_then(|next| u64::try_from(next).ok()) else {
                return verdict;
            };
            match self
                .tat
                .compare_exchange_weak(stored, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return verdict,
                Err(actual) => stored = actual,
            }
        }
    }

    /// A fixed-window hit (or look) on the packed word: one compare-and-swap, retried on
    /// contention.
    fn packed(&self, relative: u64, rule: &RateRule, consume: bool) -> RateVerdict {
        let window = u64::try_from(rule.window.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut word = self.packed.load(Ordering::Acquire);
        loop {
            let (end, count) = (word >> COUNT_BITS, word & COUNT_MASK);
            let (end, count) = if count == 0 || relative >= end {
                (relative.saturating_add(window), 0)
            } else {
                (end, count)
            };
            let reset_after = Duration::from_millis(end - relative);
            if !consume {
                return RateVerdict::from_counter(rule, count, reset_after, false);
            }
            let count = (count + 1).min(COUNT_MASK);
            let next = (end << COUNT_BITS) | count;
            match self
                .packed
                .compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return RateVerdict::from_counter(rule, count, reset_after, true),
                Err(actual) => word = actual,
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

    /// A lone fixed window or token bucket under `key` at `now` (the store's clock), on its
    /// word: no allocation, no write lock once the key is held.
    pub(crate) fn hit_one(
        &self,
        key: &CounterKey,
        rule: &RateRule,
        consume: bool,
        now: u64,
    ) -> RateVerdict {
        let relative = self.relative(now);
        let step = |slot: &Slot| match rule.kind {
            RateKind::TokenBucket { .. } => slot.bucket(relative, rule, consume),
            _ => slot.packed(relative, rule, consume),
        };
        if let Some(slot) = self.counters.get(key) {
            return step(&slot);
        }
        if !consume {
            return step(&Slot::default());
        }
        self.maybe_sweep(now, rule.window);
        let slot = self.counters.entry(key.clone()).or_insert_with(|| {
            self.held.fetch_add(1, Ordering::Relaxed);
            Slot::default()
        });
        step(&slot.downgrade())
    }

    /// Any rules under `key`, in one step under the key's lock.
    pub(crate) fn apply(
        &self,
        key: &CounterKey,
        rules: &[RateRule],
        consume: bool,
    ) -> Vec<RateVerdict> {
        if let [rule] = rules
            && packs(rules)
        {
            return vec![self.hit_one(key, rule, consume, self.clock.now_ms())];
        }
        let now = self.clock.now_ms();
        let now_us = i64::try_from(now).unwrap_or(i64::MAX / 4_000) * 1_000;
        if let Some(mut slot) = self.counters.get_mut(key) {
            return slot.record.apply(rules, now_us, consume);
        }
        if !consume {
            return RateRecord::default().apply(rules, now_us, false);
        }
        let window = rules.iter().map(|r| r.window).min().unwrap_or_default();
        self.maybe_sweep(now, window);
        let mut slot = self.counters.entry(key.clone()).or_insert_with(|| {
            self.held.fetch_add(1, Ordering::Relaxed);
            Slot::default()
        });
        slot.record.apply(rules, now_us, consume)
    }

    /// Forgets `key`; returns whether it was held.
    pub(crate) fn forget(&self, key: &CounterKey) -> bool {
        let removed = self.counters.remove(key).is_some();
        if removed {
            self.held.fetch_sub(1, Ordering::Relaxed);
        }
        removed
    }

    fn relative(&self, now: u64) -> u64 {
        now.saturating_sub(self.epoch).min(u64::MAX >> COUNT_BITS)
    }

    /// Sweeps when a window has passed since the last sweep, or when the store is full.
    fn maybe_sweep(&self, now: u64, window: Duration) {
        let full = self.held.load(Ordering::Relaxed) >= self.capacity;
        let due = now >= self.next_sweep.load(Ordering::Relaxed);
        if !full && !due {
            return;
        }
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        self.next_sweep
            .store(now.saturating_add(window_ms.max(1)), Ordering::Relaxed);
        let relative = self.relative(now);
        let now_us = i64::try_from(now).unwrap_or(i64::MAX / 4_000) * 1_000;
        self.retain(|slot| slot.is_live(relative, now_us));
        let target = self.capacity - self.capacity / 10;
        let mut lightest = 1;
        while self.held.load(Ordering::Relaxed) > target && lightest < u64::MAX / 2 {
            self.retain(|slot| slot.weight(relative) > lightest);
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

    /// The keys held and the bytes they take: each entry's key and slot, and the text of a
    /// custom key (at most [`MAX_KEY_TEXT_BYTES`](crate::MAX_KEY_TEXT_BYTES) and a little
    /// more, whatever the client sent). A sliding window or several limits also keep one small
    /// field per rule, which the app's limits bound, not the client.
    pub(crate) fn footprint(&self) -> (usize, usize) {
        let per_entry = size_of::<CounterKey>() + size_of::<Slot>();
        self.counters.iter().fold((0, 0), |(keys, bytes), entry| {
            (keys + 1, bytes + per_entry + entry.key().heap_bytes())
        })
    }

    /// How many keys are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.counters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jtc_cache::ManualClock;

    fn rule(limit: u64, window_ms: u64, kind: RateKind) -> RateRule {
        RateRule {
            limit,
            window: Duration::from_millis(window_ms),
            kind,
        }
    }

    fn fixed(limit: u64) -> RateRule {
        rule(limit, 60_000, RateKind::FixedWindow)
    }

    impl MemoryStore {
        fn hit_now(&self, key: &CounterKey, rule: &RateRule, consume: bool) -> RateVerdict {
            self.hit_one(key, rule, consume, self.clock.now_ms())
        }
    }

    fn custom(name: &str) -> CounterKey {
        CounterKey::Custom(name.into())
    }

    #[test]
    fn fixed_window_counts_from_the_first_request() {
        let clock = ManualClock::new(1_000_000);
        let store = MemoryStore::new(100, Arc::new(clock.clone()));
        let k = custom("k");
        assert_eq!(store.hit_now(&k, &fixed(2), true).remaining, 1);
        assert_eq!(store.hit_now(&k, &fixed(2), true).remaining, 0);
        clock.advance(Duration::from_secs(58));
        let third = store.hit_now(&k, &fixed(2), true);
        assert!(!third.allowed);
        assert_eq!(third.reset_after, Duration::from_secs(2));
        clock.advance(Duration::from_secs(2));
        assert!(store.hit_now(&k, &fixed(2), true).allowed);
        assert_eq!(store.hit_now(&k, &fixed(2), false).remaining, 1, "a look");
    }

    #[test]
    fn large_limits_count_exactly_in_the_record() {
        let clock = ManualClock::new(5_000);
        let store = MemoryStore::new(100, Arc::new(clock.clone()));
        let big = [fixed(PACKED_LIMIT)];
        assert!(!packs(&big));
        let k = custom("k");
        assert_eq!(store.apply(&k, &big, true)[0].remaining, PACKED_LIMIT - 1);
        assert_eq!(store.apply(&k, &big, true)[0].remaining, PACKED_LIMIT - 2);
        clock.advance(Duration::from_secs(60));
        assert_eq!(store.apply(&k, &big, true)[0].remaining, PACKED_LIMIT - 1);
    }

    #[test]
    fn every_algorithm_is_exact_across_threads() {
        let store = Arc::new(MemoryStore::new(100, Arc::new(ManualClock::new(1_000))));
        for rules in [
            vec![fixed(1_000)],
            vec![rule(1_000, 60_000, RateKind::SlidingWindow)],
            vec![rule(1_000, 60_000, RateKind::TokenBucket { burst: 1_000 })],
            vec![fixed(5_000), rule(1_000, 1_000, RateKind::SlidingWindow)],
        ] {
            let key = format!("{rules:?}");
            let allowed: usize = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..4)
                    .map(|_| {
                        let (store, rules, key) = (Arc::clone(&store), &rules, &key);
                        scope.spawn(move || {
                            let k = custom(key);
                            (0..2_000)
                                .filter(|_| store.apply(&k, rules, true).iter().all(|v| v.allowed))
                                .count()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(allowed, 1_000, "{rules:?}");
        }
    }

    #[test]
    fn finished_windows_are_swept_out() {
        let clock = ManualClock::new(0);
        let store = MemoryStore::new(1_000_000, Arc::new(clock.clone()));
        let sliding = [rule(5, 60_000, RateKind::SlidingWindow)];
        for i in 0..10_000 {
            store.hit_now(&custom(&format!("client-{i}")), &fixed(5), true);
            store.apply(&custom(&format!("sliding-{i}")), &sliding, true);
        }
        assert_eq!(store.len(), 20_000);
        clock.advance(Duration::from_secs(121));
        store.hit_now(&custom("late"), &fixed(5), true);
        assert_eq!(
            store.len(),
            1,
            "the next new client sweeps the finished windows"
        );
    }

    #[test]
    fn a_full_store_keeps_the_clients_it_is_holding_back() {
        let store = MemoryStore::new(1_000, Arc::new(ManualClock::new(0)));
        let bucket = [rule(5, 60_000, RateKind::TokenBucket { burst: 5 })];
        let (heavy, heavy_bucket) = (custom("heavy"), custom("heavy-bucket"));
        for _ in 0..10 {
            store.hit_now(&heavy, &fixed(5), true);
            store.apply(&heavy_bucket, &bucket, true);
        }
        for i in 0..5_000 {
            store.hit_now(&custom(&format!("once-{i}")), &fixed(5), true);
        }
        assert!(!store.hit_now(&heavy, &fixed(5), true).allowed);
        assert!(!store.apply(&heavy_bucket, &bucket, true)[0].allowed);
        assert!(store.len() <= 1_000, "{}", store.len());
    }

    #[test]
    fn forget_clears_a_key() {
        let store = MemoryStore::new(10, Arc::new(ManualClock::new(0)));
        let k = custom("k");
        store.hit_now(&k, &fixed(1), true);
        assert!(!store.hit_now(&k, &fixed(1), true).allowed);
        assert!(store.forget(&k));
        assert!(store.hit_now(&k, &fixed(1), true).allowed);
    }
}
