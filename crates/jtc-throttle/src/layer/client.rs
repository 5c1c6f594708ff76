//! Who the client is: trusted proxies, IPv6 grouping, or a key of the app's own.

use std::{net::IpAddr, sync::Arc};

use ipnet::IpNet;

use crate::{ForwardedHeader, RequestInfo, ThrottleLayer, settings::KeyFn};

impl ThrottleLayer {
    /// Proxies whose forwarding header is believed: `X-Forwarded-For` unless
    /// [`forwarded_header`](Self::forwarded_header) names `Forwarded`. Default: none, so the
    /// socket peer is always the client. Behind them the client is the rightmost address of
    /// the header that is not itself a trusted proxy.
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
    /// use jtc_throttle::ForwardedHeader;
    /// let layer = ThrottleLayer::new(1, 60)
    ///     .trust_proxy("10.0.0.5".parse().unwrap())
    ///     .forwarded_header(ForwardedHeader::Forwarded);
    /// let app = app(layer);
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

    /// Which forwarding header the trusted proxies write: `X-Forwarded-For` (the default:
    /// nginx, AWS ALB, Cloudflare, Envoy, HAProxy) or `Forwarded` (RFC 7239). Only that
    /// header is read; the other is ignored even when a trusted proxy passes it on, since a
    /// proxy that appends to one passes the client's own copy of the other through untouched.
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
    /// use jtc_throttle::{ForwardedHeader, ThrottleLayer};
    /// // nginx appends the client's address to X-Forwarded-For (the default header).
    /// let app = app(ThrottleLayer::new(1, 60).trusted_proxies(["10.0.0.0/8".parse().unwrap()]));
    /// let real = ("x-forwarded-for", "198.51.100.1");
    /// assert_eq!(send(&app, "10.0.0.5:1", &[real, ("forwarded", "for=192.0.2.1")]).await.status(), 200);
    /// // A made-up `Forwarded` does not make a new client.
    /// assert_eq!(send(&app, "10.0.0.5:1", &[real, ("forwarded", "for=192.0.2.2")]).await.status(), 429);
    /// # let _ = ForwardedHeader::Forwarded;
    /// # })
    /// ```
    pub fn forwarded_header(self, header: ForwardedHeader) -> Self {
        self.with(|c| c.identity.forwarded_header = header)
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
}
