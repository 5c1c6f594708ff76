//! The cases of limits decided per request and of the imperative limiter, on every store:
//! Laravel's `Limit::perMinute(..)->by(..)` and `Limit::none()`, several limits at once,
//! `RateLimiter` agreeing with the layer, the `limits` library's timeline for each algorithm,
//! and the local deny cache.

/// Expands next to [`throttle_suite!`] (and uses its imports) to one test per case for the
/// store made by `$make`.
#[macro_export]
macro_rules! limits_suite {
    ($make:path) => {
        use jtc_throttle::{Limit, Limits, RequestInfo, ThrottleLayer};

        fn algorithms() -> [Algorithm; 3] {
            [
                Algorithm::FixedWindow,
                Algorithm::SlidingWindow,
                Algorithm::TokenBucket,
            ]
        }

        /// Limits by user, decided per request: `x-user` names the user, `x-admin` is
        /// unlimited, and anonymous clients get two limits.
        fn per_user(req: &RequestInfo<'_>) -> Limits {
            if req.headers.contains_key("x-admin") {
                return Limit::none().into();
            }
            match req.headers.get("x-user").and_then(|v| v.to_str().ok()) {
                Some(user) => Limit::per_minute(2).by(format!("user:{user}")).into(),
                None => vec![Limit::per_second(2), Limit::per_minute(3)].into(),
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn per_user_limits_separate_users_on_one_address() {
            let store = $make().await;
            let app = app(store.on_store(ThrottleLayer::dynamic(per_user)).await);
            for user in ["ana", "bea"] {
                for _ in 0..2 {
                    let response = send(&app, request("/", PEER, &[("x-user", user)])).await;
                    assert_eq!(response.status(), StatusCode::OK, "{user}");
                }
                let third = send(&app, request("/", PEER, &[("x-user", user)])).await;
                assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS, "{user}");
            }
            let ana_elsewhere =
                send(&app, request("/", "198.51.100.7:1", &[("x-user", "ana")])).await;
            assert_eq!(
                ana_elsewhere.status(),
                StatusCode::TOO_MANY_REQUESTS,
                "the user, not the address"
            );
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn none_admits_everything_without_headers() {
            let store = $make().await;
            let app = app(store.on_store(ThrottleLayer::dynamic(per_user)).await);
            for _ in 0..50 {
                let response = send(&app, request("/", PEER, &[("x-admin", "1")])).await;
                assert_eq!(response.status(), StatusCode::OK);
                assert_eq!(header(&response, "x-ratelimit-limit"), None);
            }
        }

        /// Two per second and three per minute: the first trips the per-second limit, a
        /// second later the per-minute one (fixed windows count the rejected request too).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_per_second_limit_trips_first_then_the_per_minute_one() {
            let store = $make().await;
            let app = app(store
                .on_store(ThrottleLayer::dynamic(per_user).ietf_headers(true))
                .await);
            let first = send(&app, request("/", PEER, &[])).await;
            assert_eq!(
                header(&first, "x-ratelimit-limit"),
                Some("2"),
                "the tightest"
            );
            assert_eq!(
                header(&first, "ratelimit-policy"),
                Some("\"2-per-1s\";q=2;w=1, \"3-per-60s\";q=3;w=60")
            );
            assert_eq!(
                send(&app, request("/", PEER, &[])).await.status(),
                StatusCode::OK
            );
            let third = send(&app, request("/", PEER, &[])).await;
            assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(header(&third, "retry-after"), Some("1"));
            assert_eq!(
                header(&third, "ratelimit").map(|v| v.starts_with("\"2-per-1s\"")),
                Some(true)
            );
            store.advance(Duration::from_secs(1)).await;
            let fourth = send(&app, request("/", PEER, &[])).await;
            assert_eq!(fourth.status(), StatusCode::TOO_MANY_REQUESTS);
            let retry: u64 = header(&fourth, "retry-after").unwrap().parse().unwrap();
            assert!((55..=60).contains(&retry), "the per-minute limit: {retry}");
            assert_eq!(header(&fourth, "x-ratelimit-limit"), Some("3"));
        }

        /// `RateLimiter` reads, counts and clears what the layer counts.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_rate_limiter_agrees_with_the_layer() {
            let store = $make().await;
            let limit = Limit::per_minute(3).by("team:1");
            let layer = store
                .on_store(ThrottleLayer::with_limits(limit.clone()).name("api"))
                .await;
            let limiter = layer.limiter();
            let app = app(layer);
            send(&app, request("/", PEER, &[])).await;
            send(&app, request("/", "198.51.100.7:1", &[])).await;
            for _ in 0..3 {
                assert_eq!(
                    limiter.check("team:1", &limit).await.unwrap().remaining(),
                    1
                );
            }
            assert!(limiter.hit("team:1", &limit).await.unwrap().allowed());
            assert_eq!(
                send(&app, request("/", PEER, &[])).await.status(),
                StatusCode::TOO_MANY_REQUESTS
            );
            assert!(!limiter.check("team:1", &limit).await.unwrap().allowed());
            limiter.clear("team:1").await.unwrap();
            assert_eq!(
                send(&app, request("/", PEER, &[])).await.status(),
                StatusCode::OK
            );
            assert_eq!(
                limiter.check("team:1", &limit).await.unwrap().remaining(),
                2
            );
        }

        /// The `limits` library's case, per algorithm: 10 per 2 s — ten pass, the 11th fails
        /// with nothing remaining and a reset within the window; `check` never counts.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn ten_per_two_seconds_on_every_algorithm() {
            let store = $make().await;
            let window = Duration::from_secs(2);
            let limiter = store.on_store(ThrottleLayer::new(1, 1)).await.limiter();
            for algorithm in algorithms() {
                let key = format!("ten:{algorithm:?}");
                let limit = Limit::new(10, window).algorithm(algorithm);
                let start = std::time::UNIX_EPOCH + Duration::from_millis(store.now_ms());
                for n in 1..=10 {
                    assert_eq!(
                        limiter.check(&key, &limit).await.unwrap().remaining(),
                        11 - n
                    );
                    let decision = limiter.hit(&key, &limit).await.unwrap();
                    assert!(decision.allowed(), "{algorithm:?} request {n}");
                    assert_eq!(decision.remaining(), 10 - n);
                }
                let eleventh = limiter.hit(&key, &limit).await.unwrap();
                assert!(!eleventh.allowed(), "{algorithm:?}");
                assert_eq!((eleventh.limit(), eleventh.remaining()), (10, 0));
                let reset = eleventh.reset_at().duration_since(start).unwrap();
                let slack = store.slack() + Duration::from_millis(100);
                assert!(reset <= window + slack, "{algorithm:?}: {reset:?}");
                if algorithm == Algorithm::FixedWindow {
                    assert!(reset + slack >= window, "reset at start + 2 s: {reset:?}");
                }
                assert!(!limiter.check(&key, &limit).await.unwrap().allowed());
            }
        }

        /// Over a cache, a rejected flood is answered in process: no store operation until the
        /// rejection ends, then the store is asked again.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_rejected_flood_stays_in_process_until_it_may_pass() {
            let store = $make().await;
            let window = Duration::from_secs(2);
            let layer = store.layer(1, window).await;
            let app = app(layer.clone());
            assert_eq!(
                send(&app, request("/", PEER, &[])).await.status(),
                StatusCode::OK
            );
            let first_429 = send(&app, request("/", PEER, &[])).await;
            assert_eq!(first_429.status(), StatusCode::TOO_MANY_REQUESTS);
            let writes = store.writes();
            for _ in 0..500 {
                let response = send(&app, request("/", PEER, &[])).await;
                assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
                assert!(header(&response, "retry-after").is_some());
            }
            assert_eq!(
                store.writes(),
                writes,
                "no store operation during the flood"
            );
            store.advance(window).await;
            assert_eq!(
                send(&app, request("/", PEER, &[])).await.status(),
                StatusCode::OK
            );
            if store.is_cache() {
                assert_eq!(store.writes(), writes + 1, "asked again after the reset");
            }
        }

        /// 1,000 requests at once over TCP against a limit of 100: exactly 100 pass, with
        /// each algorithm, and with several limits on one key.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn every_algorithm_is_exact_under_a_thousand_concurrent_requests() {
            let store = $make().await;
            let hour = Duration::from_secs(3_600);
            let mut cases: Vec<Limits> = algorithms()
                .into_iter()
                .map(|a| Limit::new(LIMIT, hour).algorithm(a).into())
                .collect();
            cases.push(vec![Limit::new(LIMIT, hour), Limit::new(500, hour).burst(500)].into());
            for (i, limits) in cases.into_iter().enumerate() {
                let layer = ThrottleLayer::with_limits(limits).name(format!("exact{i}"));
                let address = serve(app(store.on_store(layer).await)).await;
                let counts = burst(&[address], "/", REQUESTS).await;
                assert_eq!(
                    counts,
                    (LIMIT as usize, REQUESTS - LIMIT as usize, 0),
                    "case {i}"
                );
            }
        }
    };
}
