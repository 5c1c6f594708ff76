//! Conformance cases: stats and events.

/// This file's cases as tests of the subject made by `$make`; expanded by `conformance_tests!`
/// inside a module `observe`.
#[macro_export]
macro_rules! conformance_observe {
    ($make:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn stats_count_every_operation() {
            let s = &super::$make().await;
            let cache = Cache::from_driver(Arc::clone(s.cache.driver()));
            // A near cache's counts are the driver's, shared by every cache over it.
            let fresh = CacheStats {
                near_cache: None,
                ..cache.stats()
            };
            assert_eq!(fresh, CacheStats::default());
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

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn listeners_see_every_kind_of_event() {
            let s = &super::$make().await;
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

        /// Every public operation of `Cache`, `TaggedCache` and `Lock` opens a span
        /// named after it; every cache and tag operation also counts in `stats`.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn every_public_operation_has_a_span_and_counts() {
            let s = &super::$make().await;
            let c = &s.cache;
            let check = Check::new(c);
            check.op("put", c.put("k", &1, MINUTE)).await;
            check.op("get", c.get::<i32>("k")).await;
            check.op("put", c.put_bytes("b", b"raw", MINUTE)).await;
            check.op("get", c.get_bytes("b")).await;
            check.op("has", c.has("k")).await;
            check.op("many", c.many::<i32>(&["k", "none"])).await;
            check.op("pull", c.pull::<i32>("k")).await;
            check.op("forever", c.forever("f", &2)).await;
            check.op("add", c.add("a", &3, MINUTE)).await;
            check
                .op("put_many", c.put_many(&[("m1", 1), ("m2", 2)], MINUTE))
                .await;
            check.op("touch", c.touch("m1", MINUTE)).await;
            check.op("forget", c.forget("m2")).await;
            check.op("increment", c.increment("n", 2)).await;
            check.op("decrement", c.decrement("n", 1)).await;
            check.op("hit", c.hit("h", MINUTE)).await;
            check.op("hit", c.hit_by("h", MINUTE, 3)).await;
            let rule = jtc_cache::RateRule {
                limit: 5,
                window: MINUTE,
                kind: jtc_cache::RateKind::FixedWindow,
            };
            check.op("rate", c.rate("rl", &[rule], true)).await;
            check
                .op("remember", c.remember("r", MINUTE, || async { 1 }))
                .await;
            check
                .op("remember", c.remember_forever("rf", || async { 1 }))
                .await;
            let ok = || async { Ok::<_, std::io::Error>(1) };
            check.op("remember", c.try_remember("tr", MINUTE, ok)).await;
            let load = || async { 1 };
            check
                .op("flexible", c.flexible("fx", MINUTE, MINUTE, load))
                .await;

            let t = c.tags(&["t"]);
            check.op("tagged_put", t.put("k", &1, MINUTE)).await;
            check.op("tagged_get", t.get::<i32>("k")).await;
            check
                .op("tagged_put", t.put_bytes("b", b"raw", MINUTE))
                .await;
            check.op("tagged_get", t.get_bytes("b")).await;
            check.op("tagged_has", t.has("k")).await;
            check.op("tagged_forever", t.forever("f", &1)).await;
            check.op("tagged_add", t.add("a", &1, MINUTE)).await;
            check
                .op("tagged_remember", t.remember("r", MINUTE, || async { 1 }))
                .await;
            check.op("tagged_increment", t.increment("n", 1)).await;
            check.op("tagged_forget", t.forget("n")).await;
            check.op("tagged_flush", t.flush()).await;

            let lock = c.lock("l", MINUTE);
            let guard = check.span_only("lock_acquire", lock.try_acquire()).await;
            check.span_only("lock_owner", lock.owner()).await;
            check
                .span_only("lock_release", guard.unwrap().release())
                .await;
            let wait = Duration::from_secs(1);
            let guard = check
                .span_only("lock_acquire", lock.acquire_timeout(wait))
                .await;
            check
                .span_only("lock_force_release", lock.force_release())
                .await;
            let _ = guard.keep();

            check.op("flush", c.flush()).await;
            let before = c.stats().deletes;
            let pruned = check.span_only("prune", c.prune()).await;
            assert_eq!(
                c.stats().deletes - before,
                pruned,
                "a prune counts what it removed"
            );
        }
    };
}
