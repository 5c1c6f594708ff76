//! `ThrottleLayer`: the configuration, its setters, and `impl Layer`.

use std::{fmt, net::IpAddr, sync::Arc, time::Duration};

use axum::body::Body;
use http::Response;
use ipnet::IpNet;
use jtc_cache::{Cache, Clock, MonotonicClock};
use tower::Layer;

use crate::{
    Algorithm, Limited, RequestInfo, StoreErrorPolicy, Throttle,
    key::Identity,
    lang::{self, Catalogues},
    limiter::Quota,
    response::OnLimited,
    shared::{Config, KeyFn, Shared},
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

    fn with(self, change: impl FnOnce(&mut Config)) -> Self {
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

    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers are believed. Default: none, so
    /// the socket peer is always the client.
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
    /// let layer = ThrottleLayer::new(1, 60).trusted_proxies(["10.0.0.0/8".parse().unwrap()]);
    /// let app = app(layer);
    /// let ana = [("x-forwarded-for", "198.51.100.1")];
    /// let bob = [("x-forwarded-for", "198.51.100.2")];
    /// assert_eq!(send(&app, "10.0.0.5:1", &ana).await.status(), 200);
    /// assert_eq!(send(&app, "10.0.0.5:1", &bob).await.status(), 200, "another client");
    /// assert_eq!(send(&app, "10.0.0.5:1", &ana).await.status(), 429);
    /// # })
    /// ```
    pub fn trusted_proxies(self, networks: impl IntoIterator<Item = IpNet>) -> Self {
        let networks: Vec<IpNet> = networks.into_iter().collect();
        self.with(|c| c.identity.trusted_proxies = networks)
    }

    /// Trusts one proxy address.
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
    /// let app = app(ThrottleLayer::new(1, 60).trust_proxy("10.0.0.5".parse().unwrap()));
    /// let ana = [("forwarded", "for=198.51.100.1")];
    /// assert_eq!(send(&app, "10.0.0.5:1", &ana).await.status(), 200);
    /// assert_eq!(send(&app, "10.0.0.5:1", &[("forwarded", "for=198.51.100.2")]).await.status(), 200);
    /// // From a peer that is not the proxy the header is ignored: the peer is the client.
    /// assert_eq!(send(&app, "192.0.2.7:1", &ana).await.status(), 200);
    /// assert_eq!(send(&app, "192.0.2.7:1", &ana).await.status(), 429);
    /// # })
    /// ```
    pub fn trust_proxy(self, ip: IpAddr) -> Self {
        self.with(|c| c.identity.trusted_proxies.push(IpNet::from(ip)))
    }

    /// How many leading bits of an IPv6 address identify a client (0–128). Default: 64.
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
    /// let by_64 = app(ThrottleLayer::new(1, 60));
    /// assert_eq!(send(&by_64, "[2001:db8::1]:1", &[]).await.status(), 200);
    /// assert_eq!(send(&by_64, "[2001:db8::2]:1", &[]).await.status(), 429, "one /64, one client");
    /// let by_128 = app(ThrottleLayer::new(1, 60).ipv6_prefix(128));
    /// assert_eq!(send(&by_128, "[2001:db8::1]:1", &[]).await.status(), 200);
    /// assert_eq!(send(&by_128, "[2001:db8::2]:1", &[]).await.status(), 200);
    /// # })
    /// ```
    pub fn ipv6_prefix(self, bits: u8) -> Self {
        self.with(|c| c.identity.ipv6_prefix = bits.min(128))
    }

    /// Counts requests under the key `key_fn` returns instead of client and route; `None`
    /// lets the request through uncounted (an allow-list). Default: client and route.
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
    /// let layer = ThrottleLayer::new(1, 60).key_fn(|req| {
    ///     let key = req.headers.get("x-api-key")?.to_str().ok()?;
    ///     (key != "internal").then(|| format!("key:{key}"))
    /// });
    /// let app = app(layer);
    /// assert_eq!(send(&app, "203.0.113.9:1", &[("x-api-key", "a")]).await.status(), 200);
    /// assert_eq!(send(&app, "198.51.100.1:1", &[("x-api-key", "a")]).await.status(), 429);
    /// for _ in 0..3 {
    ///     let internal = send(&app, "203.0.113.9:1", &[("x-api-key", "internal")]).await;
    ///     assert_eq!(internal.status(), 200, "uncounted");
    /// }
    /// # })
    /// ```
    pub fn key_fn(
        self,
        key_fn: impl Fn(&RequestInfo<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        let key_fn: KeyFn = Arc::new(key_fn);
        self.with(|c| c.key_fn = Some(key_fn))
    }

    /// Builds the 429 response; the layer still adds the rate-limit headers. Default: JSON
    /// `{"error": <translated message>, "retry_after": <seconds>, "limit": <n>}`.
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
    /// use http_body_util::BodyExt;
    ///
    /// let layer = ThrottleLayer::new(1, 60).on_limited(|limited| {
    ///     let text = format!("slow down, try again in {} s", limited.retry_after_secs);
    ///     http::Response::builder().status(429).body(Body::from(text)).unwrap()
    /// });
    /// let app = app(layer);
    /// send(&app, "203.0.113.9:1", &[]).await;
    /// let limited = send(&app, "203.0.113.9:1", &[]).await;
    /// assert_eq!(limited.headers()["x-ratelimit-limit"], "1", "the layer adds its headers");
    /// let body = limited.into_body().collect().await.unwrap().to_bytes();
    /// assert_eq!(body, "slow down, try again in 60 s");
    /// # })
    /// ```
    pub fn on_limited(
        self,
        hook: impl Fn(&Limited) -> Response<Body> + Send + Sync + 'static,
    ) -> Self {
        let hook: OnLimited = Arc::new(hook);
        self.with(|c| c.on_limited = Some(hook))
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

    /// Also sends the IETF draft `RateLimit-Policy` and `RateLimit` fields. Default: off.
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
    /// let app = app(ThrottleLayer::new(10, 60).ietf_headers(true));
    /// let response = send(&app, "203.0.113.9:1", &[]).await;
    /// assert_eq!(response.headers()["ratelimit-policy"], "\"default\";q=10;w=60");
    /// assert_eq!(response.headers()["ratelimit"], "\"default\";r=9;t=60");
    /// # })
    /// ```
    pub fn ietf_headers(self, enabled: bool) -> Self {
        self.with(|c| c.ietf_headers = enabled)
    }

    /// The locale of 429 bodies when `Accept-Language` names none we have (`en`, `pt_BR` and
    /// those added with [`translations`](Self::translations); `pt-BR` and `pt` work too). An
    /// unknown value keeps `en`. Default: `en`. Apps usually pass `APP_LOCALE` here.
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
    /// let app = app(ThrottleLayer::new(1, 60).fallback_locale("pt-BR"));
    /// send(&app, "203.0.113.9:1", &[]).await;
    /// let limited = send(&app, "203.0.113.9:1", &[("accept-language", "de")]).await;
    /// assert_eq!(limited.headers()["content-language"], "pt-BR");
    /// let asked = send(&app, "203.0.113.9:1", &[("accept-language", "en-GB")]).await;
    /// assert_eq!(asked.headers()["content-language"], "en");
    /// # })
    /// ```
    pub fn fallback_locale(self, locale: &str) -> Self {
        let locale = locale.to_owned();
        self.with(|c| c.fallback_locale = locale)
    }

    /// Adds the app's own messages for `locale` (`de`, `fr_CA`): a new language for 429 and
    /// 503 bodies, or other wording for a shipped one. Keys are those of the shipped files
    /// (`http.too_many_requests`, `http.service_unavailable`); a key the catalogue lacks
    /// falls back to English. Called again for the same locale, it adds to what was there.
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
    /// use http_body_util::BodyExt;
    /// use jtc_throttle::ThrottleLayer;
    ///
    /// let layer = ThrottleLayer::new(1, 60).translations(
    ///     "de",
    ///     [("http.too_many_requests", "Zu viele Anfragen. Bitte später erneut versuchen.")],
    /// );
    /// let app = app(layer);
    /// send(&app, "203.0.113.9:1", &[]).await;
    /// let limited = send(&app, "203.0.113.9:1", &[("accept-language", "de-DE")]).await;
    /// assert_eq!(limited.headers()["content-language"], "de");
    /// let body = limited.into_body().collect().await.unwrap().to_bytes();
    /// assert!(String::from_utf8_lossy(&body).contains("Zu viele Anfragen"));
    /// # })
    /// ```
    pub fn translations<K, V>(
        self,
        locale: &str,
        messages: impl IntoIterator<Item = (K, V)>,
    ) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let messages = messages
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self.with(|c| c.catalogues.register(locale, messages))
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
