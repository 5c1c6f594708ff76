//! `ResponseCacheLayer` and the service it wraps a handler in.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{Arc, atomic::AtomicU64},
    task::{Context, Poll},
    time::Duration,
};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderName, Method, Request, Response, request::Parts};
use jtc_cache::Cache;
use tower::{BoxError, Layer, Service};

use crate::{flights::Flights, stored::key_of};

/// The header that says how a response was served: `hit`, `stale`, `miss` or `bypass`.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Responses larger than this pass through uncached unless
/// [`max_body`](ResponseCacheLayer::max_body) says otherwise: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// How long a response is kept when it names no lifetime of its own: 60 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// The route label of a request that matched no route (the layer wraps the router from
/// outside).
pub(crate) const UNMATCHED: &str = "(unmatched)";
/// How long a request waits for a concurrent request of the same key to fill the cache before
/// it runs the handler itself.
pub(crate) const FILL_WAIT: Duration = Duration::from_secs(10);

type KeyFn = Arc<dyn Fn(&Parts) -> String + Send + Sync>;
type TagsFn = Arc<dyn Fn(&Parts) -> Vec<String> + Send + Sync>;

/// Caches whole responses of the routes it wraps, by the rules of HTTP caching (RFC 9111, as
/// a shared cache), in a [`Cache`] — any driver, so instances share what one of them stored.
///
/// ```
/// # use std::time::Duration;
/// use axum::{Router, routing::get};
/// use jtc_cache::{ArrayDriver, Cache};
/// use jtc_http::ResponseCacheLayer;
///
/// let cache = Cache::new(ArrayDriver::new());
/// let app: Router = Router::new()
///     .route("/reports/{id}", get(|| async { "a slow report" }))
///     .layer(ResponseCacheLayer::new(cache).ttl(Duration::from_secs(30)));
/// ```
///
/// What is stored, under which key, and what this version leaves out: docs/response-cache.md.
#[derive(Clone)]
pub struct ResponseCacheLayer {
    shared: Arc<Shared>,
}

/// What the builder sets.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) cache: Cache,
    pub(crate) ttl: Duration,
    /// How long past its lifetime a response may still be served while it is refreshed.
    pub(crate) stale: Duration,
    pub(crate) max_body: usize,
    pub(crate) methods: Vec<Method>,
    pub(crate) key: Option<KeyFn>,
    pub(crate) tags: Option<TagsFn>,
}

/// What every service of one layer shares: the settings, the fills in flight, the outage log.
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    pub(crate) flights: Flights,
    /// When the last outage was logged (Unix seconds): one line per 10 s at most.
    pub(crate) logged: AtomicU64,
}

impl From<Settings> for ResponseCacheLayer {
    fn from(settings: Settings) -> Self {
        Self {
            shared: Arc::new(Shared {
                settings,
                flights: Flights::default(),
                logged: AtomicU64::new(0),
            }),
        }
    }
}

impl fmt::Debug for ResponseCacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCacheLayer")
            .field("cache", &self.shared.settings.cache.name())
            .field("ttl", &self.shared.settings.ttl)
            .field("max_body", &self.shared.settings.max_body)
            .field("methods", &self.shared.settings.methods)
            .finish_non_exhaustive()
    }
}

impl ResponseCacheLayer {
    /// A layer storing responses in `cache`, `GET` and `HEAD` only, for [`DEFAULT_TTL`] when a
    /// response names no lifetime, up to [`DEFAULT_MAX_BODY`] bytes each.
    ///
    /// Responses are stored uncompressed, whatever the cache's
    /// [`compress_above`](Cache::compress_above) says: decompressing a 4 KB page on every hit
    /// cost more than the rest of the hit (7.5 µs against 2.9 µs a hit in process,
    /// docs/benchmarks.md), and bodies worth compressing are usually sent compressed by the
    /// app already. Pass a cache of its own ([`Cache::named`]) to keep its entries apart in
    /// the stats.
    pub fn new(cache: Cache) -> Self {
        Self::from(Settings {
            cache: cache.without_compression(),
            ttl: DEFAULT_TTL,
            stale: Duration::ZERO,
            max_body: DEFAULT_MAX_BODY,
            methods: vec![Method::GET, Method::HEAD],
            key: None,
            tags: None,
        })
    }

    fn with(self, change: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = self.shared.settings.clone();
        change(&mut settings);
        Self::from(settings)
    }

    /// How long a response that names no lifetime (`s-maxage`, `max-age`, `Expires`) is kept.
    #[must_use]
    pub fn ttl(self, ttl: Duration) -> Self {
        self.with(|s| s.ttl = ttl)
    }

    /// How long after its lifetime a stored response may still be served (`X-Cache: stale`)
    /// while one request runs the handler again in the background (RFC 5861's
    /// `stale-while-revalidate`; a response's own directive wins). Default: none.
    #[must_use]
    pub fn stale_while_revalidate(self, window: Duration) -> Self {
        self.with(|s| s.stale = window)
    }

    /// The largest body stored; a larger response (or one whose length is not known before it
    /// is read) passes through uncached, streamed as the handler sends it.
    #[must_use]
    pub fn max_body(self, bytes: usize) -> Self {
        self.with(|s| s.max_body = bytes)
    }

    /// The methods whose responses are cached (`HEAD` is answered from `GET`'s entry and
    /// never stores one itself). Default: `GET`, `HEAD`.
    #[must_use]
    pub fn methods(self, methods: impl IntoIterator<Item = Method>) -> Self {
        let methods = methods.into_iter().collect();
        self.with(|s| s.methods = methods)
    }

    /// Adds a part of the app's own to every key, such as a tenant from a header or an
    /// extension an earlier layer set.
    #[must_use]
    pub fn key(self, key: impl Fn(&Parts) -> String + Send + Sync + 'static) -> Self {
        self.with(|s| s.key = Some(Arc::new(key)))
    }

    /// Tags a request's entry so that `cache.tags(&[..]).flush()` drops it. A request is
    /// looked up under the same tags, so they must follow from the request alone.
    #[must_use]
    pub fn tags(self, tags: impl Fn(&Parts) -> Vec<String> + Send + Sync + 'static) -> Self {
        self.with(|s| s.tags = Some(Arc::new(tags)))
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseCache {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service [`ResponseCacheLayer`] wraps a handler in.
#[derive(Clone)]
pub struct ResponseCache<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> fmt::Debug for ResponseCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCache").finish_non_exhaustive()
    }
}

impl ResponseCache<()> {
    /// Drops the response stored for `method` and `uri` (path and query, as a request would
    /// send them) in `cache`, every variant of it. Responses stored under tags are dropped
    /// with their tags instead (`cache.tags(&[..]).flush()`), and those with key parts of the
    /// app's own ([`ResponseCacheLayer::key`]) with [`forget_keyed`](Self::forget_keyed).
    ///
    /// # Errors
    ///
    /// The cache's, when it cannot be reached.
    pub async fn forget(cache: &Cache, method: Method, uri: &str) -> jtc_cache::Result<bool> {
        Self::forget_keyed(cache, method, uri, None).await
    }

    /// [`forget`](Self::forget) for a layer with key parts of the app's own: `extra` is what
    /// the layer's key function returned for the request.
    ///
    /// # Errors
    ///
    /// As [`forget`](Self::forget). An `uri` that is not a path and query names nothing any
    /// request could have stored: `Ok(false)`.
    pub async fn forget_keyed(
        cache: &Cache,
        method: Method,
        uri: &str,
        extra: Option<&str>,
    ) -> jtc_cache::Result<bool> {
        let Ok(uri) = uri.parse::<http::Uri>() else {
            return Ok(false);
        };
        cache.forget(&key_of(&method, &uri, extra)).await
    }
}

/// The future of a request the [`ResponseCache`] service answers: the answer itself for a
/// fresh hit the cache held in process (the array driver, a near cache's copy), else the
/// work — a read over the network, a fill, a bypass — boxed.
#[must_use = "futures do nothing unless polled"]
pub struct ResponseFuture<E>(Answering<E>);

enum Answering<E> {
    Ready(Option<Response<Body>>),
    Boxed(Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>),
}

impl<E> ResponseFuture<E> {
    pub(crate) fn ready(response: Response<Body>) -> Self {
        Self(Answering::Ready(Some(response)))
    }

    pub(crate) fn boxed(
        future: impl Future<Output = Result<Response<Body>, E>> + Send + 'static,
    ) -> Self {
        Self(Answering::Boxed(Box::pin(future)))
    }
}

impl<E> Future for ResponseFuture<E> {
    type Output = Result<Response<Body>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            Answering::Ready(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("a ResponseFuture was polled after it completed"),
            },
            Answering::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

impl<E> fmt::Debug for ResponseFuture<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.0 {
            Answering::Ready(_) => "ready",
            Answering::Boxed(_) => "boxed",
        };
        f.debug_tuple("ResponseFuture").field(&state).finish()
    }
}

/// What the layer can wrap: a service answering `Request<Body>` with a response whose body
/// yields `Bytes`, cloneable and sendable (a miss may be refreshed in the background).
pub(crate) trait Inner<B>:
    Service<Request<Body>, Response = Response<B>, Future: Send, Error: Send> + Clone + Send + 'static
{
}

impl<S, B> Inner<B> for S where
    S: Service<Request<Body>, Response = Response<B>, Future: Send, Error: Send>
        + Clone
        + Send
        + 'static
{
}

/// The body of a response the layer can store or pass on.
pub(crate) trait ResponseBody:
    http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

impl<B> ResponseBody for B where
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static
{
}

impl<S, B> Service<Request<Body>> for ResponseCache<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        Arc::clone(&self.shared).serve(&mut self.inner, request)
    }
}
