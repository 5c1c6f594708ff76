//! How the response cache answers a request: lookup, stale copies refreshed behind, one fill
//! per key (in process, then across instances), storing what may be stored, outages.

use std::{
    sync::{Arc, atomic::Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

use axum::{body::Body, extract::MatchedPath};
use http::{HeaderValue, Method, Request, Response, StatusCode, header, request::Parts};
use http_body_util::BodyExt;
use tower::{BoxError, Service};

use crate::{
    answer::{answer, marked},
    entry::{self, Entry, Found, selecting},
    layer::{FILL_WAIT, Inner, ResponseBody, ResponseFuture, Shared, UNMATCHED},
    rules::{Directives, Storable, storable, vary_names},
    stored::{Stored, key_of},
};

pin_project_lite::pin_project! {
    /// A request being answered inside its span: when `answering` ends, its result goes into
    /// the span and the metrics. (The span is entered here rather than through
    /// `tracing::Instrument`: one wrapper fewer to move the future through.)
    struct Served<F> {
        #[pin]
        answering: F,
        span: tracing::Span,
        shared: Arc<Shared>,
        route: Option<MatchedPath>,
    }
}

impl<F, E> Future for Served<F>
where
    F: Future<Output = Result<(Response<Body>, &'static str), E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answered = {
            let _entered = this.span.enter();
            std::task::ready!(this.answering.poll(cx))
        };
        let (response, result) = answered?;
        this.span.record("result", result);
        this.shared.count(route_of(this.route.as_ref()), result);
        Poll::Ready(Ok(response))
    }
}

/// The service `inner` is, to move into a future that calls it: the ready one goes, a clone
/// stays.
fn take<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

fn route_of(matched: Option<&MatchedPath>) -> &str {
    matched.map_or(UNMATCHED, MatchedPath::as_str)
}

impl Shared {
    /// Answers `request`, in a span naming its route template (never the URL), and counts
    /// how it was served (feature `metrics`).
    ///
    /// What the request is looked up by (key, tags, its directives) is worked out here,
    /// before the future is made: the future then holds each part once, which keeps it
    /// small enough for the allocator's fast path.
    ///
    /// A fresh hit the cache has at hand (`Cache::get_bytes_now`: the array driver, the file
    /// driver's page cache, a Redis near cache's copy) is answered here, before any future
    /// exists; everything else is boxed with the service `inner` was (its clone stays
    /// behind), and with what was read here, so that no request reads the cache twice.
    pub(crate) fn serve<S, B>(
        self: Arc<Self>,
        inner: &mut S,
        request: Request<Body>,
    ) -> ResponseFuture<S::Error>
    where
        S: Inner<B>,
        B: ResponseBody,
    {
        // Made only when a subscriber wants it: a disabled span still costs its log-crate
        // checks on every poll (axum turns on tracing's `log` feature).
        let spanned = tracing::enabled!(tracing::Level::DEBUG);
        // The route template, for the span and the metric only (looked up when one wants it);
        // shared, not copied: a clone of the matched path is a reference count.
        let route = (spanned || cfg!(feature = "metrics"))
            .then(|| request.extensions().get::<MatchedPath>().cloned())
            .flatten();
        let span = if spanned {
            tracing::debug_span!(
                "jtc_http.response_cache",
                route = %route_of(route.as_ref()),
                result = tracing::field::Empty
            )
        } else {
            tracing::Span::none()
        };
        if !self.settings.methods.contains(request.method()) {
            return ResponseFuture::boxed(Served {
                answering: bypass(take(inner), request),
                span,
                shared: self,
                route,
            });
        }
        let (parts, body) = request.into_parts();
        let asked = Directives::of(&parts.headers);
        let key = key_of(
            &parts.method,
            &parts.uri,
            self.settings.key.as_ref().map(|k| k(&parts)).as_deref(),
        );
        let tags = self
            .settings
            .tags
            .as_ref()
            .map(|t| t(&parts))
            .unwrap_or_default();
        let mut known = None;
        if !asked.no_cache && tags.is_empty() {
            let _entered = span.enter();
            match self.settings.cache.get_bytes_now(&key) {
                Some(Ok(Some(bytes))) => {
                    let found = Found(bytes);
                    if let Some(stored) = found.fresh(&parts.headers) {
                        let response = answer(&stored, &parts, "hit");
                        span.record("result", "hit");
                        self.count(route_of(route.as_ref()), "hit");
                        return ResponseFuture::ready(response);
                    }
                    known = Some(Ok(Some(found)));
                }
                read => known = read.map(|read| read.map(|bytes| bytes.map(Found))),
            }
        }
        let answering =
            Arc::clone(&self).respond(take(inner), parts, body, asked, key, tags, known);
        ResponseFuture::boxed(Served {
            answering,
            span,
            shared: self,
            route,
        })
    }

    #[cfg(feature = "metrics")]
    fn count(&self, route: &str, result: &'static str) {
        metrics::counter!(
            crate::metrics::REQUESTS,
            "cache" => self.settings.cache.name().to_owned(),
            "route" => route.to_owned(),
            "result" => result,
        )
        .increment(1);
    }

    #[cfg(not(feature = "metrics"))]
    #[allow(clippy::unused_self)]
    fn count(&self, _route: &str, _result: &'static str) {}

    /// Answers a request from the cache or the handler, and names how (the `result` of the
    /// metrics and the span).
    ///
    /// A function returning an `async` block, not an `async fn`: an `async fn` keeps each
    /// argument twice in its future (as passed, and moved into the body), which made this
    /// future 1.2 KB, past the allocator's fast bins (816 bytes now).
    #[allow(
        clippy::manual_async_fn,
        reason = "an async fn doubles the arguments' space"
    )]
    #[allow(clippy::too_many_arguments)]
    fn respond<S, B>(
        self: Arc<Self>,
        inner: S,
        parts: Parts,
        body: Body,
        asked: Directives,
        key: String,
        tags: Vec<String>,
        known: Option<jtc_cache::Result<Option<Found>>>,
    ) -> impl Future<Output = Result<(Response<Body>, &'static str), S::Error>> + Send
    where
        S: Inner<B>,
        B: ResponseBody,
    {
        async move {
            let mut entry = None;
            if !asked.no_cache {
                let read = match known {
                    Some(read) => read,
                    None => entry::read(&self.settings.cache, &tags, &key).await,
                };
                match read {
                    Ok(None) => {}
                    Ok(Some(found)) => match found.usable(&parts.headers) {
                        Some(stored) if stored.is_fresh() => {
                            return Ok((answer(&stored, &parts, "hit"), "hit"));
                        }
                        Some(stored) => {
                            // Stale but within its window: served at once, refreshed behind.
                            let response = answer(&stored, &parts, "stale");
                            tokio::spawn(Arc::clone(&self).refresh(inner, parts, key, tags));
                            return Ok((response, "stale"));
                        }
                        None => entry = found.entry(),
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
        B: ResponseBody,
    {
        // One request of a key fills it; the others wait for it (bounded), then read it.
        let _flight = if asked.no_cache {
            None
        } else {
            let (flight, waited) = self.flights.enter(&key).await;
            if waited && let Ok(Some(found)) = entry::read(&self.settings.cache, &tags, &key).await
            {
                match found.fresh(&parts.headers) {
                    Some(stored) => return Ok((answer(&stored, &parts, "hit"), "hit")),
                    None => entry = found.entry(),
                }
            }
            Some(flight)
        };
        // Across instances: the cache's fill lock. Another instance filling this key is waited
        // for (bounded) and its answer served; without the lock (an outage) the handler runs.
        let mut filling = None;
        if !asked.no_cache {
            let fill = self.settings.cache.lock(&format!("{key}:fill"), FILL_WAIT);
            match fill.try_acquire().await {
                Ok(Some(guard)) => filling = Some(guard),
                Ok(None) => {
                    if let Some(found) = self
                        .filled_elsewhere(&fill, &tags, &key, &parts.headers)
                        .await
                    {
                        return Ok((answer(&found, &parts, "hit"), "hit"));
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
        S: Service<Request<Body>, Response = Response<B>, Error: Send>,
        B: ResponseBody,
    {
        let fill = self.settings.cache.lock(&format!("{key}:fill"), FILL_WAIT);
        let guard = match fill.try_acquire().await {
            Ok(Some(guard)) => guard,
            Ok(None) => return,
            Err(error) => return self.outage(&error),
        };
        let entry = entry::read(&self.settings.cache, &tags, &key)
            .await
            .ok()
            .flatten()
            .and_then(|found| found.entry());
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
        B: ResponseBody,
    {
        let (mut answer_head, body) = response.into_parts();
        let small = http_body::Body::size_hint(&body)
            .upper()
            .is_some_and(|len| len <= self.settings.max_body as u64);
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
            self.settings.ttl,
            SystemTime::now(),
        );
        let stale = Directives::of(&answer_head.headers)
            .stale_while_revalidate
            .map_or(self.settings.stale, Duration::from_secs);
        let stored = match decided {
            Storable::For(ttl) => {
                Stored::new(answer_head.status, &answer_head.headers, &bytes, ttl, stale)
            }
            Storable::No(_) => None,
        };
        let kept = stored.is_some();
        if let Some(stored) = stored {
            if !answer_head.headers.contains_key(header::ETAG)
                && let Ok(etag) = HeaderValue::from_str(stored.etag())
            {
                answer_head.headers.insert(header::ETAG, etag);
            }
            let vary = vary_names(&answer_head.headers);
            let choice = selecting(&vary, &head.headers);
            let mut entry = entry.unwrap_or_default();
            entry.add(vary, choice, stored);
            if let Err(error) = entry::write(&self.settings.cache, tags, key, &entry).await {
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
            if let Ok(Some(found)) = entry::read(&self.settings.cache, tags, key).await
                && let Some(stored) = found.fresh(headers)
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

/// A request whose method is not cached: the handler's answer, marked.
async fn bypass<S, B>(
    mut inner: S,
    request: Request<Body>,
) -> Result<(Response<Body>, &'static str), S::Error>
where
    S: Inner<B>,
    B: ResponseBody,
{
    let response = inner.call(request).await?;
    Ok((marked(response.map(Body::new), "bypass"), "bypass"))
}
