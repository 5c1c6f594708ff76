//! `Cache::rate`: the rate limiter's operation, on every driver.

/// The `Cache::rate` cases: every algorithm's timeline, several rules at once, exactness.
#[macro_export]
macro_rules! conformance_rates {
    ($make:ident) => {
        fn rule(limit: u64, window: Duration, kind: RateKind) -> RateRule {
            RateRule {
                limit,
                window,
                kind,
            }
        }

        fn kinds() -> [RateKind; 3] {
            [
                RateKind::FixedWindow,
                RateKind::SlidingWindow,
                RateKind::TokenBucket { burst: 10 },
            ]
        }

        /// The `limits` library's case: 10 per 2 s → ten pass, the 11th fails with nothing
        /// remaining and a reset within the window; a look never counts.
        #[tokio::test]
        async fn ten_per_two_seconds_on_every_algorithm() {
            let s = &super::$make().await;
            let window = Duration::from_secs(2);
            for kind in kinds() {
                let key = format!("ten:{kind:?}");
                let rules = [rule(10, window, kind)];
                for _ in 0..3 {
                    let look = s.cache.rate(&key, &rules, false).await.unwrap()[0];
                    assert!(look.allowed && look.remaining == 10, "{kind:?}: {look:?}");
                }
                for n in 1..=10u64 {
                    let v = s.cache.rate(&key, &rules, true).await.unwrap()[0];
                    assert!(v.allowed, "{kind:?}: request {n}");
                    assert_eq!(v.limit, 10);
                    assert_eq!(v.remaining, 10 - n, "{kind:?}");
                }
                let eleventh = s.cache.rate(&key, &rules, true).await.unwrap()[0];
                assert!(!eleventh.allowed, "{kind:?}");
                assert_eq!(eleventh.remaining, 0);
                // A sliding window whose current window began this very millisecond admits again
                // a millisecond after it ends (the previous window then still weighs all but a
                // millisecond of its share).
                assert!(
                    eleventh.reset_after <= window + Duration::from_millis(1),
                    "{kind:?}: {eleventh:?}"
                );
                assert!(eleventh.reset_after > Duration::ZERO, "{kind:?}");
                let look = s.cache.rate(&key, &rules, false).await.unwrap()[0];
                assert!(!look.allowed && look.remaining == 0, "{kind:?}: {look:?}");
            }
        }

        #[tokio::test]
        async fn a_window_later_every_algorithm_admits_again() {
            let s = &super::$make().await;
            let window = Duration::from_millis(1_000);
            for kind in kinds() {
                let key = format!("again:{kind:?}");
                let rules = [rule(10, window, kind)];
                while s.cache.rate(&key, &rules, true).await.unwrap()[0].allowed {}
                let rejected = s.cache.rate(&key, &rules, true).await.unwrap()[0];
                s.advance(rejected.reset_after + s.slack()).await;
                assert!(
                    s.cache.rate(&key, &rules, true).await.unwrap()[0].allowed,
                    "{kind:?} after {:?}",
                    rejected.reset_after
                );
            }
        }

        #[tokio::test]
        async fn the_bucket_refills_one_token_per_interval() {
            let s = &super::$make().await;
            // 4 per second with a burst of 2: a token every 250 ms.
            let rules = [rule(
                4,
                Duration::from_secs(1),
                RateKind::TokenBucket { burst: 2 },
            )];
            assert!(s.cache.rate("b", &rules, true).await.unwrap()[0].allowed);
            assert!(s.cache.rate("b", &rules, true).await.unwrap()[0].allowed);
            let rejected = s.cache.rate("b", &rules, true).await.unwrap()[0];
            assert!(!rejected.allowed);
            assert!(
                rejected.reset_after <= Duration::from_millis(250),
                "{rejected:?}"
            );
            assert!(
                rejected.reset_after >= Duration::from_millis(200),
                "{rejected:?}"
            );
        }

        #[tokio::test]
        async fn several_rules_must_all_admit() {
            let s = &super::$make().await;
            let rules = [
                rule(2, Duration::from_secs(60), RateKind::FixedWindow),
                rule(
                    5,
                    Duration::from_secs(60),
                    RateKind::TokenBucket { burst: 5 },
                ),
            ];
            let admitted = {
                let mut n = 0;
                for _ in 0..4 {
                    let v = s.cache.rate("multi", &rules, true).await.unwrap();
                    if v.iter().all(|v| v.allowed) {
                        n += 1;
                    }
                }
                n
            };
            assert_eq!(admitted, 2);
            let look = s.cache.rate("multi", &rules, false).await.unwrap();
            assert_eq!(
                look[1].remaining, 3,
                "the bucket gave no token to a rejection"
            );
            assert!(s.cache.forget("multi").await.unwrap(), "one record per key");
            assert!(s.cache.rate("multi", &rules, true).await.unwrap()[0].allowed);
        }

        #[tokio::test]
        async fn a_key_holding_something_else_starts_afresh() {
            let s = &super::$make().await;
            s.cache.put("plain", &"not a record", MINUTE).await.unwrap();
            let rules = [rule(1, MINUTE, RateKind::SlidingWindow)];
            assert!(s.cache.rate("plain", &rules, true).await.unwrap()[0].allowed);
            assert!(!s.cache.rate("plain", &rules, true).await.unwrap()[0].allowed);
        }

        /// A key counted by a lone fixed window (a plain counter on Redis) and then by other
        /// rules, and back: no call fails (a driver may keep the state of a rule both sets
        /// share, or start afresh).
        #[tokio::test]
        async fn changing_the_rules_of_a_key_starts_afresh() {
            let s = &super::$make().await;
            let fixed = [rule(1, MINUTE, RateKind::FixedWindow)];
            let both = [
                rule(1, MINUTE, RateKind::FixedWindow),
                rule(5, MINUTE, RateKind::TokenBucket { burst: 5 }),
            ];
            for rules in [&fixed[..], &both[..], &fixed[..], &both[..]] {
                let verdicts = s.cache.rate("switch", rules, true).await.unwrap();
                assert_eq!(verdicts.len(), rules.len());
                assert_eq!(verdicts[0].limit, 1);
            }
        }

        /// `rate_by(n)` gives what n calls of `rate` give (checked on a twin key), for every
        /// algorithm and for several rules, or — on a driver that counts one request at a
        /// time — `Unsupported` for n > 1 and one request's verdicts for n = 1.
        #[tokio::test]
        async fn a_batch_counts_as_its_requests_one_after_the_other() {
            let s = &super::$make().await;
            let window = Duration::from_secs(3_600);
            let sets: Vec<Vec<RateRule>> = kinds()
                .into_iter()
                .map(|kind| vec![rule(5, window, kind)])
                .chain([vec![
                    rule(3, window, RateKind::FixedWindow),
                    rule(4, window, RateKind::SlidingWindow),
                ]])
                .collect();
            for (i, rules) in sets.iter().enumerate() {
                let (batched, single) = (format!("batch:{i}"), format!("single:{i}"));
                // Verdicts without their reset times (those depend on when each call ran).
                let strip = |v: &[Vec<RateVerdict>]| -> Vec<Vec<(bool, u64, u64)>> {
                    v.iter()
                        .map(|r| {
                            r.iter()
                                .map(|v| (v.allowed, v.limit, v.remaining))
                                .collect()
                        })
                        .collect()
                };
                let one = s.cache.rate_by(&batched, rules, 1).await.unwrap();
                let expected = s.cache.rate(&single, rules, true).await.unwrap();
                assert_eq!(strip(&one), strip(&[expected]), "{rules:?}");
                match s.cache.rate_by(&batched, rules, 6).await {
                    Ok(batch) => {
                        let mut expected = Vec::new();
                        for _ in 0..6 {
                            expected.push(s.cache.rate(&single, rules, true).await.unwrap());
                        }
                        assert_eq!(strip(&batch), strip(&expected), "{rules:?}");
                        let look = s.cache.rate(&batched, rules, false).await.unwrap();
                        let twin = s.cache.rate(&single, rules, false).await.unwrap();
                        assert_eq!(
                            strip(&[look]),
                            strip(&[twin]),
                            "{rules:?}: what stays counted"
                        );
                    }
                    Err(error) => assert!(
                        matches!(error.kind(), ErrorKind::Unsupported { .. }),
                        "{error:?}"
                    ),
                }
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn every_algorithm_is_exact_under_concurrency() {
            let s = &super::$make().await;
            for kind in kinds() {
                let kind = match kind {
                    RateKind::TokenBucket { .. } => RateKind::TokenBucket { burst: 100 },
                    other => other,
                };
                let rules = [rule(100, Duration::from_secs(3_600), kind)];
                let key = format!("exact:{kind:?}");
                let handles: Vec<_> = (0..1_000)
                    .map(|_| {
                        let cache = s.cache.clone();
                        let key = key.clone();
                        tokio::spawn(async move {
                            cache.rate(&key, &rules, true).await.unwrap()[0].allowed
                        })
                    })
                    .collect();
                let mut admitted = 0;
                for handle in handles {
                    admitted += usize::from(handle.await.unwrap());
                }
                assert_eq!(admitted, 100, "{kind:?}");
            }
        }
    };
}
