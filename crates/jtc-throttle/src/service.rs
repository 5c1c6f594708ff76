//! `Throttle<S>`: checks the limit, then calls the inner service or answers 429.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use axum::body::Body;
use bytes::Bytes;
use http::{Extensions, HeaderMap, Method, Request, Response, Uri, header};
use jtc_cache::Cache;
use tower::{BoxError, Service};

use crate::{
    StoreErrorPolicy,
    future::ResponseFuture,
    key::{self, MemoryKey},
    lang,
    layer::Shared,
    limiter::{self, Decision},
    response,
};

/// The middleware [`ThrottleLayer`](crate::ThrottleLayer) wraps a service in.
///
/// A limited request is a response (429), not an error: `Error` is the inner service's, so
/// Axum needs no `HandleErrorLayer`.
#[derive(Clone)]
pub struct Throttle<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

/// What a custom [`key_fn`](crate::ThrottleLayer::key_fn) sees of a request.
#[derive(Debug)]
#[non_exhaustive]
pub struct RequestInfo<'a> {
    /// The client as the layer identified it (`203.0.113.9`, `2001:db8::/64`).
    pub client: &'a str,
    /// The matched route template (`/users/{id}`), or `(unmatched)`.
    pub route: &'a str,
    /// The request method.
    pub method: &'a Method,
    /// The request URI.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request extensions (an authenticated user put there by earlier middleware, say).
    pub extensions: &'a Extensions,
}

/// The limiter's verdict, store errors and policy included.
enum Outcome {
    Decided(Decision),
    Uncounted,
    Unavailable,
}

impl<S> fmt::Debug for Throttle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("prefix", &self.shared.prefix)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Throttle<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let now = shared.config.clock.now_ms();
        let Some(key) = shared.memory_key(&request) else {
            return ResponseFuture::inner(self.inner.call(request), None);
        };
        let Some(cache) = shared.config.cache.clone() else {
            // Counting in memory decides at once: no clone of the inner service, no box.
            let decision = shared.memory.hit(&key, shared.config.quota);
            return self.respond(request, decision, now);
        };
        // Counting in a cache waits for it before calling the inner service, so the service
        // that was polled ready moves into the future and a clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(shared);
        ResponseFuture::boxed(async move {
            match shared.decide(&cache, &key, now).await {
                Outcome::Decided(decision) if decision.allowed => {
                    let mut response = inner.call(request).await?.map(Body::new);
                    shared.add_headers(response.headers_mut(), &decision, now);
                    Ok(response)
                }
                Outcome::Decided(decision) => Ok(shared.limited(request.headers(), &decision, now)),
                Outcome::Uncounted => inner.call(request).await.map(|r| r.map(Body::new)),
                Outcome::Unavailable => Ok(response::service_unavailable(
                    shared.locale(request.headers()),
                )),
            }
        })
    }
}

impl<S> Throttle<S> {
    fn respond<ReqBody>(
        &mut self,
        request: Request<ReqBody>,
        decision: Decision,
        now: u64,
    ) -> ResponseFuture<S::Future, S::Error>
    where
        S: Service<Request<ReqBody>>,
    {
        if decision.allowed {
            let headers = Some((decision, now, Arc::clone(&self.shared)));
            ResponseFuture::inner(self.inner.call(request), headers)
        } else {
            ResponseFuture::ready(self.shared.limited(request.headers(), &decision, now))
        }
    }
}

impl Shared {
    /// What a request is counted under, or `None` when a custom key lets it through.
    fn memory_key<B>(&self, request: &Request<B>) -> Option<MemoryKey> {
        let client = self.config.identity.client(request);
        let route = key::route(request);
        let Some(key_fn) = &self.config.key_fn else {
            return Some(MemoryKey::Request(client, route));
        };
        let client = client.to_string();
        let info = RequestInfo {
            client: &client,
            route: route.as_str(),
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        };
        key_fn(&info).map(MemoryKey::Custom)
    }

    /// The key of a counter in the cache: `throttle:<name>:<client>:<route>`.
    fn cache_key(&self, key: &MemoryKey) -> String {
        match key {
            MemoryKey::Request(client, route) => {
                format!("{}{client}:{}", self.prefix, route.as_str())
            }
            MemoryKey::Custom(custom) => format!("{}{custom}", self.prefix),
        }
    }

    /// The decision of a layer counting in `cache`, with the store-error policy applied.
    async fn decide(&self, cache: &Cache, key: &MemoryKey, now: u64) -> Outcome {
        let quota = self.config.quota;
        let policy = self.config.on_store_error;
        if !self.failures.skip_store(now) {
            match limiter::hit_cache(cache, &*self.config.clock, &self.cache_key(key), quota).await
            {
                Ok(decision) => {
                    self.failures.succeeded();
                    return Outcome::Decided(decision);
                }
                Err(error) => self.failures.failed(now, &error, policy.as_str()),
            }
        }
        match policy {
            StoreErrorPolicy::FallbackToMemory => Outcome::Decided(self.memory.hit(key, quota)),
            StoreErrorPolicy::FailOpen => Outcome::Uncounted,
            StoreErrorPolicy::FailClosed => Outcome::Unavailable,
        }
    }

    /// The 429 for a rejected request: the hook's or the translated JSON, with headers.
    fn limited(&self, headers: &HeaderMap, decision: &Decision, now: u64) -> Response<Body> {
        let limited = response::limited(decision, now, self.locale(headers));
        let mut response = match &self.config.on_limited {
            Some(hook) => hook(&limited),
            None => response::too_many_requests(&limited),
        };
        self.add_headers(response.headers_mut(), decision, now);
        response
    }

    pub(crate) fn add_headers(&self, headers: &mut HeaderMap, decision: &Decision, now: u64) {
        let config = &self.config;
        response::add_headers(
            headers,
            decision,
            now,
            config.quota.window,
            config.ietf_headers,
        );
    }

    fn locale(&self, headers: &HeaderMap) -> &'static str {
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        lang::negotiate(accept, self.config.fallback_locale)
    }
}
