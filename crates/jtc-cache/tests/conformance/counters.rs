//! Conformance cases: counters: increment, add, and the rate limiter's hit.

/// This file's cases as tests of the subject made by `$make`; expanded by `conformance_tests!`
/// inside a module `counters`.
#[macro_export]
macro_rules! conformance_counters {
    ($make:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn increment_starts_missing_keys_at_zero() {
            let s = &super::$make().await;
            assert_eq!(s.cache.increment("n", 1).await.unwrap(), 1);
            assert_eq!(s.cache.increment("n", 10).await.unwrap(), 11);
            assert_eq!(s.cache.decrement("n", 12).await.unwrap(), -1);
            assert_eq!(s.cache.decrement("m", 3).await.unwrap(), -3);
            assert_eq!(s.cache.get::<i64>("n").await.unwrap(), Some(-1));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn increment_keeps_the_ttl_of_an_existing_key() {
            let s = &super::$make().await;
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

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn increment_restarts_an_expired_counter_without_ttl() {
            let s = &super::$make().await;
            let ttl = Duration::from_millis(500);
            s.cache.put("n", &5, ttl).await.unwrap();
            s.advance(ttl + s.slack()).await;
            assert_eq!(s.cache.increment("n", 1).await.unwrap(), 1);
            s.advance(s.long_time()).await;
            assert_eq!(s.cache.get::<i64>("n").await.unwrap(), Some(1));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn put_integers_are_counters() {
            let s = &super::$make().await;
            s.cache.put("n", &5, MINUTE).await.unwrap();
            assert_eq!(s.cache.increment("n", 1).await.unwrap(), 6);
            assert_eq!(s.cache.get::<i64>("n").await.unwrap(), Some(6));
            assert_eq!(s.cache.get::<u8>("n").await.unwrap(), Some(6));
            s.cache.put("neg", &-9i32, MINUTE).await.unwrap();
            assert_eq!(s.cache.increment("neg", 10).await.unwrap(), 1);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn increment_of_a_non_integer_is_an_error_and_keeps_the_value() {
            let s = &super::$make().await;
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

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn increment_overflow_is_an_error_and_keeps_the_value() {
            let s = &super::$make().await;
            s.cache.put("n", &i64::MAX, MINUTE).await.unwrap();
            let err = s.cache.increment("n", 1).await.unwrap_err();
            assert!(matches!(err.kind(), ErrorKind::Overflow { .. }), "{err:?}");
            assert_eq!(s.cache.get::<i64>("n").await.unwrap(), Some(i64::MAX));
            assert!(s.cache.decrement("m", i64::MIN).await.is_err());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn increments_are_atomic_under_concurrency() {
            let s = &super::$make().await;
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

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn add_stores_only_when_absent() {
            let s = &super::$make().await;
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

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn add_is_atomic_under_concurrency() {
            let s = &super::$make().await;
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

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn hit_gives_a_new_counter_its_window() {
            let s = &super::$make().await;
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

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn hit_gives_a_counter_without_ttl_a_window() {
            let s = &super::$make().await;
            s.cache.increment("h", 3).await.unwrap();
            let hit = s.cache.hit("h", Duration::from_millis(500)).await.unwrap();
            assert_eq!(hit.count, 4);
            assert!(hit.expires_in <= Duration::from_millis(500));
            s.advance(Duration::from_millis(500) + s.slack()).await;
            assert!(!s.cache.has("h").await.unwrap(), "the counter expired");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn hits_are_atomic_under_concurrency() {
            let s = &super::$make().await;
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

        /// Batches of hits are atomic: 100 concurrent batches of 5 got disjoint, gapless
        /// ranges of counts.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn batched_hits_are_atomic_under_concurrency() {
            let s = &super::$make().await;
            let handles: Vec<_> = (0..100)
                .map(|_| {
                    let cache = s.cache.clone();
                    tokio::spawn(
                        async move { cache.hit_by("batches", MINUTE, 5).await.unwrap().count },
                    )
                })
                .collect();
            let mut ends = Vec::new();
            for handle in handles {
                ends.push(handle.await.unwrap());
            }
            ends.sort_unstable();
            assert_eq!(ends, (1..=100).map(|n| n * 5).collect::<Vec<_>>());
            let hit = s.cache.hit_by("batches", MINUTE, 0).await.unwrap();
            assert_eq!(hit.count, 501, "a batch counts at least one");
            assert!(hit.expires_in <= MINUTE);
        }
    };
}
