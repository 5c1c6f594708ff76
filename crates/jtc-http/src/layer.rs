//! `ResponseCacheLayer` and the service it wraps a handler in.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::body::Body;
use bytes::Bytes;
use http::{
    HeaderName, HeaderValue, Method, Request, Response, StatusCode, header, request::Parts,
};
use http_body_util::BodyExt;
use jtc_cache::Cache;
use tower::{BoxError, Layer, Service};

use crate::{
    rules::{Directives, Storable, storable, vary_names},
    stored::{self, Entry, Stored, key_of, selecting},
};

/// The header that says how a response was served: `hit`, `stale`, `miss` or `bypass`.
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");

/// Responses larger than this pass through uncached unless
/// [`max_body`](ResponseCacheLayer::max_body) says otherwise: 1 MiB.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// How long a response is kept when it names no lifetime of its own: 60 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// The route label of a request that matched no route (the layer wraps the router from
/// outside).
const UNMATCHED: &str = "(unmatched)";
/// How long a request waits for a concurrent request of the same key to fill the cache before
/// it runs the handler itself.
const FILL_WAIT: Duration = Duration::from_secs(10);

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

struct Shared {
    cache: Cache,
    ttl: Duration,
    /// How long past its lifetime a response may still be served while it is refreshed.
    stale: Duration,
    max_body: usize,
    methods: Vec<Method>,
    key: Option<KeyFn>,
    tags: Option<TagsFn>,
    flights: Flights,
    /// When the last outage was logged (Unix seconds): one line per 10 s at most.
    logged: AtomicU64,
}

impl fmt::Debug for ResponseCacheLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCacheLayer")
            .field("cache", &self.shared.cache.name())
            .field("ttl", &self.shared.ttl)
            .field("max_body", &self.shared.max_body)
            .field("methods", &self.shared.methods)
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
        Self {
            shared: Arc::new(Shared {
                cache: cache.without_compression(),
                ttl: DEFAULT_TTL,
                stale: Duration::ZERO,
                max_body: DEFAULT_MAX_BODY,
                methods: vec![Method::GET, Method::HEAD],
                key: None,
                tags: None,
                flights: Flights::default(),
                logged: AtomicU64::new(0),
            }),
        }
    }

    fn with(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Arc::try_unwrap(self.shared).unwrap_or_else(|shared| Shared {
            cache: shared.cache.clone(),
            ttl: shared.ttl,
            stale: shared.stale,
            max_body: shared.max_body,
            methods: shared.methods.clone(),
            key: shared.key.clone(),
            tags: shared.tags.clone(),
            flights: Flights::default(),
            logged: AtomicU64::new(0),
        });
        change(&mut shared);
        Self {
            shared: Arc::new(shared),
        }
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

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

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
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(&self.shared);
        Box::pin(shared.serve(inner, request))
    }
}

impl Shared {
    /// Answers `request`, in a span naming its route template (never the URL), and counts
    /// how it was served (feature `metrics`).
    async fn serve<S, B>(
        self: Arc<Self>,
        inner: S,
        request: Request<Body>,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Send,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use tracing::Instrument;
        // The template is shared, not copied: a clone of the matched path is a reference count.
        let matched = request
            .extensions()
            .get::<axum::extract::MatchedPath>()
            .cloned();
        let route = matched
            .as_ref()
            .map_or(UNMATCHED, axum::extract::MatchedPath::as_str);
        let span = tracing::debug_span!(
            "jtc_http.response_cache",
            route = %route,
            result = tracing::field::Empty
        );
        let (response, result) = Arc::clone(&self)
            .respond(inner, request)
            .instrument(span.clone())
            .await?;
        span.record("result", result);
        self.count(route, result);
        Ok(response)
    }

    #[cfg(feature = "metrics")]
    fn count(&self, route: &str, result: &'static str) {
        metrics::counter!(
            crate::metrics::REQUESTS,
            "cache" => self.cache.name().to_owned(),
            "route" => route.to_owned(),
            "result" => result,
        )
        .increment(1);
    }

    #[cfg(not(feature = "metrics"))]
    #[allow(clippy::unused_self)]
    fn count(&self, _route: &str, _result: &'static str) {}

    /// Answers `request` from the cache or the handler, and names how (the `result` of the
    /// metrics and the span).
    async fn respond<S, B>(
        self: Arc<Self>,
        mut inner: S,
        request: Request<Body>,
    ) -> Result<(Response<Body>, &'static str), S::Error>
    where
        S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send,
        S::Error: Send,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if !self.methods.contains(request.method()) {
            let response = inner.call(request).await?;
            return Ok((marked(response.map(Body::new), "bypass"), "bypass"));
        }
        let (parts, body) = request.into_parts();
        let asked = Directives::of(&parts.headers);
        let key = key_of(
            &parts.method,
            &parts.uri,
            self.key.as_ref().map(|k| k(&parts)).as_deref(),
        );
        let tags = self.tags.as_ref().map(|t| t(&parts)).unwrap_or_default();
        let mut entry = None;
        if !asked.no_cache {
            match stored::read(&self.cache, &tags, &key).await {
                Ok(None) => {}
                Ok(Some(found)) => match found.take_usable(&parts.headers) {
                    Ok(stored) if stored.is_fresh() => {
                        return Ok((answer(stored, &parts, "hit"), "hit"));
                    }
                    Ok(stored) => {
                        // Stale but within its window: served at once, refreshed behind.
                        let response = answer(stored, &parts, "stale");
                        tokio::spawn(Arc::clone(&self).refresh(inner, parts, key, tags));
                        return Ok((response, "stale"));
                    }
                    Err(found) => entry = Some(found),
                },
                Err(error) => self.outage(&error),
            }
            if asked.only_if_cached {
                let timeout = Response::builder()
                    .status(StatusCode::GATEWAY_TIMEOUT)
                    .body(Body::empty())
                    .unwrap_or_default();
                return Ok((marked(timeout, "miss"), "miss"));
            }
        }
        // The miss path's state (the fill, the handler's future, storing) is boxed apart: the
        // hit path's future stays small, and a hit allocates and copies only that.
        Box::pin(self.fill(inner, parts, body, asked, key, tags, entry)).await
    }

    /// A miss: the handler's answer, filled once per key (in process, then across
    /// instances), stored when it may be.
    #[allow(clippy::too_many_arguments)]
    async fn fill<S, B>(
        &self,
        mut inner: S,
        parts: Parts,
        body: Body,
        asked: Directives,
        key: String,
        tags: Vec<String>,
        mut entry: Option<Entry>,
    ) -> Result<(Response<Body>, &'static str), S::Error>
    where
        S: Service<Request<Body>, Response = Response<B>>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // One request of a key fills it; the others wait for it (bounded), then read it.
        let _flight = if asked.no_cache {
            None
        } else {
            let (flight, waited) = self.flights.enter(&key).await;
            if waited && let Ok(Some(found)) = stored::read(&self.cache, &tags, &key).await {
                match found.take_fresh(&parts.headers) {
                    Ok(stored) => return Ok((answer(stored, &parts, "hit"), "hit")),
                    Err(found) => entry = Some(found),
                }
            }
            flight
        };
        // Across instances: the cache's fill lock. Another instance filling this key is waited
        // for (bounded) and its answer served; without the lock (an outage) the handler runs.
        let mut filling = None;
        if !asked.no_cache {
            let fill = self.cache.lock(&format!("{key}:fill"), FILL_WAIT);
            match fill.try_acquire().await {
                Ok(Some(guard)) => filling = Some(guard),
                Ok(None) => {
                    if let Some(found) = self
                        .filled_elsewhere(&fill, &tags, &key, &parts.headers)
                        .await
                    {
                        return Ok((answer(found, &parts, "hit"), "hit"));
                    }
                }
                Err(error) => self.outage(&error),
            }
        }
        let request_head = parts.clone();
        let response = inner.call(Request::from_parts(parts, body)).await?;
        let (response, kept) = self
            .keep(response, asked, &request_head, &key, &tags, entry)
            .await;
        if let Some(guard) = filling
            && let Err(error) = guard.release().await
        {
            self.outage(&error);
        }
        let result = if kept { "miss" } else { "uncacheable" };
        Ok((marked(response, "miss"), result))
    }

    /// Runs the handler again for a stale entry and stores its answer — once per key at a
    /// time across instances (the fill lock; a refresh already under way elsewhere is left
    /// to finish).
    async fn refresh<S, B>(self: Arc<Self>, inner: S, parts: Parts, key: String, tags: Vec<String>)
    where
        S: Service<Request<Body>, Response = Response<B>>,
        S::Error: Send,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let fill = self.cache.lock(&format!("{key}:fill"), FILL_WAIT);
        let guard = match fill.try_acquire().await {
            Ok(Some(guard)) => guard,
            Ok(None) => return,
            Err(error) => return self.outage(&error),
        };
        let entry = stored::read(&self.cache, &tags, &key).await.ok().flatten();
        // A stale `HEAD` is refreshed with the `GET` whose entry it read.
        let mut parts = parts;
        parts.method = Method::GET;
        let request = Request::from_parts(parts.clone(), Body::empty());
        match tower::ServiceExt::oneshot(inner, request).await {
            Ok(response) => {
                let asked = Directives::default();
                drop(self.keep(response, asked, &parts, &key, &tags, entry).await);
            }
            Err(_) => {
                tracing::debug!("jtc-http: a background refresh failed; the stale copy stays")
            }
        }
        if let Err(error) = guard.release().await {
            self.outage(&error);
        }
    }

    /// The handler's `response` to the request `head`, stored under `key` when it may be
    /// (its variant added to `entry`), and returned to be sent.
    async fn keep<B>(
        &self,
        response: Response<B>,
        asked: Directives,
        head: &Parts,
        key: &str,
        tags: &[String],
        entry: Option<Entry>,
    ) -> (Response<Body>, bool)
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (mut answer_head, body) = response.into_parts();
        let small = http_body::Body::size_hint(&body)
            .upper()
            .is_some_and(|len| len <= self.max_body as u64);
        if head.method != Method::GET || !small {
            return (Response::from_parts(answer_head, Body::new(body)), false);
        }
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) => {
                let error: BoxError = error.into();
                tracing::warn!(error = %error, "jtc-http: the handler's body failed; answered without it");
                answer_head.status = StatusCode::BAD_GATEWAY;
                return (Response::from_parts(answer_head, Body::empty()), false);
            }
        };
        let authorized = head.headers.contains_key(header::AUTHORIZATION);
        let decided = storable(
            asked,
            authorized,
            answer_head.status,
            &answer_head.headers,
            self.ttl,
            SystemTime::now(),
        );
        let kept = matches!(decided, Storable::For(_));
        if let Storable::For(ttl) = decided {
            let stale = Directives::of(&answer_head.headers)
                .stale_while_revalidate
                .map_or(self.stale, Duration::from_secs);
            let stored = Stored::new(answer_head.status, &answer_head.headers, &bytes, ttl, stale);
            if !answer_head.headers.contains_key(header::ETAG)
                && let Ok(etag) = HeaderValue::from_str(&stored.etag)
            {
                answer_head.headers.insert(header::ETAG, etag);
            }
            let vary = vary_names(&answer_head.headers);
            let choice = selecting(&vary, &head.headers);
            let mut entry = entry.unwrap_or_default();
            entry.add(vary, choice, stored);
            if let Err(error) = stored::write(&self.cache, tags, key, &entry).await {
                self.outage(&error);
            }
        }
        (Response::from_parts(answer_head, Body::from(bytes)), kept)
    }

    /// Waits for the instance holding `fill` to store `key`: its response for `headers`, or
    /// `None` when it let go without storing one or [`FILL_WAIT`] ran out.
    async fn filled_elsewhere(
        &self,
        fill: &jtc_cache::Lock,
        tags: &[String],
        key: &str,
        headers: &http::HeaderMap,
    ) -> Option<Stored> {
        let deadline = tokio::time::Instant::now() + FILL_WAIT;
        let mut pause = Duration::from_millis(5);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
            if let Ok(Some(entry)) = stored::read(&self.cache, tags, key).await
                && let Ok(stored) = entry.take_fresh(headers)
            {
                return Some(stored);
            }
            if !matches!(fill.owner().await, Ok(Some(_))) {
                return None;
            }
        }
        None
    }

    /// Logs that the cache could not be reached (the request is answered by the handler
    /// anyway), at most once per 10 seconds.
    fn outage(&self, error: &jtc_cache::Error) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.logged.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(error = %error, "jtc-http: the response cache is unavailable; handlers answer");
        }
    }
}

/// A stored response as the answer to `request`: `304` when its validators match, the body
/// left out for `HEAD`; with `Age` and `X-Cache: <how>` (`hit`, or `stale` while it is being
/// refreshed).
fn answer(stored: Stored, request: &Parts, how: &'static str) -> Response<Body> {
    let mut headers = stored.header_map();
    headers.insert(header::AGE, HeaderValue::from(stored.age()));
    headers.insert(X_CACHE, HeaderValue::from_static(how));
    let not_modified = match request.headers.get(header::IF_NONE_MATCH) {
        Some(tags) => tags.to_str().is_ok_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t == stored.etag.trim_start_matches("W/"))
        }),
        None => modified_since(request, &headers),
    };
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = if not_modified && status == StatusCode::OK {
        headers.remove(header::CONTENT_LENGTH);
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else if request.method == Method::HEAD {
        // The length `GET` would send, and no body.
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(stored.body.len()));
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        response
    } else {
        let mut response = Response::new(Body::from(Bytes::from(stored.body)));
        *response.status_mut() = status;
        response
    };
    *response.headers_mut() = headers;
    response
}

/// `If-Modified-Since` (only without `If-None-Match`): not modified when the stored response's
/// `Last-Modified` is no later than the date the client holds.
fn modified_since(request: &Parts, stored: &http::HeaderMap) -> bool {
    let date = |value: Option<&HeaderValue>| {
        value
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
    };
    match (
        date(request.headers.get(header::IF_MODIFIED_SINCE)),
        date(stored.get(header::LAST_MODIFIED)),
    ) {
        (Some(held), Some(last)) => last <= held,
        _ => false,
    }
}

fn marked(mut response: Response<Body>, how: &'static str) -> Response<Body> {
    response
        .headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(how));
    response
}

/// In-process single flight: the first miss of a key holds its flight while the handler runs;
/// later misses of the key wait for it (at most [`FILL_WAIT`]) and then read the cache.
#[derive(Default)]
struct Flights {
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A flight held; dropping it lets the waiters go and forgets the key when none is left.
struct Flight<'a> {
    flights: &'a Flights,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut held = self
            .flights
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if held
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            held.remove(&self.key);
        }
    }
}

impl Flights {
    /// Takes `key`'s flight, waiting for one in progress; says whether it waited.
    async fn enter(&self, key: &str) -> (Option<Flight<'_>>, bool) {
        let mutex = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(held.entry(key.to_owned()).or_default())
        };
        let (guard, waited) = match Arc::clone(&mutex).try_lock_owned() {
            Ok(guard) => (Some(guard), false),
            Err(_) => (
                tokio::time::timeout(FILL_WAIT, Arc::clone(&mutex).lock_owned())
                    .await
                    .ok(),
                true,
            ),
        };
        drop(mutex);
        let flight = Flight {
            flights: self,
            key: key.to_owned(),
            guard,
        };
        (Some(flight), waited)
    }
}
