//! `ThrottleLayer`: the configuration, its setters, and `impl Layer`. The setters that say
//! who the client is live in `client.rs`, those that shape a rejection in `answer.rs`.

mod answer;
mod client;

use std::{fmt, sync::Arc, time::Duration};

use jtc_cache::{Cache, Clock, MonotonicClock};
use tower::Layer;

use crate::{
    Algorithm, StoreErrorPolicy, Throttle,
    key::Identity,
    lang::{self, Catalogues},
    limiter::Quota,
    shared::{Config, Shared},
};

/// Keys the in-process counters keep at most, unless told otherwise.
const DEFAULT_MEMORY_CAPACITY: u64 = 100_000;

/// Limits requests per client and route: `max_requests` per window.
///
/// Cheap to clone (an `Arc` inside); every clone and every service it makes share one set of
/// counters. Without [`with_cache`](Self::with_cache) the counters live in process memory;
/// with it they live in the cache, so every app instance sharing that Redis shares the limit.
///
/// ```
/// use jtc_throttle::{Algorithm, ThrottleLayer};
///
/// let login = ThrottleLayer::new(5, 60).name("login");
/// let api = ThrottleLayer::new(600, 60)
///     .algorithm(Algorithm::SlidingWindow)
///     .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
///     .ietf_headers(true);
/// ```
///
/// **Placement.** Apply the layer with `Router::layer` (every route) or `route_layer` / a
/// route's `.layer` (one route): there it sees the matched route template. Wrapped around the
/// whole `Router` from outside (`ServiceBuilder::new().layer(throttle).service(router)`), it
/// runs before axum matches a route, so all routes share one bucket per client; the layer
/// notices that and logs a warning once.
#[derive(Clone)]
#[must_use]
pub struct ThrottleLayer {
    pub(crate) shared: Arc<Shared>,
}

impl ThrottleLayer {
    /// At most `max_requests` per `window_secs` seconds (at least 1) per client and route,
    /// counted in process memory.
    ///
    /// ```
    /// # use axum::{Router, body::Body, extract::ConnectInfo, routing::get}; use tower::ServiceExt;
    /// # async fn send(app: &Router, peer: &str, headers: &[(&str, &str)]) -> http::Response<Body> {
    /// #     let mut r = http::Request::get("/"); for (k, v) in headers { r = r.header(*k, *v); }
    /// #     let mut r = r.body(Body::empty()).unwrap();
    /// #     r.extensions_mut().insert(ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
    /// #     app.clone().oneshot(r).await.unwrap() }
    /// # fn app(l: jtc_throttle::ThrottleLayer) -> Router { Router::new().route("/", get(|| async { "hi" })).layer(l) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_throttle::ThrottleLayer;
    /// let app = app(ThrottleLayer::new(1, 60));
    /// assert_eq!(send(&app, "203.0.113.9:1", &[]).await.status(), 200);
    /// let second = send(&app, "203.0.113.9:1", &[]).await;
    /// assert_eq!(second.status(), 429);
    /// assert_eq!(second.headers()["retry-after"], "60");
    /// # })
    /// ```
    pub fn new(max_requests: u64, window_secs: u64) -> Self {
        Self::per(max_requests, Duration::from_secs(window_secs.max(1)))
    }

    /// At most `max_requests` per `window` (at least 1 ms).
    ///
    /// ```
    /// # use axum::{Router, body::Body, extract::ConnectInfo, routing::get}; use tower::ServiceExt;
    /// # async fn send(app: &Router, peer: &str, headers: &[(&str, &str)]) -> http::Response<Body> {
    /// #     let mut r = http::Request::get("/"); for (k, v) in headers { r = r.header(*k, *v); }
    /// #     let mut r = r.body(Body::empty()).unwrap();
    /// #     r.extensions_mut().insert(ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
    /// #     app.clone().oneshot(r).await.unwrap() }
    /// # fn app(l: jtc_throttle::ThrottleLayer) -> Router { Router::new().route("/", get(|| async { "hi" })).layer(l) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_throttle::ThrottleLayer;
    /// use std::time::Duration;
    ///
    /// let app = app(ThrottleLayer::per(10, Duration::from_millis(500)));
    /// let response = send(&app, "203.0.113.9:1", &[]).await;
    /// assert_eq!(response.headers()["x-ratelimit-limit"], "10");
    /// assert_eq!(response.headers()["x-ratelimit-remaining"], "9");
    /// # })
    /// ```
    pub fn per(max_requests: u64, window: Duration) -> Self {
        let config = Config {
            quota: Quota {
                limit: max_requests,
                window: window.max(Duration::from_millis(1)),
                algorithm: Algorithm::default(),
            },
            name: None,
            cache: None,
            identity: Identity::default(),
            key_fn: None,
            on_limited: None,
            on_store_error: StoreErrorPolicy::default(),
            ietf_headers: false,
            fallback_locale: lang::DEFAULT_LOCALE.to_owned(),
            catalogues: Catalogues::default(),
            memory_capacity: DEFAULT_MEMORY_CAPACITY,
            clock: Arc::new(MonotonicClock::new()),
        };
        Self {
            shared: Arc::new(Shared::new(config)),
        }
    }

    pub(crate) fn with(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.shared.config.clone();
        change(&mut config);
        Self {
            shared: Arc::new(Shared::new(config)),
        }
    }

    /// Counts in `cache` (file, Redis, Redis Cluster) instead of process memory: one atomic
    /// operation per request, shared by every instance that uses the same cache.
    ///
    /// ```
    /// # use axum::{Router, body::Body, extract::ConnectInfo, routing::get}; use tower::ServiceExt;
    /// # async fn send(app: &Router, peer: &str, headers: &[(&str, &str)]) -> http::Response<Body> {
    /// #     let mut r = http::Request::get("/"); for (k, v) in headers { r = r.header(*k, *v); }
    /// #     let mut r = r.body(Body::empty()).unwrap();
    /// #     r.extensions_mut().insert(ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
    /// #     app.clone().oneshot(r).await.unwrap() }
    /// # fn app(l: jtc_throttle::ThrottleLayer) -> Router { Router::new().route("/", get(|| async { "hi" })).layer(l) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_throttle::ThrottleLayer;
    /// use jtc_cache::{ArrayDriver, Cache};
    ///
    /// let cache = Cache::new(ArrayDriver::new()); // Cache::from_env() in an app: file, Redis...
    /// let first = app(ThrottleLayer::new(1, 60).with_cache(cache.clone()));
    /// let second = app(ThrottleLayer::new(1, 60).with_cache(cache.clone())); // another instance
    /// assert_eq!(send(&first, "203.0.113.9:1", &[]).await.status(), 200);
    /// assert_eq!(send(&second, "203.0.113.9:1", &[]).await.status(), 429, "one shared limit");
    /// # })
    /// ```
    pub fn with_cache(self, cache: Cache) -> Self {
        self.with(|c| c.cache = Some(cache))
    }

    /// Names the limiter; its counters are stored under `throttle:<name>:`. Layers with the
    /// same settings on one route need different names, or they count twice in one bucket.
    /// Default: derived from the limit and window (`60per60000ms`).
    ///
    /// ```
    /// # use axum::{Router, body::Body, extract::ConnectInfo, routing::get}; use tower::ServiceExt;
    /// # async fn send(app: &Router, peer: &str, headers: &[(&str, &str)]) -> http::Response<Body> {
    /// #     let mut r = http::Request::get("/"); for (k, v) in headers { r = r.header(*k, *v); }
    /// #     let mut r = r.body(Body::empty()).unwrap();
    /// #     r.extensions_mut().insert(ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
    /// #     app.clone().oneshot(r).await.unwrap() }
    /// # fn app(l: jtc_throttle::ThrottleLayer) -> Router { Router::new().route("/", get(|| async { "hi" })).layer(l) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_throttle::ThrottleLayer;
    /// use jtc_cache::{ArrayDriver, Cache};
    ///
    /// let cache = Cache::new(ArrayDriver::new());
    /// let app = app(ThrottleLayer::new(5, 60).name("login").with_cache(cache.clone()));
    /// send(&app, "203.0.113.9:1", &[]).await;
    /// assert_eq!(cache.get::<i64>("throttle:login:203.0.113.9:/").await.unwrap(), Some(1));
    /// # })
    /// ```
    pub fn name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.with(|c| c.name = Some(name))
    }

    /// The algorithm. Default: [`Algorithm::FixedWindow`].
    ///
    /// ```
    /// # use axum::{Router, body::Body, extract::ConnectInfo, routing::get}; use tower::ServiceExt;
    /// # async fn send(app: &Router, peer: &str, headers: &[(&str, &str)]) -> http::Response<Body> {
    /// #     let mut r = http::Request::get("/"); for (k, v) in headers { r = r.header(*k, *v); }
    /// #     let mut r = r.body(Body::empty()).unwrap();
    /// #     r.extensions_mut().insert(ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
    /// #     app.clone().oneshot(r).await.unwrap() }
    /// # fn app(l: jtc_throttle::ThrottleLayer) -> Router { Router::new().route("/", get(|| async { "hi" })).layer(l) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_throttle::ThrottleLayer;
    /// use jtc_throttle::Algorithm;
    ///
    /// let app = app(ThrottleLayer::new(2, 60).algorithm(Algorithm::SlidingWindow));
    /// assert_eq!(send(&app, "203.0.113.9:1", &[]).await.status(), 200);
    /// assert_eq!(send(&app, "203.0.113.9:1", &[]).await.status(), 200);
    /// assert_eq!(send(&app, "203.0.113.9:1", &[]).await.status(), 429);
    /// # })
    /// ```
    pub fn algorithm(self, algorithm: Algorithm) -> Self {
        self.with(|c| c.quota.algorithm = algorithm)
    }

    /// What to do while the cache cannot be reached. Default:
    /// [`StoreErrorPolicy::FallbackToMemory`].
    ///
    /// ```
    /// # use axum::{Router, body::Body, extract::ConnectInfo, routing::get}; use tower::ServiceExt;
    /// # async fn send(app: &Router, peer: &str, headers: &[(&str, &str)]) -> http::Response<Body> {
    /// #     let mut r = http::Request::get("/"); for (k, v) in headers { r = r.header(*k, *v); }
    /// #     let mut r = r.body(Body::empty()).unwrap();
    /// #     r.extensions_mut().insert(ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
    /// #     app.clone().oneshot(r).await.unwrap() }
    /// # fn app(l: jtc_throttle::ThrottleLayer) -> Router { Router::new().route("/", get(|| async { "hi" })).layer(l) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_throttle::ThrottleLayer;
    /// use jtc_cache::{Cache, FileDriver};
    /// use jtc_throttle::StoreErrorPolicy;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = Cache::new(FileDriver::new(dir.path().join("cache")).unwrap());
    /// std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    /// std::fs::write(dir.path().join("cache"), "not a folder").unwrap(); // the store now fails
    /// let closed = app(ThrottleLayer::new(5, 60).with_cache(cache.clone())
    ///     .on_store_error(StoreErrorPolicy::FailClosed));
    /// assert_eq!(send(&closed, "203.0.113.9:1", &[]).await.status(), 503);
    /// let open = app(ThrottleLayer::new(5, 60).with_cache(cache)
    ///     .on_store_error(StoreErrorPolicy::FailOpen));
    /// assert_eq!(send(&open, "203.0.113.9:1", &[]).await.status(), 200);
    /// # })
    /// ```
    pub fn on_store_error(self, policy: StoreErrorPolicy) -> Self {
        self.with(|c| c.on_store_error = policy)
    }

    /// How many client keys the in-process counters hold at most (also the fallback store's
    /// size). When full, finished windows are dropped first, then the lightest counters.
    /// Default: 100,000.
    ///
    /// ```
    /// # use axum::{Router, body::Body, extract::ConnectInfo, routing::get}; use tower::ServiceExt;
    /// # async fn send(app: &Router, peer: &str, headers: &[(&str, &str)]) -> http::Response<Body> {
    /// #     let mut r = http::Request::get("/"); for (k, v) in headers { r = r.header(*k, *v); }
    /// #     let mut r = r.body(Body::empty()).unwrap();
    /// #     r.extensions_mut().insert(ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
    /// #     app.clone().oneshot(r).await.unwrap() }
    /// # fn app(l: jtc_throttle::ThrottleLayer) -> Router { Router::new().route("/", get(|| async { "hi" })).layer(l) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_throttle::ThrottleLayer;
    /// let app = app(ThrottleLayer::new(1, 60).memory_capacity(100));
    /// send(&app, "203.0.113.9:1", &[]).await;
    /// assert_eq!(send(&app, "203.0.113.9:1", &[]).await.status(), 429);
    /// for i in 0..1_000 {
    ///     send(&app, &format!("198.51.{}.{}:1", i / 256, i % 256), &[]).await;
    /// }
    /// // A full store drops one-off clients first: the client it holds back stays held back.
    /// assert_eq!(send(&app, "203.0.113.9:1", &[]).await.status(), 429);
    /// # })
    /// ```
    pub fn memory_capacity(self, keys: u64) -> Self {
        self.with(|c| c.memory_capacity = keys.max(1))
    }

    /// The clock for windows and the `X-RateLimit-Reset` header; tests pass a
    /// [`jtc_cache::ManualClock`]. Default: [`MonotonicClock`].
    ///
    /// ```
    /// # use axum::{Router, body::Body, extract::ConnectInfo, routing::get}; use tower::ServiceExt;
    /// # async fn send(app: &Router, peer: &str, headers: &[(&str, &str)]) -> http::Response<Body> {
    /// #     let mut r = http::Request::get("/"); for (k, v) in headers { r = r.header(*k, *v); }
    /// #     let mut r = r.body(Body::empty()).unwrap();
    /// #     r.extensions_mut().insert(ConnectInfo(peer.parse::<std::net::SocketAddr>().unwrap()));
    /// #     app.clone().oneshot(r).await.unwrap() }
    /// # fn app(l: jtc_throttle::ThrottleLayer) -> Router { Router::new().route("/", get(|| async { "hi" })).layer(l) }
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_throttle::ThrottleLayer;
    /// use jtc_cache::ManualClock;
    /// use std::time::Duration;
    ///
    /// let clock = ManualClock::new(1_700_000_000_000);
    /// let app = app(ThrottleLayer::new(1, 60).clock(clock.clone()));
    /// send(&app, "203.0.113.9:1", &[]).await;
    /// clock.advance(Duration::from_secs(45));
    /// let limited = send(&app, "203.0.113.9:1", &[]).await;
    /// assert_eq!(limited.headers()["retry-after"], "15");
    /// assert_eq!(limited.headers()["x-ratelimit-reset"], "1700000060");
    /// clock.advance(Duration::from_secs(15));
    /// assert_eq!(send(&app, "203.0.113.9:1", &[]).await.status(), 200);
    /// # })
    /// ```
    pub fn clock(self, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        self.with(|c| c.clock = clock)
    }
}

impl fmt::Debug for ThrottleLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.shared.config;
        f.debug_struct("ThrottleLayer")
            .field("limit", &config.quota.limit)
            .field("window", &config.quota.window)
            .field("algorithm", &config.quota.algorithm)
            .field("prefix", &self.shared.prefix)
            .field("cache", &config.cache)
            .field("on_store_error", &config.on_store_error)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Throttle<S> {
        Throttle {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}
