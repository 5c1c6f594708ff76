//! The semantic cases every driver must pass, written once.
//!
//! A driver's test file builds a [`Subject`] (a fresh, empty cache plus a way to move its
//! time) and calls [`conformance_tests!`] with a function that makes one; the macro expands to
//! one `#[tokio::test]` per case, so a failure names the driver and the case.

#![allow(dead_code, unreachable_pub)]

use std::{
    any::Any,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use jtc_cache::{
    Cache, CacheDriver, CacheStats, Codec, DriverFuture, Error, ErrorKind, EventKind, Hit,
    ManualClock,
};
use serde::{Deserialize, Serialize};

/// A cache under test and the means to move its time.
pub struct Subject {
    pub cache: Cache,
    /// `Some` for drivers on a [`ManualClock`]: time moves exactly. `None`: real time passes
    /// (the server decides expiry), so boundary checks leave `slack` either side.
    pub clock: Option<ManualClock>,
    /// Whatever must live as long as the cache (a temporary folder, a server).
    pub guard: Box<dyn Any + Send>,
}

impl Subject {
    pub async fn advance(&self, by: Duration) {
        match &self.clock {
            Some(clock) => clock.advance(by),
            None => tokio::time::sleep(by).await,
        }
    }

    /// How far from a TTL boundary checks stay when time is real.
    fn slack(&self) -> Duration {
        match self.clock {
            Some(_) => Duration::ZERO,
            None => Duration::from_millis(250),
        }
    }

    /// A span long enough to call "forever" for this subject.
    fn long_time(&self) -> Duration {
        match self.clock {
            Some(_) => Duration::from_secs(10 * 365 * 24 * 3600),
            None => Duration::from_millis(1_500),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

pub fn user(id: u64) -> User {
    User {
        id,
        name: format!("user {id} — ünïcødé"),
        tags: vec!["a".into(), "b".into()],
        email: None,
    }
}

const MINUTE: Duration = Duration::from_secs(60);

/// Expands to one test per case for the subject made by `$make` (an async fn).
#[macro_export]
macro_rules! conformance_tests {
    ($make:path) => {
        $crate::conformance_tests!(@cases $make;
            put_then_get_round_trips_values,
            get_of_a_missing_key_is_none,
            ttl_has_millisecond_precision,
            zero_ttl_removes_the_key,
            forever_never_expires,
            has_reports_live_entries_only,
            increment_starts_missing_keys_at_zero,
            increment_keeps_the_ttl_of_an_existing_key,
            increment_restarts_an_expired_counter_without_ttl,
            put_integers_are_counters,
            increment_of_a_non_integer_is_an_error_and_keeps_the_value,
            increment_overflow_is_an_error_and_keeps_the_value,
            increments_are_atomic_under_concurrency,
            add_stores_only_when_absent,
            add_is_atomic_under_concurrency,
            remember_runs_the_loader_only_on_a_miss,
            concurrent_remember_runs_the_loader_once,
            try_remember_failure_stores_nothing,
            forget_reports_whether_the_key_existed,
            pull_returns_and_removes,
            touch_extends_a_live_entry_only,
            many_and_put_many_work_in_order,
            flush_removes_every_entry,
            hostile_keys_are_safe_and_distinct,
            undecodable_entries_are_misses_and_are_removed,
            entries_are_readable_across_codecs,
            hit_gives_a_new_counter_its_window,
            hit_gives_a_counter_without_ttl_a_window,
            hits_are_atomic_under_concurrency,
            lock_has_one_holder_at_a_time,
            lock_excludes_32_concurrent_contenders,
            expired_holder_cannot_release_the_next_holders_lock,
            acquire_timeout_gives_up_with_an_error,
            locks_expire_and_can_be_forced_open_or_restored,
            lock_names_never_collide_with_cache_keys,
            tag_flush_invalidates_its_entries_only,
            tag_flush_does_the_same_work_for_10_or_1000_entries,
            flexible_serves_stale_while_refreshing_once,
            remember_across_instances_loads_once,
            remember_waits_a_bounded_time_for_a_stuck_fill,
            stats_count_every_operation,
            listeners_see_every_kind_of_event,
            large_values_are_compressed_transparently,
            oversized_keys_and_values_are_refused_and_change_nothing,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let subject = $make().await;
                conformance::$case(&subject).await;
            }
        )*
    };
}

pub async fn put_then_get_round_trips_values(s: &Subject) {
    let c = &s.cache;
    c.put("user", &user(1), MINUTE).await.unwrap();
    c.put("text", "héllo wörld", MINUTE).await.unwrap();
    c.put("list", &vec![1.5, -2.0], MINUTE).await.unwrap();
    c.put("empty", &"", MINUTE).await.unwrap();
    c.put("unit", &(), MINUTE).await.unwrap();
    c.put("big", &u64::MAX, MINUTE).await.unwrap();
    assert_eq!(c.get::<User>("user").await.unwrap(), Some(user(1)));
    assert_eq!(
        c.get::<String>("text").await.unwrap().as_deref(),
        Some("héllo wörld")
    );
    assert_eq!(
        c.get::<Vec<f64>>("list").await.unwrap(),
        Some(vec![1.5, -2.0])
    );
    assert_eq!(c.get::<String>("empty").await.unwrap().as_deref(), Some(""));
    assert_eq!(c.get::<()>("unit").await.unwrap(), Some(()));
    assert_eq!(c.get::<u64>("big").await.unwrap(), Some(u64::MAX));
    c.put("user", &user(2), MINUTE).await.unwrap();
    assert_eq!(
        c.get::<User>("user").await.unwrap(),
        Some(user(2)),
        "put replaces"
    );
}

pub async fn get_of_a_missing_key_is_none(s: &Subject) {
    assert_eq!(s.cache.get::<User>("nothing here").await.unwrap(), None);
    assert_eq!(s.cache.get::<i64>("nothing here").await.unwrap(), None);
}

pub async fn ttl_has_millisecond_precision(s: &Subject) {
    let ttl = Duration::from_secs(1);
    s.cache.put("k", &"v", ttl).await.unwrap();
    s.advance(ttl - Duration::from_millis(1) - s.slack()).await;
    assert!(s.cache.has("k").await.unwrap(), "there just before the TTL");
    s.advance(Duration::from_millis(1) + 2 * s.slack()).await;
    assert!(!s.cache.has("k").await.unwrap(), "gone at the TTL");
    assert_eq!(s.cache.get::<String>("k").await.unwrap(), None);
}

pub async fn zero_ttl_removes_the_key(s: &Subject) {
    s.cache.put("k", &1, MINUTE).await.unwrap();
    s.cache.put("k", &2, Duration::ZERO).await.unwrap();
    assert!(!s.cache.has("k").await.unwrap());
    s.cache.put_many(&[("a", 1)], MINUTE).await.unwrap();
    s.cache.put_many(&[("a", 2)], Duration::ZERO).await.unwrap();
    assert!(!s.cache.has("a").await.unwrap());
}

pub async fn forever_never_expires(s: &Subject) {
    s.cache.forever("k", &user(7)).await.unwrap();
    s.advance(s.long_time()).await;
    assert_eq!(s.cache.get::<User>("k").await.unwrap(), Some(user(7)));
}

pub async fn has_reports_live_entries_only(s: &Subject) {
    assert!(!s.cache.has("k").await.unwrap());
    s.cache
        .put("k", &false, Duration::from_millis(400))
        .await
        .unwrap();
    assert!(s.cache.has("k").await.unwrap());
    s.advance(Duration::from_millis(400) + s.slack()).await;
    assert!(!s.cache.has("k").await.unwrap());
}

pub async fn increment_starts_missing_keys_at_zero(s: &Subject) {
    assert_eq!(s.cache.increment("n", 1).await.unwrap(), 1);
    assert_eq!(s.cache.increment("n", 10).await.unwrap(), 11);
    assert_eq!(s.cache.decrement("n", 12).await.unwrap(), -1);
    assert_eq!(s.cache.decrement("m", 3).await.unwrap(), -3);
    assert_eq!(s.cache.get::<i64>("n").await.unwrap(), Some(-1));
}

pub async fn increment_keeps_the_ttl_of_an_existing_key(s: &Subject) {
    let ttl = Duration::from_millis(800);
    s.cache.put("n", &5, ttl).await.unwrap();
    assert_eq!(s.cache.increment("n", 1).await.unwrap(), 6);
    s.advance(ttl + s.slack()).await;
    assert_eq!(
        s.cache.get::<i64>("n").await.unwrap(),
        None,
        "the TTL was kept"
    );
}

pub async fn increment_restarts_an_expired_counter_without_ttl(s: &Subject) {
    let ttl = Duration::from_millis(500);
    s.cache.put("n", &5, ttl).await.unwrap();
    s.advance(ttl + s.slack()).await;
    assert_eq!(s.cache.increment("n", 1).await.unwrap(), 1);
    s.advance(s.long_time()).await;
    assert_eq!(s.cache.get::<i64>("n").await.unwrap(), Some(1));
}

pub async fn put_integers_are_counters(s: &Subject) {
    s.cache.put("n", &5, MINUTE).await.unwrap();
    assert_eq!(s.cache.increment("n", 1).await.unwrap(), 6);
    assert_eq!(s.cache.get::<i64>("n").await.unwrap(), Some(6));
    assert_eq!(s.cache.get::<u8>("n").await.unwrap(), Some(6));
    s.cache.put("neg", &-9i32, MINUTE).await.unwrap();
    assert_eq!(s.cache.increment("neg", 10).await.unwrap(), 1);
}

pub async fn increment_of_a_non_integer_is_an_error_and_keeps_the_value(s: &Subject) {
    s.cache.put("u", &user(3), MINUTE).await.unwrap();
    s.cache.put("f", &1.5, MINUTE).await.unwrap();
    for key in ["u", "f"] {
        let err = s.cache.increment(key, 1).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::NotAnInteger { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(key), "{err}");
    }
    assert_eq!(s.cache.get::<User>("u").await.unwrap(), Some(user(3)));
    assert_eq!(s.cache.get::<f64>("f").await.unwrap(), Some(1.5));
}

pub async fn increment_overflow_is_an_error_and_keeps_the_value(s: &Subject) {
    s.cache.put("n", &i64::MAX, MINUTE).await.unwrap();
    let err = s.cache.increment("n", 1).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Overflow { .. }), "{err:?}");
    assert_eq!(s.cache.get::<i64>("n").await.unwrap(), Some(i64::MAX));
    assert!(s.cache.decrement("m", i64::MIN).await.is_err());
}

pub async fn increments_are_atomic_under_concurrency(s: &Subject) {
    let (tasks, each) = (16, 50);
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let cache = s.cache.clone();
            tokio::spawn(async move {
                for _ in 0..each {
                    cache.increment("shared", 1).await.unwrap();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    assert_eq!(
        s.cache.get::<i64>("shared").await.unwrap(),
        Some(tasks * each)
    );
}

pub async fn add_stores_only_when_absent(s: &Subject) {
    let ttl = Duration::from_millis(500);
    assert!(s.cache.add("k", &1, ttl).await.unwrap());
    assert!(!s.cache.add("k", &2, ttl).await.unwrap());
    assert_eq!(s.cache.get::<i64>("k").await.unwrap(), Some(1));
    s.advance(ttl + s.slack()).await;
    assert!(
        s.cache.add("k", &3, MINUTE).await.unwrap(),
        "an expired entry is absent"
    );
    assert_eq!(s.cache.get::<i64>("k").await.unwrap(), Some(3));
    assert!(!s.cache.add("z", &1, Duration::ZERO).await.unwrap());
    assert!(!s.cache.has("z").await.unwrap());
}

pub async fn add_is_atomic_under_concurrency(s: &Subject) {
    let handles: Vec<_> = (0..32)
        .map(|i| {
            let cache = s.cache.clone();
            tokio::spawn(async move { cache.add("once", &i, MINUTE).await.unwrap() })
        })
        .collect();
    let mut winners = 0;
    for handle in handles {
        winners += usize::from(handle.await.unwrap());
    }
    assert_eq!(winners, 1);
}

pub async fn remember_runs_the_loader_only_on_a_miss(s: &Subject) {
    let calls = AtomicUsize::new(0);
    for _ in 0..3 {
        let value: User = s
            .cache
            .remember("r", MINUTE, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                user(9)
            })
            .await
            .unwrap();
        assert_eq!(value, user(9));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(s.cache.get::<User>("r").await.unwrap(), Some(user(9)));
    let forever: i64 = s
        .cache
        .remember_forever("rf", || async { 4 })
        .await
        .unwrap();
    assert_eq!(forever, 4);
}

pub async fn concurrent_remember_runs_the_loader_once(s: &Subject) {
    let calls = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..32)
        .map(|_| {
            let cache = s.cache.clone();
            let calls = Arc::clone(&calls);
            tokio::spawn(async move {
                cache
                    .remember("slow", MINUTE, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        user(5)
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.await.unwrap(), user(5));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "single flight");
}

pub async fn try_remember_failure_stores_nothing(s: &Subject) {
    let err = s
        .cache
        .try_remember("t", MINUTE, || async { Err::<User, _>("database down") })
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Loader { .. }), "{err:?}");
    assert!(!s.cache.has("t").await.unwrap());
    let ok: User = s
        .cache
        .try_remember("t", MINUTE, || async { Ok::<_, Error>(user(1)) })
        .await
        .unwrap();
    assert_eq!(ok, user(1));
}

pub async fn forget_reports_whether_the_key_existed(s: &Subject) {
    s.cache
        .put("k", &1, Duration::from_millis(300))
        .await
        .unwrap();
    s.cache.put("j", &1, MINUTE).await.unwrap();
    assert!(s.cache.forget("j").await.unwrap());
    assert!(!s.cache.forget("j").await.unwrap());
    assert!(!s.cache.forget("never").await.unwrap());
    s.advance(Duration::from_millis(300) + s.slack()).await;
    assert!(
        !s.cache.forget("k").await.unwrap(),
        "an expired entry did not exist"
    );
}

pub async fn pull_returns_and_removes(s: &Subject) {
    s.cache.put("p", &user(4), MINUTE).await.unwrap();
    assert_eq!(s.cache.pull::<User>("p").await.unwrap(), Some(user(4)));
    assert_eq!(s.cache.pull::<User>("p").await.unwrap(), None);
    assert!(!s.cache.has("p").await.unwrap());
}

pub async fn touch_extends_a_live_entry_only(s: &Subject) {
    let short = Duration::from_millis(500);
    s.cache.put("k", &1, short).await.unwrap();
    assert!(s.cache.touch("k", MINUTE).await.unwrap());
    s.advance(short + s.slack()).await;
    assert_eq!(
        s.cache.get::<i64>("k").await.unwrap(),
        Some(1),
        "the new TTL holds"
    );
    assert!(!s.cache.touch("missing", MINUTE).await.unwrap());
    assert!(!s.cache.has("missing").await.unwrap());
    assert!(s.cache.touch("k", Duration::ZERO).await.unwrap());
    assert!(!s.cache.has("k").await.unwrap(), "a zero TTL removes");
}

pub async fn many_and_put_many_work_in_order(s: &Subject) {
    s.cache
        .put_many(&[("a", user(1)), ("b", user(2))], MINUTE)
        .await
        .unwrap();
    let values = s.cache.many::<User>(&["b", "missing", "a"]).await.unwrap();
    assert_eq!(values, vec![Some(user(2)), None, Some(user(1))]);
}

pub async fn flush_removes_every_entry(s: &Subject) {
    for i in 0..20 {
        s.cache.put(&format!("k{i}"), &i, MINUTE).await.unwrap();
    }
    s.cache.forever("f", &1).await.unwrap();
    s.cache.increment("c", 1).await.unwrap();
    s.cache.flush().await.unwrap();
    for key in ["k0", "k19", "f", "c"] {
        assert!(!s.cache.has(key).await.unwrap(), "{key}");
    }
    s.cache.put("after", &1, MINUTE).await.unwrap();
    assert!(
        s.cache.has("after").await.unwrap(),
        "the cache still works after a flush"
    );
}

/// Keys that break naive file paths or protocols.
pub fn hostile_keys() -> Vec<String> {
    vec![
        String::new(),
        " ".into(),
        "../../etc/passwd".into(),
        "..".into(),
        "/absolute/path".into(),
        "a/b\\c".into(),
        "with space and\ttab\nnewline".into(),
        "NUL\0byte".into(),
        "ünïcødé 🚀 日本語".into(),
        "Case".into(),
        "case".into(),
        "{hash}tag".into(),
        "*".into(),
        "x".repeat(10_000),
        format!("{}y", "x".repeat(9_999)),
    ]
}

pub async fn hostile_keys_are_safe_and_distinct(s: &Subject) {
    let keys = hostile_keys();
    for (i, key) in keys.iter().enumerate() {
        s.cache.put(key, &i, MINUTE).await.unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(s.cache.get::<usize>(key).await.unwrap(), Some(i), "{key:?}");
        assert_eq!(s.cache.increment(key, 1).await.unwrap(), i as i64 + 1);
    }
    assert!(s.cache.forget("..").await.unwrap());
    assert_eq!(
        s.cache.get::<usize>("../../etc/passwd").await.unwrap(),
        Some(3)
    );
}

pub async fn undecodable_entries_are_misses_and_are_removed(s: &Subject) {
    s.cache.put("u", &"not a user", MINUTE).await.unwrap();
    assert_eq!(s.cache.get::<User>("u").await.unwrap(), None);
    assert!(!s.cache.has("u").await.unwrap(), "removed");

    for garbage in [&b"\xff\x00garbage"[..], b"jtc", b"jtc\x7f", b"jtc\x01\xc1"] {
        s.cache
            .driver()
            .put("g", Bytes::copy_from_slice(garbage), Some(MINUTE))
            .await
            .unwrap();
        assert_eq!(s.cache.get::<User>("g").await.unwrap(), None, "{garbage:?}");
        assert!(!s.cache.has("g").await.unwrap(), "{garbage:?} removed");
    }

    s.cache.put("t", &user(8), MINUTE).await.unwrap();
    let mut bytes = s.cache.driver().get("t").await.unwrap().unwrap();
    bytes.truncate(bytes.len() - 4);
    s.cache
        .driver()
        .put("t", bytes, Some(MINUTE))
        .await
        .unwrap();
    assert_eq!(s.cache.get::<User>("t").await.unwrap(), None);
    assert!(s.cache.many::<User>(&["t"]).await.unwrap()[0].is_none());
}

pub async fn entries_are_readable_across_codecs(s: &Subject) {
    let json = s.cache.clone().with_codec(Codec::Json);
    json.put("j", &user(1), MINUTE).await.unwrap();
    s.cache.put("m", &user(2), MINUTE).await.unwrap();
    assert_eq!(s.cache.get::<User>("j").await.unwrap(), Some(user(1)));
    assert_eq!(json.get::<User>("m").await.unwrap(), Some(user(2)));
    json.put("n", &41, MINUTE).await.unwrap();
    assert_eq!(s.cache.increment("n", 1).await.unwrap(), 42);
}

pub async fn hit_gives_a_new_counter_its_window(s: &Subject) {
    let window = Duration::from_millis(800);
    let first = s.cache.hit("h", window).await.unwrap();
    assert_eq!(first.count, 1);
    assert!(first.expires_in <= window && first.expires_in + s.slack() >= window);
    s.advance(Duration::from_millis(300)).await;
    let second = s.cache.hit("h", window).await.unwrap();
    assert_eq!(second.count, 2);
    assert!(
        second.expires_in <= window - Duration::from_millis(300),
        "{second:?}"
    );
    s.advance(Duration::from_millis(500) + s.slack()).await;
    let next_window = s.cache.hit("h", window).await.unwrap();
    assert_eq!(next_window.count, 1, "the window started over");
}

pub async fn hit_gives_a_counter_without_ttl_a_window(s: &Subject) {
    s.cache.increment("h", 3).await.unwrap();
    let hit = s.cache.hit("h", Duration::from_millis(500)).await.unwrap();
    assert_eq!(hit.count, 4);
    assert!(hit.expires_in <= Duration::from_millis(500));
    s.advance(Duration::from_millis(500) + s.slack()).await;
    assert!(!s.cache.has("h").await.unwrap(), "the counter expired");
}

pub async fn hits_are_atomic_under_concurrency(s: &Subject) {
    let handles: Vec<_> = (0..200)
        .map(|_| {
            let cache = s.cache.clone();
            tokio::spawn(async move { cache.hit("burst", MINUTE).await.unwrap().count })
        })
        .collect();
    let mut counts = Vec::new();
    for handle in handles {
        counts.push(handle.await.unwrap());
    }
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=200).collect::<Vec<_>>(),
        "every hit saw its own count"
    );
}

// ---- locks ----

pub async fn lock_has_one_holder_at_a_time(s: &Subject) {
    let lock = s.cache.lock("job", MINUTE);
    let guard = lock
        .try_acquire()
        .await
        .unwrap()
        .expect("a free lock is taken");
    assert!(lock.try_acquire().await.unwrap().is_none(), "held");
    let other = s.cache.lock("job", MINUTE);
    assert!(
        other.try_acquire().await.unwrap().is_none(),
        "held for other handles too"
    );
    assert_eq!(lock.owner().await.unwrap().as_deref(), Some(guard.owner()));
    assert!(guard.release().await.unwrap());
    assert_eq!(lock.owner().await.unwrap(), None);
    let again = other
        .try_acquire()
        .await
        .unwrap()
        .expect("free after release");
    assert!(again.release().await.unwrap());
}

pub async fn lock_excludes_32_concurrent_contenders(s: &Subject) {
    // Each holder does a read-modify-write that loses updates unless the lock excludes all
    // others: 32 holders must leave exactly 32.
    let inside = Arc::new(AtomicUsize::new(0));
    s.cache.put("total", &0, MINUTE).await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let cache = s.cache.clone();
            let inside = Arc::clone(&inside);
            tokio::spawn(async move {
                let lock = cache.lock("counter", MINUTE);
                let guard = lock.acquire_timeout(Duration::from_secs(30)).await.unwrap();
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                let total: i64 = cache.get("total").await.unwrap().unwrap();
                tokio::time::sleep(Duration::from_millis(2)).await;
                cache.put("total", &(total + 1), MINUTE).await.unwrap();
                inside.fetch_sub(1, Ordering::SeqCst);
                assert!(guard.release().await.unwrap());
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(s.cache.get::<i64>("total").await.unwrap(), Some(32));
}

pub async fn expired_holder_cannot_release_the_next_holders_lock(s: &Subject) {
    let ttl = Duration::from_millis(500);
    let first = s
        .cache
        .lock("report", ttl)
        .try_acquire()
        .await
        .unwrap()
        .unwrap();
    s.advance(ttl + s.slack()).await;
    let lock = s.cache.lock("report", ttl);
    let second = lock
        .try_acquire()
        .await
        .unwrap()
        .expect("expired locks are free");
    assert!(
        !first.release().await.unwrap(),
        "the old holder's release does nothing"
    );
    assert_eq!(lock.owner().await.unwrap().as_deref(), Some(second.owner()));
    assert!(
        lock.try_acquire().await.unwrap().is_none(),
        "still held by the second"
    );
    assert!(second.release().await.unwrap());
}

pub async fn acquire_timeout_gives_up_with_an_error(s: &Subject) {
    let lock = s.cache.lock("busy", MINUTE);
    let _held = lock.try_acquire().await.unwrap().unwrap();
    let started = Instant::now();
    let err = lock
        .acquire_timeout(Duration::from_millis(300))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(err.kind(), ErrorKind::LockTimeout { name, .. } if name == "busy"),
        "{err:?}"
    );
    assert!(err.to_string().contains("busy"), "{err}");
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(3), "{waited:?}");
}

pub async fn locks_expire_and_can_be_forced_open_or_restored(s: &Subject) {
    let ttl = Duration::from_millis(400);
    let lock = s.cache.lock("expiring", ttl);
    let guard = lock.try_acquire().await.unwrap().unwrap();
    let _ = guard.keep();
    s.advance(ttl + s.slack()).await;
    assert!(
        lock.try_acquire()
            .await
            .unwrap()
            .unwrap()
            .release()
            .await
            .unwrap()
    );

    let forever = s.cache.lock_forever("manual");
    let token = forever.try_acquire().await.unwrap().unwrap().keep();
    s.advance(s.long_time()).await;
    assert!(
        forever.try_acquire().await.unwrap().is_none(),
        "no TTL: still held"
    );
    assert!(
        !s.cache
            .restore_lock("manual", "not the owner")
            .release()
            .await
            .unwrap()
    );
    assert!(
        s.cache
            .restore_lock("manual", &token)
            .release()
            .await
            .unwrap()
    );

    let _left = forever.try_acquire().await.unwrap().unwrap().keep();
    assert!(forever.force_release().await.unwrap());
    assert!(!forever.force_release().await.unwrap());
    assert!(forever.try_acquire().await.unwrap().is_some());

    let err = s
        .cache
        .lock("zero", Duration::ZERO)
        .try_acquire()
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ZeroLockTtl { .. }),
        "{err:?}"
    );
}

pub async fn lock_names_never_collide_with_cache_keys(s: &Subject) {
    s.cache.put("x", &"value", MINUTE).await.unwrap();
    let guard = s
        .cache
        .lock("x", MINUTE)
        .try_acquire()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        s.cache.get::<String>("x").await.unwrap().as_deref(),
        Some("value")
    );
    assert!(s.cache.forget("x").await.unwrap());
    assert!(
        s.cache
            .lock("x", MINUTE)
            .try_acquire()
            .await
            .unwrap()
            .is_none()
    );
    // Even a key written to look like the lock's storage is a different entry.
    for sneaky in ["\0lock:x", "\0\0lock:x", "lock:x"] {
        s.cache.put(sneaky, &1, MINUTE).await.unwrap();
        assert!(
            s.cache
                .lock("x", MINUTE)
                .try_acquire()
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(s.cache.get::<i32>(sneaky).await.unwrap(), Some(1));
    }
    assert!(guard.release().await.unwrap());
}

// ---- tags ----

pub async fn tag_flush_invalidates_its_entries_only(s: &Subject) {
    let c = &s.cache;
    c.tags(&["users", "posts"])
        .put("a", &1, MINUTE)
        .await
        .unwrap();
    c.tags(&["posts"]).put("b", &2, MINUTE).await.unwrap();
    c.tags(&["users"]).put("c", &3, MINUTE).await.unwrap();
    c.put("a", &"untagged", MINUTE).await.unwrap();
    assert_eq!(
        c.tags(&["posts", "users"]).get::<i32>("a").await.unwrap(),
        Some(1),
        "any order"
    );
    assert_eq!(c.tags(&["users"]).increment("c", 1).await.unwrap(), 4);
    let remembered: i32 = c
        .tags(&["posts"])
        .remember("r", MINUTE, || async { 9 })
        .await
        .unwrap();
    assert_eq!(remembered, 9);

    c.tags(&["users"]).flush().await.unwrap();

    assert_eq!(
        c.tags(&["users", "posts"]).get::<i32>("a").await.unwrap(),
        None
    );
    assert_eq!(c.tags(&["users"]).get::<i32>("c").await.unwrap(), None);
    assert_eq!(c.tags(&["posts"]).get::<i32>("b").await.unwrap(), Some(2));
    assert_eq!(c.tags(&["posts"]).get::<i32>("r").await.unwrap(), Some(9));
    assert_eq!(
        c.get::<String>("a").await.unwrap().as_deref(),
        Some("untagged")
    );
    // New writes under a flushed tag work as before.
    c.tags(&["users"]).put("c", &5, MINUTE).await.unwrap();
    assert_eq!(c.tags(&["users"]).get::<i32>("c").await.unwrap(), Some(5));
    // A full flush takes tags with it.
    c.flush().await.unwrap();
    assert_eq!(c.tags(&["posts"]).get::<i32>("b").await.unwrap(), None);
}

pub async fn tag_flush_does_the_same_work_for_10_or_1000_entries(s: &Subject) {
    let counting = Arc::new(Counting::new(Arc::clone(s.cache.driver())));
    let cache = Cache::from_driver(Arc::clone(&counting) as Arc<dyn CacheDriver>);
    let mut work = Vec::new();
    for (tag, entries) in [("small", 10), ("large", 1000)] {
        let tagged = cache.tags(&[tag, "shared"]);
        let values: Vec<(String, i32)> = (0..entries).map(|i| (format!("k{i}"), i)).collect();
        for (key, value) in &values {
            tagged.put(key, value, MINUTE).await.unwrap();
        }
        let before = counting.calls();
        cache.tags(&[tag]).flush().await.unwrap();
        work.push(counting.calls() - before);
        assert_eq!(tagged.get::<i32>("k0").await.unwrap(), None);
    }
    assert_eq!(
        work[0], work[1],
        "flush work must not depend on the entry count"
    );
    assert!(work[0] <= 2, "one write per flushed tag: {work:?}");
}

// ---- stale-while-revalidate and stampedes ----

pub async fn flexible_serves_stale_while_refreshing_once(s: &Subject) {
    let fresh = Duration::from_millis(500);
    let stale = Duration::from_millis(1500);
    let calls = Arc::new(AtomicUsize::new(0));
    let load = |value: i32, calls: &Arc<AtomicUsize>| {
        let calls = Arc::clone(calls);
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            value
        }
    };
    let v: i32 = s
        .cache
        .flexible("f", fresh, stale, load(1, &calls))
        .await
        .unwrap();
    assert_eq!(
        (v, calls.load(Ordering::SeqCst)),
        (1, 1),
        "computed on first use"
    );
    let v: i32 = s
        .cache
        .flexible("f", fresh, stale, load(99, &calls))
        .await
        .unwrap();
    assert_eq!((v, calls.load(Ordering::SeqCst)), (1, 1), "fresh: cached");

    s.advance(fresh + s.slack()).await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let cache = s.cache.clone();
            let load = load(2, &calls);
            tokio::spawn(async move {
                let started = Instant::now();
                let v: i32 = cache.flexible("f", fresh, stale, load).await.unwrap();
                (v, started.elapsed())
            })
        })
        .collect();
    for task in tasks {
        let (v, took) = task.await.unwrap();
        assert_eq!(v, 1, "stale: the old value at once");
        assert!(
            took < Duration::from_millis(250),
            "not waiting for the loader: {took:?}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.cache.get::<i32>("f").await.unwrap() != Some(2) {
        assert!(
            Instant::now() < deadline,
            "the background refresh never landed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one background refresh for 16 stale reads"
    );
    let v: i32 = s
        .cache
        .flexible("f", fresh, stale, load(99, &calls))
        .await
        .unwrap();
    assert_eq!(
        (v, calls.load(Ordering::SeqCst)),
        (2, 2),
        "fresh again after the refresh"
    );

    s.advance(stale + s.slack()).await;
    let v: i32 = s
        .cache
        .flexible("f", fresh, stale, load(3, &calls))
        .await
        .unwrap();
    assert_eq!(
        (v, calls.load(Ordering::SeqCst)),
        (3, 3),
        "past stale: in the foreground"
    );
}

pub async fn remember_across_instances_loads_once(s: &Subject) {
    // Four `Cache` handles over one backend stand for four app instances: each has its own
    // in-process single flight, so only the backend's fill lock can make them load once.
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let instance = Cache::from_driver(Arc::clone(s.cache.driver()));
        for _ in 0..8 {
            let cache = instance.clone();
            let calls = Arc::clone(&calls);
            tasks.push(tokio::spawn(async move {
                cache
                    .remember("shared", MINUTE, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        user(3)
                    })
                    .await
                    .unwrap()
            }));
        }
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), user(3));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one load across instances");
}

pub async fn remember_waits_a_bounded_time_for_a_stuck_fill(s: &Subject) {
    // Another instance took the fill lock and died without storing anything.
    let other = Cache::from_driver(Arc::clone(s.cache.driver()))
        .stampede_protection(MINUTE, Duration::from_millis(300));
    let stuck = Cache::from_driver(Arc::clone(s.cache.driver()));
    let blocker = Arc::new(AtomicUsize::new(0));
    let hold = {
        let blocker = Arc::clone(&blocker);
        async move {
            stuck
                .remember("stuck", MINUTE, || async move {
                    blocker.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    0
                })
                .await
        }
    };
    let holder = tokio::spawn(hold);
    while blocker.load(Ordering::SeqCst) == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let v: i32 = other
        .remember("stuck", MINUTE, || async { 7 })
        .await
        .unwrap();
    let waited = started.elapsed();
    holder.abort();
    assert_eq!(v, 7);
    assert!(
        waited >= Duration::from_millis(290),
        "waited for the holder: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "but not for long: {waited:?}"
    );
}

// ---- events and stats ----

pub async fn stats_count_every_operation(s: &Subject) {
    let cache = Cache::from_driver(Arc::clone(s.cache.driver()));
    assert_eq!(cache.stats(), CacheStats::default());
    assert_eq!(cache.get::<i32>("a").await.unwrap(), None);
    cache.put("a", &1, MINUTE).await.unwrap();
    assert_eq!(cache.get::<i32>("a").await.unwrap(), Some(1));
    assert_eq!(cache.increment("a", 1).await.unwrap(), 2);
    let _: i32 = cache.remember("b", MINUTE, || async { 5 }).await.unwrap();
    assert!(cache.forget("a").await.unwrap());
    assert!(!cache.forget("a").await.unwrap());
    cache.put("text", &"x", MINUTE).await.unwrap();
    assert!(cache.increment("text", 1).await.is_err());
    let stats = cache.stats();
    assert_eq!(
        (
            stats.hits,
            stats.misses,
            stats.writes,
            stats.deletes,
            stats.errors
        ),
        (1, 2, 4, 1, 1),
        "{stats:?}"
    );
    assert_eq!(stats.hit_ratio(), Some(1.0 / 3.0));
    // Clones share the counters; a cache with counting off adds nothing.
    let _ = cache.clone().get::<i32>("b").await.unwrap();
    assert_eq!(cache.stats().hits, 2);
    let quiet = cache.clone().with_stats(false);
    let _ = quiet.get::<i32>("b").await.unwrap();
    assert_eq!(cache.stats().hits, 2);
}

pub async fn listeners_see_every_kind_of_event(s: &Subject) {
    let cache = Cache::from_driver(Arc::clone(s.cache.driver()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    cache.on(move |event| {
        sink.lock()
            .unwrap()
            .push((event.kind, event.key.to_owned()))
    });
    cache.get::<i32>("k").await.unwrap();
    cache.put("k", &1, MINUTE).await.unwrap();
    cache.get::<i32>("k").await.unwrap();
    cache.forget("k").await.unwrap();
    cache
        .lock("l", MINUTE)
        .try_acquire()
        .await
        .unwrap()
        .unwrap()
        .release()
        .await
        .unwrap();
    cache.tags(&["t"]).flush().await.unwrap();
    cache.flush().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let expected = [
        (EventKind::Miss, "k"),
        (EventKind::Written, "k"),
        (EventKind::Hit, "k"),
        (EventKind::Forgotten, "k"),
        (EventKind::LockAcquired, "l"),
        (EventKind::LockReleased, "l"),
        (EventKind::Flushed, "t"),
        (EventKind::Flushed, ""),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(k, key)| (*k, (*key).to_owned()))
        .collect();
    assert_eq!(seen, expected);
}

// ---- compression ----

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub users: Vec<User>,
    pub next: Option<String>,
}

pub fn page(n: u64) -> Page {
    Page {
        users: (0..n).map(user).collect(),
        next: Some("/users?cursor=abcdef".to_owned()),
    }
}

pub async fn large_values_are_compressed_transparently(s: &Subject) {
    let big = page(200);
    let plain_size = rmp_size(&big);
    s.cache.put("page", &big, MINUTE).await.unwrap();
    let stored = s.cache.driver().get("page").await.unwrap().unwrap();
    assert!(
        stored.len() * 3 < plain_size,
        "{} vs {plain_size}",
        stored.len()
    );
    assert_eq!(
        s.cache.get::<Page>("page").await.unwrap(),
        Some(big.clone())
    );

    // Readers decompress whatever their own setting; small values stay plain.
    let plain = s.cache.clone().without_compression();
    assert_eq!(plain.get::<Page>("page").await.unwrap(), Some(big.clone()));
    plain.put("page2", &big, MINUTE).await.unwrap();
    let stored = s.cache.driver().get("page2").await.unwrap().unwrap();
    assert!(stored.len() >= plain_size, "written plain");
    assert_eq!(s.cache.get::<Page>("page2").await.unwrap(), Some(big));
    s.cache.put("small", &page(1), MINUTE).await.unwrap();
    let stored = s.cache.driver().get("small").await.unwrap().unwrap();
    assert_eq!(
        stored.len(),
        rmp_size(&page(1)) + 4,
        "below the threshold: plain"
    );
    // Compressed JSON too.
    let json = s.cache.clone().with_codec(Codec::Json).compress_above(64);
    json.put("j", &page(50), MINUTE).await.unwrap();
    assert_eq!(s.cache.get::<Page>("j").await.unwrap(), Some(page(50)));
}

fn rmp_size<T: Serialize>(value: &T) -> usize {
    rmp_serde::to_vec_named(value).unwrap().len()
}

/// A driver that counts the calls made through it, forwarding to the real one.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn CacheDriver>,
    calls: AtomicUsize,
}

impl Counting {
    pub fn new(inner: Arc<dyn CacheDriver>) -> Self {
        Self {
            inner,
            calls: AtomicUsize::new(0),
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

impl CacheDriver for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn get<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        self.count();
        self.inner.get(key)
    }
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, ()> {
        self.count();
        self.inner.put(key, value, ttl)
    }
    fn add<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, bool> {
        self.count();
        self.inner.add(key, value, ttl)
    }
    fn increment<'a>(&'a self, key: &'a str, by: i64) -> DriverFuture<'a, i64> {
        self.count();
        self.inner.increment(key, by)
    }
    fn hit<'a>(&'a self, key: &'a str, window: Duration) -> DriverFuture<'a, Hit> {
        self.count();
        self.inner.hit(key, window)
    }
    fn forget<'a>(&'a self, key: &'a str) -> DriverFuture<'a, bool> {
        self.count();
        self.inner.forget(key)
    }
    fn forget_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> DriverFuture<'a, bool> {
        self.count();
        self.inner.forget_if(key, expected)
    }
    fn pull<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        self.count();
        self.inner.pull(key)
    }
    fn touch<'a>(&'a self, key: &'a str, ttl: Option<Duration>) -> DriverFuture<'a, bool> {
        self.count();
        self.inner.touch(key, ttl)
    }
    fn flush(&self) -> DriverFuture<'_, ()> {
        self.count();
        self.inner.flush()
    }
    fn many<'a>(&'a self, keys: &'a [&'a str]) -> DriverFuture<'a, Vec<Option<Bytes>>> {
        self.count();
        self.inner.many(keys)
    }
}

pub async fn oversized_keys_and_values_are_refused_and_change_nothing(s: &Subject) {
    let huge_key = "k".repeat(1024 * 1024);
    let err = s.cache.put(&huge_key, &1, MINUTE).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::KeyTooLong { length, .. } if *length == huge_key.len())
    );
    assert!(
        err.to_string().len() < 200,
        "the key is not repeated: {err}"
    );
    assert!(s.cache.get::<i32>(&huge_key).await.is_err());
    assert!(s.cache.increment(&huge_key, 1).await.is_err());
    assert!(s.cache.lock(&huge_key, MINUTE).try_acquire().await.is_err());
    assert!(
        s.cache
            .tags(&[huge_key.as_str()])
            .get::<i32>("k")
            .await
            .is_err()
    );
    let longest = "k".repeat(jtc_cache::MAX_KEY_BYTES);
    s.cache.put(&longest, &1, MINUTE).await.unwrap();
    assert_eq!(s.cache.get::<i32>(&longest).await.unwrap(), Some(1));

    let small = s.cache.clone().max_value_size(10_000).without_compression();
    small.put("v", &"kept", MINUTE).await.unwrap();
    let err = small
        .put("v", &"x".repeat(20_000), MINUTE)
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ValueTooLarge { key, size, limit: 10_000 } if key == "v" && *size > 20_000),
        "{err:?}"
    );
    assert_eq!(
        small.get::<String>("v").await.unwrap().as_deref(),
        Some("kept")
    );
    assert!(
        !small
            .add("w", &"x".repeat(20_000), MINUTE)
            .await
            .is_ok_and(|stored| stored)
    );
    assert!(!small.has("w").await.unwrap());
}
