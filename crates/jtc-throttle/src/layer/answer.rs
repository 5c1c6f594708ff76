//! What a rejection says: the 429 hook, the IETF fields, and the languages of the body.

use std::sync::Arc;

use axum::body::Body;
use http::Response;

use crate::{
    Limited, ThrottleLayer, Unavailable,
    response::{OnLimited, OnUnavailable},
};

impl ThrottleLayer {
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

    /// Builds the response of the [`FailClosed`](crate::StoreErrorPolicy::FailClosed) policy
    /// while the store is down. Default: a 503 with JSON `{"error": <translated message>}`.
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
    /// use jtc_cache::{Cache, FileDriver};
    /// use jtc_throttle::{StoreErrorPolicy, ThrottleLayer};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let cache = Cache::new(FileDriver::new(dir.path().join("cache")).unwrap());
    /// std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    /// std::fs::write(dir.path().join("cache"), "not a folder").unwrap(); // the store now fails
    /// let layer = ThrottleLayer::new(5, 60)
    ///     .with_cache(cache)
    ///     .on_store_error(StoreErrorPolicy::FailClosed)
    ///     .on_unavailable(|unavailable| {
    ///         let mut response = http::Response::new(Body::from(unavailable.message.clone()));
    ///         *response.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
    ///         response.headers_mut().insert("retry-after", http::HeaderValue::from_static("5"));
    ///         response
    ///     });
    /// let response = send(&app(layer), "203.0.113.9:1", &[]).await;
    /// assert_eq!(response.status(), 429);
    /// assert_eq!(response.headers()["retry-after"], "5");
    /// # })
    /// ```
    pub fn on_unavailable(
        self,
        hook: impl Fn(&Unavailable) -> Response<Body> + Send + Sync + 'static,
    ) -> Self {
        let hook: OnUnavailable = Arc::new(hook);
        self.with(|c| c.on_unavailable = Some(hook))
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
}
