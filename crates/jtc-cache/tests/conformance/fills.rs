//! Conformance cases: remember, single-flight, stampede protection and flexible.

/// This file's cases as tests of the subject made by `$make`; expanded by `conformance_tests!`
/// inside a module `fills`.
#[macro_export]
macro_rules! conformance_fills {
    ($make:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn remember_runs_the_loader_only_on_a_miss() {
            let s = &super::$make().await;
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

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_remember_runs_the_loader_once() {
            let s = &super::$make().await;
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

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn try_remember_failure_stores_nothing() {
            let s = &super::$make().await;
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

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn flexible_serves_stale_while_refreshing_once() {
            let s = &super::$make().await;
            // Real time (Redis) gets wider windows: a loaded machine can stall this task for
            // longer than half a second between two steps.
            let (fresh, stale) = match s.clock {
                Some(_) => (Duration::from_millis(500), Duration::from_millis(1500)),
                None => (Duration::from_secs(2), Duration::from_secs(6)),
            };
            let calls = Arc::new(AtomicUsize::new(0));
            let load = |value: i32, calls: &Arc<AtomicUsize>| slow_loader(value, calls);
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
            // The refresh is held until every stale read has returned: a read that waited for
            // it would never return (no timing involved, so a slow server cannot fail this).
            let gate = Arc::new(tokio::sync::Semaphore::new(0));
            let held = |value: i32| {
                let (gate, calls) = (Arc::clone(&gate), Arc::clone(&calls));
                move || -> std::pin::Pin<Box<dyn std::future::Future<Output = i32> + Send>> {
                    Box::pin(async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let _released = gate.acquire().await;
                        value
                    })
                }
            };
            let reads = tokio::time::timeout(
                Duration::from_secs(60),
                read_flexible_16_times(&s.cache, fresh, stale, || held(2)),
            )
            .await
            .expect("stale reads return without waiting for the refresh");
            for (v, _) in reads {
                assert_eq!(v, 1, "stale: the old value at once");
            }
            gate.add_permits(16);
            wait_for_value(&s.cache, "f", 2).await;
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

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn remember_across_instances_loads_once() {
            let s = &super::$make().await;
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

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn remember_waits_a_bounded_time_for_a_stuck_fill() {
            let s = &super::$make().await;
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
    };
}
