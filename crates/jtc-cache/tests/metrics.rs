//! The cache's metrics (feature `metrics`), read back from a recording recorder: exact counts
//! per name and label, durations sampled (the first call of each operation, then one in 32), no
//! key in any label.
//!
//! Each test runs on a thread of its own with a thread-local recorder, so tests neither see
//! each other's metrics nor share the per-thread timing sample.

use std::{future::Future, time::Duration};

use jtc_cache::{ArrayDriver, Cache, FileDriver, metrics as names};
use metrics_util::{
    CompositeKey,
    debugging::{DebugValue, DebuggingRecorder, Snapshotter},
};

const TTL: Duration = Duration::from_secs(60);

/// Runs `work` on a new thread whose metrics go to a fresh recorder; returns what it saw.
fn recorded<F, Fut>(work: F) -> Recorded
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    std::thread::spawn(move || {
        let recorder = DebuggingRecorder::new();
        let snapshotter: Snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(&recorder, || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(work());
            jtc_cache::metrics::publish();
        });
        Recorded(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| (key, value))
                .collect(),
        )
    })
    .join()
    .unwrap()
}

struct Recorded(Vec<(CompositeKey, DebugValue)>);

impl Recorded {
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        self.0.iter().find_map(|(key, value)| {
            let key = key.key();
            let mut found: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
            found.sort_unstable();
            let mut wanted = labels.to_vec();
            wanted.sort_unstable();
            (key.name() == name && found == wanted).then_some(value)
        })
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.find(name, labels) {
            Some(DebugValue::Counter(count)) => *count,
            Some(other) => panic!("{name} {labels:?} is not a counter: {other:?}"),
            None => 0,
        }
    }

    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.find(name, labels) {
            Some(DebugValue::Histogram(samples)) => samples.iter().map(|s| s.0).collect(),
            Some(other) => panic!("{name} {labels:?} is not a histogram: {other:?}"),
            None => Vec::new(),
        }
    }

    fn label_values(&self) -> Vec<String> {
        self.0
            .iter()
            .flat_map(|(key, _)| key.key().labels().map(|l| l.value().to_owned()))
            .collect()
    }
}

#[test]
fn reads_writes_and_deletes_are_counted_exactly_per_cache_and_operation() {
    let seen = recorded(|| async {
        let cache = Cache::new(ArrayDriver::new()).named("pages");
        cache.put("a", &1, TTL).await.unwrap();
        cache.put("b", &2, TTL).await.unwrap();
        assert_eq!(cache.get::<i32>("a").await.unwrap(), Some(1));
        assert_eq!(cache.get::<i32>("a").await.unwrap(), Some(1));
        assert_eq!(cache.get::<i32>("missing").await.unwrap(), None);
        let loaded: i32 = cache.remember("c", TTL, || async { 3 }).await.unwrap();
        assert_eq!(loaded, 3);
        assert_eq!(cache.increment("n", 2).await.unwrap(), 2);
        assert!(cache.add("d", &4, TTL).await.unwrap());
        assert!(!cache.add("d", &5, TTL).await.unwrap(), "not written");
        assert!(cache.forget("a").await.unwrap());
        assert!(!cache.forget("a").await.unwrap(), "nothing removed");
        cache.flush().await.unwrap();
    });
    let cache = ("cache", "pages");
    assert_eq!(seen.counter(names::GETS, &[cache, ("result", "hit")]), 2);
    // The miss of `get`, and `remember`'s read before it loads.
    assert_eq!(seen.counter(names::GETS, &[cache, ("result", "miss")]), 2);
    assert_eq!(seen.counter(names::WRITES, &[cache, ("op", "put")]), 2);
    assert_eq!(seen.counter(names::WRITES, &[cache, ("op", "remember")]), 1);
    assert_eq!(
        seen.counter(names::WRITES, &[cache, ("op", "increment")]),
        1
    );
    assert_eq!(seen.counter(names::WRITES, &[cache, ("op", "add")]), 1);
    assert_eq!(
        seen.counter(names::DELETES, &[cache]),
        2,
        "one forget, one flush"
    );
    assert_eq!(
        seen.counter(names::ERRORS, &[cache, ("op", "put"), ("kind", "io")]),
        0
    );
}

#[test]
fn a_failing_backend_is_counted_by_operation_and_kind_but_refused_input_is_not() {
    let seen = recorded(|| async {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let cache = Cache::new(FileDriver::new(&root).unwrap());
        cache.put("word", &"text", TTL).await.unwrap();
        let err = cache.increment("word", 1).await.unwrap_err();
        assert_eq!(err.kind().code(), "not_an_integer");
        // A key over the limit is refused before the backend is asked: no error metric.
        assert!(cache.get::<i32>(&"k".repeat(70_000)).await.is_err());
        // The folder becomes a file: every write fails with an I/O error.
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::write(&root, b"not a folder").unwrap();
        for _ in 0..3 {
            assert_eq!(
                cache.put("k", &1, TTL).await.unwrap_err().kind().code(),
                "io"
            );
        }
    });
    let cache = ("cache", "file");
    assert_eq!(
        seen.counter(names::ERRORS, &[cache, ("op", "put"), ("kind", "io")]),
        3
    );
    assert_eq!(
        seen.counter(
            names::ERRORS,
            &[cache, ("op", "increment"), ("kind", "not_an_integer")]
        ),
        1
    );
    assert_eq!(
        seen.counter(
            names::ERRORS,
            &[cache, ("op", "get"), ("kind", "key_too_long")]
        ),
        0
    );
    assert_eq!(seen.counter(names::WRITES, &[cache, ("op", "put")]), 1);
}

#[test]
fn the_first_call_of_each_operation_and_one_in_thirty_two_are_timed_per_thread() {
    let seen = recorded(|| async {
        let cache = Cache::new(ArrayDriver::new());
        cache.put("k", &1, TTL).await.unwrap(); // tick 1
        for _ in 0..159 {
            cache.get::<i32>("k").await.unwrap(); // ticks 2..=160
        }
    });
    let labels = [("cache", "array"), ("op", "get")];
    let samples = seen.samples(names::DURATION, &labels);
    // The first get (tick 2), then ticks 32, 64, 96, 128 and 160.
    assert_eq!(samples.len(), 1 + 160 / names::TIME_ONE_IN as usize);
    assert!(samples.iter().all(|s| *s > 0.0 && *s < 1.0), "{samples:?}");
    // The first put is timed, though its tick (1) is not a multiple of 32.
    assert_eq!(
        seen.samples(names::DURATION, &[("cache", "array"), ("op", "put")])
            .len(),
        1
    );
    assert_eq!(
        seen.counter(names::GETS, &[("cache", "array"), ("result", "hit")]),
        159
    );
}

#[test]
fn labels_never_carry_keys_and_derived_caches_keep_the_name() {
    let seen = recorded(|| async {
        let cache = Cache::new(ArrayDriver::new()).named("sessions");
        let json = cache.clone().with_codec(jtc_cache::Codec::Json);
        json.put("user:ana@example.com", &1, TTL).await.unwrap();
        cache.get::<i32>("user:ana@example.com").await.unwrap();
        cache
            .tags(&["team:42"])
            .put("secret:x", &1, TTL)
            .await
            .unwrap();
        let _ = cache.increment("user:ana@example.com", 1).await;
    });
    assert_eq!(
        seen.counter(names::WRITES, &[("cache", "sessions"), ("op", "put")]),
        1
    );
    assert_eq!(
        seen.counter(
            names::WRITES,
            &[("cache", "sessions"), ("op", "tagged_put")]
        ),
        1
    );
    let values = seen.label_values();
    assert!(!values.is_empty());
    for value in values {
        assert!(
            !value.contains("ana") && !value.contains("team") && !value.contains("secret"),
            "{value}"
        );
    }
}

#[test]
fn a_cache_with_metrics_off_reports_nothing() {
    let seen = recorded(|| async {
        let cache = Cache::new(ArrayDriver::new()).with_metrics(false);
        cache.put("k", &1, TTL).await.unwrap();
        cache.get::<i32>("k").await.unwrap();
        assert_eq!(cache.stats().hits, 1, "stats are counted either way");
        let named = cache.named("still-off");
        named.get::<i32>("k").await.unwrap();
    });
    assert!(seen.0.is_empty(), "{:?}", seen.0);
}

#[test]
fn reads_reach_the_recorder_within_a_second_while_the_cache_lives() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let (done, wait) = std::sync::mpsc::channel::<()>();
    let (counted, seen) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        metrics::with_local_recorder(&recorder, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let cache = Cache::new(ArrayDriver::new())
                .named("live")
                .with_stats(false);
            rt.block_on(async {
                cache.put("k", &1, TTL).await.unwrap();
                for _ in 0..7 {
                    cache.get::<i32>("k").await.unwrap();
                }
            });
            assert_eq!(
                cache.stats(),
                jtc_cache::CacheStats::default(),
                "stats are off"
            );
            counted.send(()).unwrap();
            wait.recv().unwrap(); // the cache lives until the snapshot is taken
        });
    });
    seen.recv().unwrap();
    // No publish() call: the background publisher's, once a second. A snapshot reads the
    // counts since the previous one, so they add up while we wait.
    let started = std::time::Instant::now();
    let mut hits = 0;
    while hits < 7 && started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
        let recorded = Recorded(
            snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| (key, value))
                .collect(),
        );
        hits += recorded.counter(names::GETS, &[("cache", "live"), ("result", "hit")]);
    }
    let waited = started.elapsed();
    done.send(()).unwrap();
    worker.join().unwrap();
    assert_eq!(hits, 7, "after {waited:?}");
    assert!(
        waited < Duration::from_millis(2_500),
        "published after {waited:?}"
    );
}

#[test]
fn caches_under_one_name_add_up_and_quiet_stats_still_feed_the_metrics() {
    let seen = recorded(|| async {
        let first = Cache::new(ArrayDriver::new());
        let second = Cache::new(ArrayDriver::new());
        let quiet = first.clone().with_stats(false);
        for cache in [&first, &second, &quiet] {
            cache.get::<i32>("missing").await.unwrap();
        }
        assert_eq!(
            first.stats().misses,
            1,
            "the quiet sibling stays out of the stats"
        );
        assert_eq!(second.stats().misses, 1);
    });
    assert_eq!(
        seen.counter(names::GETS, &[("cache", "array"), ("result", "miss")]),
        3
    );
}

#[test]
fn a_near_cache_reports_its_reads_invalidations_and_entries_once_per_driver() {
    let server = jtc_test_support::RedisServer::start();
    let url = server.url();
    let seen = recorded(move || async move {
        let config = jtc_cache::RedisConfig::from_url(&url)
            .prefix("near:")
            .near_cache(100);
        let driver = jtc_cache::RedisDriver::from_config(&config).await.unwrap();
        let cache = Cache::from_driver(std::sync::Arc::new(driver)).named("profiles");
        // A second cache over the same driver: the near cache is counted once, not twice.
        let same = Cache::from_driver(std::sync::Arc::clone(cache.driver())).named("other");
        cache.put("k", &1, TTL).await.unwrap();
        for _ in 0..3 {
            assert_eq!(cache.get::<i32>("k").await.unwrap(), Some(1));
        }
        assert_eq!(same.get::<i32>("k").await.unwrap(), Some(1));
        cache.put("k", &2, TTL).await.unwrap(); // drops the held copy
        // The near cache's counts are the driver's: published while it lives (the reader of
        // `/metrics` calls this before rendering).
        jtc_cache::metrics::publish();
    });
    let near = |result| [("cache", "profiles"), ("result", result)];
    assert_eq!(seen.counter(names::NEAR_READS, &near("miss")), 1);
    assert_eq!(seen.counter(names::NEAR_READS, &near("hit")), 3);
    assert_eq!(
        seen.counter(names::NEAR_INVALIDATIONS, &[("cache", "profiles")]),
        1
    );
    assert_eq!(
        seen.counter(names::NEAR_EVICTIONS, &[("cache", "profiles")]),
        0
    );
    assert!(
        seen.find(names::NEAR_READS, &[("cache", "other"), ("result", "hit")])
            .is_none()
    );
    match seen.find(names::NEAR_ENTRIES, &[("cache", "profiles")]) {
        Some(DebugValue::Gauge(entries)) => assert_eq!(entries.0, 0.0),
        other => panic!("no entries gauge: {other:?}"),
    }
}
