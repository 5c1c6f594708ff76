//! Conformance cases: locks.

/// This file's cases as tests of the subject made by `$make`; expanded by `conformance_tests!`
/// inside a module `locks`.
#[macro_export]
macro_rules! conformance_locks {
    ($make:ident) => {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lock_has_one_holder_at_a_time() {
                let s = &super::$make().await;
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

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lock_excludes_32_concurrent_contenders() {
                let s = &super::$make().await;
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

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn expired_holder_cannot_release_the_next_holders_lock() {
                let s = &super::$make().await;
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

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn acquire_timeout_gives_up_with_an_error() {
                let s = &super::$make().await;
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

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn locks_expire_and_can_be_forced_open_or_restored() {
                let s = &super::$make().await;
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

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lock_names_never_collide_with_cache_keys() {
                let s = &super::$make().await;
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
    };
}
