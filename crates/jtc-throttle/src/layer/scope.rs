//! Which requests a layer counts, and how it spares the store: the method filter and the
//! local deny cache.

use http::Method;

use crate::ThrottleLayer;

impl ThrottleLayer {
    /// Counts only requests with one of `methods` (tower_governor's method filter); the others
    /// pass uncounted, without rate-limit headers. Default: every method.
    ///
    /// ```
    /// # use axum::{Router, body::Body, extract::ConnectInfo, routing::{get, post}}; use tower::ServiceExt;
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use http::Method;
    /// use jtc_throttle::ThrottleLayer;
    ///
    /// let app = Router::new()
    ///     .route("/posts", get(|| async { "list" }).post(|| async { "created" }))
    ///     .layer(ThrottleLayer::new(1, 60).methods([Method::POST]));
    /// let send = |method: Method| {
    ///     let mut r = http::Request::builder().method(method).uri("/posts").body(Body::empty()).unwrap();
    ///     r.extensions_mut().insert(ConnectInfo("203.0.113.9:1".parse::<std::net::SocketAddr>().unwrap()));
    ///     app.clone().oneshot(r)
    /// };
    /// assert_eq!(send(Method::POST).await.unwrap().status(), 200);
    /// assert_eq!(send(Method::POST).await.unwrap().status(), 429);
    /// assert_eq!(send(Method::GET).await.unwrap().status(), 200, "reads are not limited");
    /// # })
    /// ```
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        let methods: Vec<Method> = methods.into_iter().collect();
        self.with(|c| c.methods = Some(methods))
    }

    /// Whether a layer counting in a cache remembers, in process, the keys the cache rejected
    /// until the rejection ends — answering their flood itself, with no store command. On by
    /// default.
    ///
    /// Admissions stay exact across instances: the local cache only ever rejects, and only
    /// until the time the store gave. The trade-offs: a key cleared through another instance
    /// (`RateLimiter::clear`) is admitted here only once that time has passed, and the flood's
    /// rejected requests are not counted in the store (a fixed window counts rejections; it
    /// then counts only the first). Turn it off when those matter more than the store's load.
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
    /// use jtc_cache::{ArrayDriver, Cache};
    /// use jtc_throttle::ThrottleLayer;
    ///
    /// let cache = Cache::new(ArrayDriver::new());
    /// let shielded = app(ThrottleLayer::new(1, 60).with_cache(cache.clone()));
    /// send(&shielded, "203.0.113.9:1", &[]).await;
    /// send(&shielded, "203.0.113.9:1", &[]).await; // the cache says no until the window ends
    /// let writes = cache.stats().writes;
    /// for _ in 0..100 {
    ///     assert_eq!(send(&shielded, "203.0.113.9:1", &[]).await.status(), 429);
    /// }
    /// assert_eq!(cache.stats().writes, writes, "the flood never reached the cache");
    /// let counted = app(ThrottleLayer::new(1, 60).with_cache(cache.clone()).deny_cache(false));
    /// send(&counted, "203.0.113.9:1", &[]).await;
    /// assert_eq!(cache.stats().writes, writes + 1);
    /// # })
    /// ```
    pub fn deny_cache(self, enabled: bool) -> Self {
        self.with(|c| c.deny_cache = enabled)
    }
}
