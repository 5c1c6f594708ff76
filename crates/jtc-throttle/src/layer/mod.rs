//! `ThrottleLayer`: the configuration, its setters, and `impl Layer`. The setters that say
//! who the client is live in `client.rs`, those that shape a rejection in `answer.rs`, those
//! that say which requests count and how the store is spared in `scope.rs`.

mod answer;
mod client;
mod scope;

use std::{fmt, sync::Arc, time::Duration};

use jtc_cache::{Cache, Clock, MonotonicClock};
use tower::Layer;

use crate::{
    Algorithm, Limit, Limits, RateLimiter, RequestInfo, StoreErrorPolicy, Throttle,
    key::Identity,
    lang::{self, Catalogues},
    limiter::Plan,
    rate_limiter::DEFAULT_MEMORY_CAPACITY,
    settings::{Config, LimitsFn, Source},
    shared::Shared,
};

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
        Self::with_limits(Limit::new(max_requests, window).name("default"))
    }

    /// Every request must pass all of `limits` (a [`Limit`], a `Vec` or array of them, or
    /// parsed text), each counted under its [`by`](Limit::by) key or the client and route.
    /// Limits on one key cost one store round trip together.
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
    /// use jtc_throttle::{Limits, ThrottleLayer};
    ///
    /// let limits: Limits = "2/second; 100/hour".parse().unwrap();
    /// let app = app(ThrottleLayer::with_limits(limits).ietf_headers(true));
    /// let first = send(&app, "203.0.113.9:1", &[]).await;
    /// assert_eq!(first.headers()["x-ratelimit-remaining"], "1", "the tightest limit");
    /// assert_eq!(
    ///     first.headers()["ratelimit-policy"],
    ///     "\"2-per-1s\";q=2;w=1, \"100-per-3600s\";q=100;w=3600"
    /// );
    /// send(&app, "203.0.113.9:1", &[]).await;
    /// assert_eq!(send(&app, "203.0.113.9:1", &[]).await.status(), 429);
    /// # })
    /// ```
    pub fn with_limits(limits: impl Into<Limits>) -> Self {
        Self::from_source(Source::Fixed(Arc::new(Plan::new(limits.into()))))
    }

    /// Decides the limits of each request with `limits_fn` (Laravel's `RateLimiter::for`): per
    /// user, per plan, none for admins. It sees the request's client, route, headers and
    /// extensions (an authenticated user put there by earlier middleware). Name the layer
    /// with [`name`](Self::name) when several dynamic layers share a cache (default:
    /// `dynamic`).
    ///
    /// ```
    /// # use axum::{Router, body::Body, extract::ConnectInfo, routing::get}; use tower::ServiceExt;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_throttle::{Limit, RequestInfo, ThrottleLayer};
    ///
    /// #[derive(Clone)]
    /// struct User { id: u64, rpm: u64, is_admin: bool }
    ///
    /// let layer = ThrottleLayer::dynamic(|req: &RequestInfo<'_>| match req.extensions.get::<User>() {
    ///     Some(u) if u.is_admin => Limit::none().into(),
    ///     Some(u) => Limit::per_minute(u.rpm).by(u.id.to_string()).into(),
    ///     None => vec![Limit::per_second(2), Limit::per_minute(30)].into(),
    /// });
    /// let app = Router::new().route("/", get(|| async { "hi" })).layer(layer);
    /// let send = |user: Option<User>| {
    ///     let mut request = http::Request::get("/").body(Body::empty()).unwrap();
    ///     request.extensions_mut().insert(ConnectInfo("203.0.113.9:1".parse::<std::net::SocketAddr>().unwrap()));
    ///     if let Some(user) = user { request.extensions_mut().insert(user); }
    ///     app.clone().oneshot(request)
    /// };
    /// let ana = User { id: 1, rpm: 1, is_admin: false };
    /// assert_eq!(send(Some(ana.clone())).await.unwrap().status(), 200);
    /// assert_eq!(send(Some(ana)).await.unwrap().status(), 429, "one a minute for her plan");
    /// let admin = User { id: 2, rpm: 1, is_admin: true };
    /// for _ in 0..5 {
    ///     let response = send(Some(admin.clone())).await.unwrap();
    ///     assert_eq!(response.status(), 200);
    ///     assert!(response.headers().get("x-ratelimit-limit").is_none(), "uncounted");
    /// }
    /// assert_eq!(send(None).await.unwrap().headers()["x-ratelimit-limit"], "2");
    /// # })
    /// ```
    pub fn dynamic(limits_fn: impl Fn(&RequestInfo<'_>) -> Limits + Send + Sync + 'static) -> Self {
        let limits_fn: LimitsFn = Arc::new(limits_fn);
        Self::from_source(Source::Dynamic(limits_fn))
    }

    fn from_source(limits: Source) -> Self {
        let config = Config {
            limits,
            name: None,
            cache: None,
            identity: Identity::default(),
            key_fn: None,
            methods: None,
            on_limited: None,
            on_unavailable: None,
            on_store_error: StoreErrorPolicy::default(),
            deny_cache: true,
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

    /// A [`RateLimiter`] over this layer's counters (same store, same names): a handler can
    /// check or clear what the layer counts under [`Limit::by`] keys.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_throttle::{Limit, ThrottleLayer};
    /// let login = Limit::per_minute(5).by("login:ana@example.com");
    /// let layer = ThrottleLayer::with_limits(login.clone());
    /// let limiter = layer.limiter();
    /// limiter.hit("login:ana@example.com", &login).await?; // what the layer would count
    /// assert_eq!(limiter.check("login:ana@example.com", &login).await?.remaining(), 4);
    /// limiter.clear("login:ana@example.com").await?;
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    pub fn limiter(&self) -> RateLimiter {
        RateLimiter::from_counters(Arc::clone(&self.shared.counters))
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
    /// assert!(cache.has("throttle:login:203.0.113.9:/").await.unwrap());
    /// # })
    /// ```
    pub fn name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.with(|c| c.name = Some(name))
    }

    /// The algorithm of every fixed limit (a [`dynamic`](Self::dynamic) layer's limits say
    /// their own with [`Limit::algorithm`]). Default: [`Algorithm::FixedWindow`].
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
        self.with(|c| {
            if let Source::Fixed(plan) = &c.limits {
                let limits = plan.limits.iter().cloned().map(|l| l.algorithm(algorithm));
                c.limits = Source::Fixed(Arc::new(Plan::new(limits.collect())));
            }
        })
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
        let mut debug = f.debug_struct("ThrottleLayer");
        match &config.limits {
            Source::Fixed(plan) => debug.field("limits", &plan.limits),
            Source::Dynamic(_) => debug.field("limits", &"dynamic"),
        };
        debug
            .field("prefix", &self.shared.counters.prefix)
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
