//! The behaviours every store of the limiter must share, written once.
//!
//! A store (process memory, or a cache over the array, file or Redis driver) is described by
//! a [`Store`]; [`throttle_suite!`] expands to one test per case for it, so a failure names
//! the store and the case. Cases run on a [`ManualClock`] where the store can follow one, and
//! in real time (with small windows and some slack) where the server keeps time (Redis).

use std::{any::Any, net::SocketAddr, time::Duration};

use axum::{Router, routing::get};
use futures::future::BoxFuture;
use jtc_cache::{Cache, Clock, ManualClock, SystemClock};
use jtc_throttle::ThrottleLayer;

mod limits;

/// The peer every in-process request comes from.
pub(crate) const PEER: &str = "203.0.113.9:50000";

/// Opens a new connection to a store's backend: one call per app instance.
pub(crate) type Connect = Box<dyn Fn() -> BoxFuture<'static, Cache> + Send + Sync>;

/// A store under test.
pub(crate) struct Store {
    /// `None`: the layer counts in process memory.
    connect: Option<Connect>,
    /// `Some`: time moves exactly when told. `None`: real time passes.
    clock: Option<ManualClock>,
    /// Whatever must live as long as the store (a temporary folder).
    _guard: Box<dyn Any + Send>,
    /// The cache the last layer was given, for its operation counts.
    last: std::sync::Mutex<Option<Cache>>,
}

impl Store {
    /// Counting in process memory, on a manual clock.
    pub(crate) fn memory(clock: ManualClock) -> Self {
        Self {
            connect: None,
            clock: Some(clock),
            _guard: Box::new(()),
            last: std::sync::Mutex::default(),
        }
    }

    /// Counting in the caches `connect` opens; `clock` when their driver follows one.
    pub(crate) fn cache(
        connect: Connect,
        clock: Option<ManualClock>,
        guard: Box<dyn Any + Send>,
    ) -> Self {
        Self {
            connect: Some(connect),
            clock,
            _guard: guard,
            last: std::sync::Mutex::default(),
        }
    }

    /// A layer of `limit` per `window` counting in this store: one app instance.
    pub(crate) async fn layer(&self, limit: u64, window: Duration) -> ThrottleLayer {
        self.on_store(ThrottleLayer::per(limit, window)).await
    }

    /// `layer` (its limits, name and settings) counting in this store, on its clock.
    pub(crate) async fn on_store(&self, mut layer: ThrottleLayer) -> ThrottleLayer {
        if let Some(clock) = &self.clock {
            layer = layer.clock(clock.clone());
        }
        match &self.connect {
            Some(connect) => {
                let cache = connect().await;
                *self.last.lock().unwrap() = Some(cache.clone());
                layer.with_cache(cache)
            }
            None => layer,
        }
    }

    /// Two app instances sharing this store: two layers on two connections to one backend
    /// (in memory, where nothing is shared between processes, two clones of one layer).
    pub(crate) async fn two_instances(
        &self,
        limit: u64,
        window: Duration,
    ) -> (ThrottleLayer, ThrottleLayer) {
        let first = self.layer(limit, window).await;
        let second = match self.connect {
            Some(_) => self.layer(limit, window).await,
            None => first.clone(),
        };
        (first, second)
    }

    /// Lets `by` pass: exactly on a manual clock, plus `slack` in real time.
    pub(crate) async fn advance(&self, by: Duration) {
        match &self.clock {
            Some(clock) => clock.advance(by),
            None => tokio::time::sleep(by + self.slack()).await,
        }
    }

    /// How far real-time checks stay from a boundary.
    pub(crate) fn slack(&self) -> Duration {
        match self.clock {
            Some(_) => Duration::ZERO,
            None => Duration::from_millis(150),
        }
    }

    /// The time the layer sees now, in Unix milliseconds.
    pub(crate) fn now_ms(&self) -> u64 {
        match &self.clock {
            Some(clock) => clock.now_ms(),
            None => SystemClock.now_ms(),
        }
    }

    /// Moves to `offset` into the next window of `window` (sliding windows are aligned on
    /// multiples of the window).
    pub(crate) async fn align(&self, window: Duration, offset: Duration) {
        let window = window.as_millis() as u64;
        let into = self.now_ms() % window;
        let wait = window - into + offset.as_millis() as u64;
        match &self.clock {
            Some(clock) => clock.advance(Duration::from_millis(wait)),
            None => tokio::time::sleep(Duration::from_millis(wait)).await,
        }
    }

    /// Waits for the next window of `window` when fewer than `margin` are left of this one,
    /// so that what follows (a burst) runs inside one window. A sliding window's epochs are
    /// multiples of the window on the store's clock: a burst across an epoch edge rightly
    /// admits a few more (the last window's count weighs a little less than all of it), and a
    /// test asserting an exact count must not straddle one.
    pub(crate) async fn clear_of_edge(&self, window: Duration, margin: Duration) {
        let (window_ms, margin_ms) = (window.as_millis() as u64, margin.as_millis() as u64);
        if window_ms - self.now_ms() % window_ms < margin_ms {
            self.align(window, Duration::from_millis(20)).await;
        }
    }

    /// The writes the cache of the last layer made (0 in memory).
    pub(crate) fn writes(&self) -> u64 {
        self.last
            .lock()
            .unwrap()
            .as_ref()
            .map_or(0, |c| c.stats().writes)
    }

    /// Whether the layer counts in a cache (not in process memory).
    pub(crate) fn is_cache(&self) -> bool {
        self.connect.is_some()
    }
}

/// A router with two routes behind `layer`.
pub(crate) fn app(layer: ThrottleLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/users/{id}", get(|| async { "user" }))
        .layer(layer)
}

/// Serves two instances and returns their addresses.
pub(crate) async fn serve_both(layers: (ThrottleLayer, ThrottleLayer)) -> [SocketAddr; 2] {
    [
        crate::common::serve(app(layers.0)).await,
        crate::common::serve(app(layers.1)).await,
    ]
}

/// Expands to one test per case for the store made by `$make` (an async fn).
#[macro_export]
macro_rules! throttle_suite {
    ($make:path) => {
        use std::time::Duration;

        use http::StatusCode;
        use jtc_throttle::Algorithm;

        use $crate::{
            common::{burst, header, request, send, serve},
            suite::{PEER, app, serve_both},
        };

        const LIMIT: u64 = 100;
        const REQUESTS: usize = 1_000;

        /// Two per two seconds: the window starts at the first request, `Retry-After` is the
        /// time left in it rounded up, and a new window starts when it ends.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn fixed_window_timeline() {
            let store = $make().await;
            let app = app(store.layer(2, Duration::from_secs(2)).await);

            let first = send(&app, request("/", PEER, &[])).await;
            assert_eq!(first.status(), StatusCode::OK);
            assert_eq!(header(&first, "x-ratelimit-limit"), Some("2"));
            assert_eq!(header(&first, "x-ratelimit-remaining"), Some("1"));
            assert_eq!(header(&first, "retry-after"), None);
            let second = send(&app, request("/", PEER, &[])).await;
            assert_eq!(header(&second, "x-ratelimit-remaining"), Some("0"));

            store.advance(Duration::from_millis(1_500)).await;
            let before = store.now_ms() / 1000;
            let third = send(&app, request("/", PEER, &[])).await;
            let after = store.now_ms() / 1000;
            assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(
                header(&third, "retry-after"),
                Some("1"),
                "0.5 s rounds up to 1"
            );
            assert_eq!(header(&third, "x-ratelimit-remaining"), Some("0"));
            let reset: u64 = header(&third, "x-ratelimit-reset")
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                (before + 1..=after + 1).contains(&reset),
                "{reset} vs {before}..={after}"
            );

            store.advance(Duration::from_millis(500)).await;
            let fourth = send(&app, request("/", PEER, &[])).await;
            assert_eq!(fourth.status(), StatusCode::OK, "the window is over at 2 s");
            assert_eq!(header(&fourth, "x-ratelimit-remaining"), Some("1"));
        }

        /// Three per second, the fourth 300 ms in: `Retry-After` is 1, never 0.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sub_second_waits_round_up_to_one_second() {
            let store = $make().await;
            let app = app(store.layer(3, Duration::from_secs(1)).await);
            for _ in 0..3 {
                let response = send(&app, request("/", PEER, &[])).await;
                assert_eq!(response.status(), StatusCode::OK);
            }
            store.advance(Duration::from_millis(300)).await;
            let limited = send(&app, request("/", PEER, &[])).await;
            assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
            assert_eq!(header(&limited, "retry-after"), Some("1"));
            store.advance(Duration::from_millis(700)).await;
            let again = send(&app, request("/", PEER, &[])).await;
            assert_eq!(again.status(), StatusCode::OK);
        }

        /// Clients and routes count apart; every path of one route template is one bucket.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn clients_and_routes_count_apart() {
            let store = $make().await;
            let app = app(store.layer(2, Duration::from_secs(60)).await);
            for id in 1..=2 {
                let response = send(&app, request(&format!("/users/{id}"), PEER, &[])).await;
                assert_eq!(response.status(), StatusCode::OK);
            }
            let third = send(&app, request("/users/3", PEER, &[])).await;
            assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
            let other_route = send(&app, request("/", PEER, &[])).await;
            assert_eq!(other_route.status(), StatusCode::OK);
            let other_client = send(&app, request("/users/4", "198.51.100.7:1", &[])).await;
            assert_eq!(other_client.status(), StatusCode::OK);
        }

        /// Ten per window, retried after the limit: rejections are not counted, so half a
        /// window later (the previous window weighing a little under half) six get in.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn sliding_window_readmits_a_persistent_client() {
            let store = $make().await;
            let window = Duration::from_secs(2);
            let layer = store
                .layer(10, window)
                .await
                .algorithm(Algorithm::SlidingWindow);
            let app = app(layer);
            store.align(window, Duration::from_millis(20)).await;
            for _ in 0..10 {
                let response = send(&app, request("/", PEER, &[])).await;
                assert_eq!(response.status(), StatusCode::OK);
            }
            for _ in 0..20 {
                let response = send(&app, request("/", PEER, &[])).await;
                assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
                let retry: u64 = header(&response, "retry-after").unwrap().parse().unwrap();
                assert!((1..=2).contains(&retry), "{retry}");
            }
            // 55 % into the next window: floor(10 × 0.45) = 4 carried, so 6 fit.
            store.align(window, Duration::from_millis(1_100)).await;
            let mut admitted = 0;
            for _ in 0..10 {
                if send(&app, request("/", PEER, &[])).await.status() == StatusCode::OK {
                    admitted += 1;
                }
            }
            assert_eq!(admitted, 6, "rejected retries must not count");
        }

        /// 1,000 requests at once over TCP against a limit of 100: exactly 100 pass, with
        /// either algorithm.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn exact_under_a_thousand_concurrent_requests() {
            let store = $make().await;
            for algorithm in [Algorithm::FixedWindow, Algorithm::SlidingWindow] {
                let window = Duration::from_secs(60);
                let layer = store.layer(LIMIT, window).await;
                let address = serve(app(layer.algorithm(algorithm))).await;
                store.clear_of_edge(window, Duration::from_secs(10)).await;
                let counts = burst(&[address], "/", REQUESTS).await;
                let expected = (LIMIT as usize, REQUESTS - LIMIT as usize, 0);
                assert_eq!(counts, expected, "{algorithm:?}");
            }
        }

        /// Two app instances on one store admit the limit together, not each.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn two_instances_share_one_limit() {
            let store = $make().await;
            let window = Duration::from_secs(60);
            let addresses = serve_both(store.two_instances(LIMIT, window).await).await;
            store.clear_of_edge(window, Duration::from_secs(10)).await;
            let counts = burst(&addresses, "/", REQUESTS).await;
            assert_eq!(counts, (LIMIT as usize, REQUESTS - LIMIT as usize, 0));
        }
    };
}
