//! A hash table split into shards, each behind its own lock: the in-memory driver's store and
//! the Redis near cache's.
//!
//! Like a `DashMap`, but every operation takes the key as `&str` and copies it only when it
//! inserts a new entry: writing a key that is already there allocates nothing, and writing a
//! new one looks it up once. (`DashMap`'s `entry` needs an owned key, so an upsert there either
//! copies the key every time or looks it up twice.) The key is hashed once, and the same hash
//! picks the shard and the bucket.
//!
//! A table may be bounded ([`Shards::bounded`]): each shard then holds at most its share of the
//! entries and evicts with CLOCK (second-chance FIFO, the policy S3-FIFO and CLOCK-Pro build
//! on): new keys join a queue; to make room, the entry at the head goes unless it was read
//! since it last came round, in which case it is marked unread and goes to the tail. A read
//! costs one relaxed load (and a store the first time), under the read lock as before.

use std::{
    collections::VecDeque,
    sync::{
        Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};

use hashbrown::{HashTable, hash_table};

/// A key, its value, and whether it was read since eviction last looked at it.
type Table<V> = HashTable<(Box<str>, V, Read)>;

/// The "read since" bit of an entry (used by bounded tables only).
#[derive(Debug, Default)]
pub(crate) struct Read(AtomicBool);

pub(crate) struct Shards<V> {
    shards: Box<[Shard<V>]>,
    hasher: ahash::RandomState,
    /// `64 - log2(shards)`: the shard is taken from the hash bits just below the top seven,
    /// which the table keeps for its own control bytes, and above the bits it indexes with.
    shift: u32,
    /// Bounded: each shard's most entries.
    bounded: bool,
}

/// One lock and its table, on a cache line of its own so that shards do not contend.
#[repr(align(128))]
struct Shard<V> {
    table: RwLock<Table<V>>,
    /// Bounded tables: the most entries, and the hashes of the keys in insertion order (with
    /// stale ones of removed keys, dropped when met). Locked only under the write lock.
    capacity: usize,
    queue: Mutex<VecDeque<u64>>,
}

impl<V> Shard<V> {
    // A panic while a shard is locked cannot leave an entry half-written (entries are replaced
    // whole), so a poisoned lock is used as it is.
    fn read(&self) -> RwLockReadGuard<'_, Table<V>> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table<V>> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The place of one key in a locked shard, for a read-modify-write.
pub(crate) enum Slot<'a, V> {
    Occupied(hash_table::OccupiedEntry<'a, (Box<str>, V, Read)>),
    Vacant {
        entry: hash_table::VacantEntry<'a, (Box<str>, V, Read)>,
        key: &'a str,
    },
}

impl<'a, V> Slot<'a, V> {
    /// The value, if the key is there.
    #[inline]
    pub(crate) fn get_mut(&mut self) -> Option<&mut V> {
        match self {
            Self::Occupied(entry) => Some(&mut entry.get_mut().1),
            Self::Vacant { .. } => None,
        }
    }

    /// The value, inserting `make()` first if the key is not there.
    #[inline]
    pub(crate) fn or_insert_with(self, make: impl FnOnce() -> V) -> &'a mut V {
        match self {
            Self::Occupied(entry) => &mut entry.into_mut().1,
            Self::Vacant { entry, key } => {
                &mut entry
                    .insert((key.into(), make(), Read::default()))
                    .into_mut()
                    .1
            }
        }
    }

    /// Stores `value`; returns the value it replaced.
    #[inline]
    pub(crate) fn insert(self, value: V) -> Option<V> {
        match self {
            Self::Occupied(mut entry) => Some(std::mem::replace(&mut entry.get_mut().1, value)),
            Self::Vacant { entry, key } => {
                entry.insert((key.into(), value, Read::default()));
                None
            }
        }
    }

    /// Removes the key; returns its value.
    pub(crate) fn remove(self) -> Option<V> {
        match self {
            Self::Occupied(entry) => Some(entry.remove().0.1),
            Self::Vacant { .. } => None,
        }
    }
}

impl<V> Default for Shards<V> {
    fn default() -> Self {
        Self::with_shards(default_count(), None)
    }
}

/// As many shards as `DashMap` takes: four per thread, a power of two.
fn default_count() -> usize {
    let threads = thread::available_parallelism().map_or(1, usize::from);
    (threads * 4).next_power_of_two()
}

impl<V> Shards<V> {
    /// A table that holds at most `max_entries` (at least 1), evicting with CLOCK. Small
    /// tables get fewer shards (each holds at least 32 entries, or all of them), and the
    /// entries are shared out exactly: the shards' capacities add up to `max_entries`.
    pub(crate) fn bounded(max_entries: usize) -> Self {
        let max_entries = max_entries.max(1);
        let wanted = (max_entries / 32).max(1);
        let count = default_count().min(1 << wanted.ilog2());
        Self::with_shards(count, Some(max_entries))
    }

    fn with_shards(count: usize, max_entries: Option<usize>) -> Self {
        let capacity = |index: usize| match max_entries {
            Some(max) => max / count + usize::from(index < max % count),
            None => usize::MAX,
        };
        Self {
            shards: (0..count)
                .map(|index| Shard {
                    table: RwLock::new(HashTable::new()),
                    capacity: capacity(index),
                    queue: Mutex::new(VecDeque::new()),
                })
                .collect(),
            hasher: ahash::RandomState::new(),
            shift: 64 - count.trailing_zeros(),
            bounded: max_entries.is_some(),
        }
    }

    #[inline(always)]
    fn locate(&self, key: &str) -> (u64, &Shard<V>) {
        let hash = self.hasher.hash_one(key);
        // `count` is a power of two; with one shard the shift is 64 and the index 0.
        let index = (hash << 7).checked_shr(self.shift).unwrap_or(0) as usize;
        (hash, &self.shards[index])
    }

    /// Runs `f` on the value at `key` under the shard's read lock.
    #[inline]
    pub(crate) fn read<R>(&self, key: &str, f: impl FnOnce(Option<&V>) -> R) -> R {
        let (hash, shard) = self.locate(key);
        let table = shard.read();
        let found = table.find(hash, |(k, _, _)| **k == *key);
        if self.bounded
            && let Some((_, _, read)) = found
            && !read.0.load(Ordering::Relaxed)
        {
            read.0.store(true, Ordering::Relaxed);
        }
        f(found.map(|(_, v, _)| v))
    }

    /// Runs `f` on the slot of `key` under the shard's write lock; a bounded shard that `f`
    /// took over its capacity evicts (after `f`, still under the lock).
    #[inline]
    pub(crate) fn write<R>(&self, key: &str, f: impl FnOnce(Slot<'_, V>) -> R) -> R {
        let (hash, shard) = self.locate(key);
        let mut table = shard.write();
        let before = table.len();
        let hasher = &self.hasher;
        let slot = match table.entry(
            hash,
            |(k, _, _)| **k == *key,
            |(k, _, _)| hasher.hash_one(k),
        ) {
            hash_table::Entry::Occupied(entry) => Slot::Occupied(entry),
            hash_table::Entry::Vacant(entry) => Slot::Vacant { entry, key },
        };
        let result = f(slot);
        if self.bounded && table.len() > before {
            self.admitted(shard, &mut table, hash);
        }
        result
    }

    /// A new key with `hash` entered `shard`: queue it, and evict while over capacity.
    #[cold]
    fn admitted(&self, shard: &Shard<V>, table: &mut Table<V>, hash: u64) {
        let mut queue = shard.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.push_back(hash);
        while table.len() > shard.capacity {
            self.evict_one(table, &mut queue);
        }
        // Removed keys leave stale hashes behind; keep the queue in proportion.
        if queue.len() > 2 * shard.capacity.max(table.len()) + 64 {
            let hasher = &self.hasher;
            queue.retain(|&hash| {
                table
                    .find(hash, |(k, _, _)| hasher.hash_one(k) == hash)
                    .is_some()
            });
        }
    }

    /// CLOCK: the head of the queue goes, unless it was read since it last came round.
    fn evict_one(&self, table: &mut Table<V>, queue: &mut VecDeque<u64>) {
        let hasher = &self.hasher;
        // Every entry gets at most one second chance per call, so this ends.
        let mut chances = queue.len();
        while let Some(hash) = queue.pop_front() {
            let Ok(entry) = table.find_entry(hash, |(k, _, _)| hasher.hash_one(k) == hash) else {
                continue; // a key removed since it was queued
            };
            if chances > 0 && entry.get().2.0.swap(false, Ordering::Relaxed) {
                chances -= 1;
                queue.push_back(hash);
                continue;
            }
            entry.remove();
            return;
        }
        // Nothing queued (cannot happen while over capacity): drop any entry.
        if let Some(hash) = table.iter().next().map(|(k, _, _)| hasher.hash_one(k))
            && let Ok(entry) = table.find_entry(hash, |(k, _, _)| hasher.hash_one(k) == hash)
        {
            entry.remove();
        }
    }

    /// Stores `value` at `key`; the value it replaced is dropped after the lock is released.
    #[inline]
    pub(crate) fn insert(&self, key: &str, value: V) {
        let old = self.write(key, |slot| slot.insert(value));
        drop(old);
    }

    /// Removes `key`; returns its value.
    pub(crate) fn remove(&self, key: &str) -> Option<V> {
        self.remove_if(key, |_| true)
    }

    /// Removes `key` if `remove` says so of its value; returns the value removed.
    pub(crate) fn remove_if(&self, key: &str, remove: impl FnOnce(&V) -> bool) -> Option<V> {
        let (hash, shard) = self.locate(key);
        let mut table = shard.write();
        match table.find_entry(hash, |(k, _, _)| **k == *key) {
            Ok(entry) if remove(&entry.get().1) => Some(entry.remove().0.1),
            _ => None,
        }
    }

    /// Keeps only the values `keep` says to keep, one shard at a time; returns how many were
    /// removed.
    pub(crate) fn retain(&self, mut keep: impl FnMut(&mut V) -> bool) -> u64 {
        let mut removed = 0;
        for shard in &self.shards {
            let mut table = shard.write();
            let before = table.len();
            table.retain(|(_, v, _)| keep(v));
            removed += (before - table.len()) as u64;
        }
        removed
    }

    /// Removes everything.
    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            // Dropped after the lock is released.
            let table = std::mem::take(&mut *shard.write());
            shard
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            drop(table);
        }
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

impl<V> std::fmt::Debug for Shards<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shards")
            .field("shards", &self.shards.len())
            .field("len", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_every_operation_finds_them() {
        let map: Shards<u32> = Shards::default();
        let keys: Vec<String> = (0..5_000).map(|i| format!("key:{i}")).collect();
        for (i, key) in keys.iter().enumerate() {
            map.insert(key, i as u32);
        }
        assert_eq!(map.len(), keys.len());
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(map.read(key, |v| v.copied()), Some(i as u32));
        }
        // Replacing does not add; the slot sees the old value.
        map.insert("key:7", 70);
        assert_eq!(map.len(), keys.len());
        map.write("key:7", |mut slot| *slot.get_mut().unwrap() += 1);
        assert_eq!(map.read("key:7", |v| v.copied()), Some(71));
        assert_eq!(map.write("new", |slot| *slot.or_insert_with(|| 5)), 5);
        assert_eq!(map.remove_if("new", |v| *v == 6), None);
        assert_eq!(map.remove("new"), Some(5));
        assert_eq!(map.remove("new"), None);
        assert_eq!(map.retain(|v| *v % 2 == 0), 2_500);
        assert_eq!(map.len(), 2_500);
        assert_eq!(map.read("key:1", |v| v.copied()), None);
        map.clear();
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn writes_from_many_threads_are_atomic() {
        let map: Shards<u64> = Shards::default();
        thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for i in 0..20_000 {
                        let key = format!("counter:{}", i % 16);
                        map.write(&key, |slot| *slot.or_insert_with(|| 0) += 1);
                        if i % 7 == 0 {
                            map.insert("churn", i);
                            map.remove("churn");
                        }
                    }
                });
            }
        });
        for i in 0..16 {
            assert_eq!(
                map.read(&format!("counter:{i}"), |v| v.copied()),
                Some(10_000)
            );
        }
    }

    #[test]
    fn keys_spread_over_the_shards() {
        let map: Shards<()> = Shards::default();
        let mut per_shard = vec![0usize; map.shards.len()];
        for i in 0..10_000 {
            let key = format!("user:{i}:profile");
            let (_, shard) = map.locate(&key);
            let index = map
                .shards
                .iter()
                .position(|s| std::ptr::eq(s, shard))
                .unwrap();
            per_shard[index] += 1;
        }
        let fair = 10_000 / per_shard.len();
        assert!(
            per_shard.iter().all(|&n| n > fair / 2 && n < fair * 2),
            "{per_shard:?}"
        );
    }

    #[test]
    fn a_bounded_table_shares_its_capacity_out_exactly() {
        for max in [1, 7, 31, 32, 100, 1_000, 10_000, 65_537] {
            let map: Shards<u32> = Shards::bounded(max);
            let total: usize = map.shards.iter().map(|s| s.capacity).sum();
            assert_eq!(total, max, "{max}");
            assert!(map.shards.iter().all(|s| s.capacity >= 1), "{max}");
            for i in 0..(max * 3) as u32 {
                map.insert(&format!("k{i}"), i);
            }
            assert!(map.len() <= max, "{} > {max}", map.len());
            assert!(
                map.len() * 10 >= max * 9 || max < 32,
                "{} of {max} used",
                map.len()
            );
        }
    }

    #[test]
    fn eviction_spares_the_entries_read_since_it_last_passed() {
        let map: Shards<u32> = Shards::bounded(64);
        let hot: Vec<String> = (0..16).map(|i| format!("hot:{i}")).collect();
        for (i, key) in hot.iter().enumerate() {
            map.insert(key, i as u32);
        }
        for i in 0..10_000u32 {
            for key in &hot {
                assert!(
                    map.read(key, |v| v.copied()).is_some(),
                    "{key} evicted at {i}"
                );
            }
            map.insert(&format!("cold:{i}"), i);
        }
        assert!(map.len() <= 64);
    }

    #[test]
    fn removals_and_churn_keep_the_queue_in_proportion() {
        let map: Shards<u32> = Shards::bounded(100);
        for round in 0..1_000u32 {
            for i in 0..50 {
                map.insert(&format!("k{i}"), round);
                if i % 2 == 0 {
                    map.remove(&format!("k{i}"));
                }
            }
        }
        for shard in map.shards.iter() {
            let queue = shard.queue.lock().unwrap().len();
            assert!(queue <= 2 * shard.capacity + 64 + 1, "queue of {queue}");
        }
        map.clear();
        assert_eq!(map.len(), 0);
        assert!(
            map.shards
                .iter()
                .all(|s| s.queue.lock().unwrap().is_empty())
        );
    }

    #[test]
    fn an_unbounded_table_never_queues() {
        let map: Shards<u32> = Shards::default();
        for i in 0..1_000u32 {
            map.insert(&format!("k{i}"), i);
        }
        assert_eq!(map.len(), 1_000);
        assert!(
            map.shards
                .iter()
                .all(|s| s.queue.lock().unwrap().is_empty())
        );
    }
}
