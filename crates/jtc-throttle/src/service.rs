//! `Throttle<S>`: checks the limit, then calls the inner service or answers 429.

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use axum::body::Body;
use bytes::Bytes;
use http::{Extensions, HeaderMap, Method, Request, Response, Uri};
use tower::{BoxError, Service};

use crate::{
    future::{Finish, ResponseFuture},
    limiter::{Check, Decision, Outcome},
    meters::{RouteMeter, Verdict},
    settings::Counting,
    shared::Shared,
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

/// What a custom [`key_fn`](crate::ThrottleLayer::key_fn) and a
/// [`dynamic`](crate::ThrottleLayer::dynamic) layer's function see of a request.
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

impl<S> fmt::Debug for Throttle<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("prefix", &self.shared.counters.prefix)
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

    // Kept out of axum's `MapIntoResponse::call`: inlined there (as one build of unrelated code
    // chose), the request and the future were moved through its larger frame — 82 more
    // instructions per flooded request by callgrind, 17 per admitted one.
    #[inline(never)]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let meter = shared.counters.meters.route(&request);
        let Some(counting) = shared.counting(&request) else {
            meter.count(Verdict::Uncounted);
            return ResponseFuture::inner(self.inner.call(request), None);
        };
        let now = shared.counters.clock.now_ms();
        let cache = match shared
            .counters
            .check(shared.plan(&counting), &counting.key, now)
        {
            // Decided in process (memory, or the deny cache): no clone of the inner service,
            // no box, nothing sent to a store.
            Check::Decided(decision) => return self.respond(request, counting, decision, &meter),
            Check::Store(cache) => cache,
        };
        // Counting in a cache waits for it before calling the inner service, so the service
        // that was polled ready moves into the future and a clone stays behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = Arc::clone(shared);
        ResponseFuture::boxed(async move {
            let counters = &shared.counters;
            let plan = shared.plan(&counting);
            let outcome = counters.in_cache(&cache, plan, &counting.key, now).await;
            meter.count(outcome.verdict());
            if let Outcome::Decided(decision) = &outcome {
                shared.trace(&counting, decision);
            }
            match outcome {
                Outcome::Decided(decision) if decision.allowed => {
                    let unmatched = counting.key.lacks_route();
                    let mut response = inner.call(request).await?.map(Body::new);
                    let dynamic = counting.dynamic.as_deref();
                    shared
                        .responder
                        .finish(&mut response, dynamic, &decision, unmatched);
                    Ok(response)
                }
                Outcome::Decided(decision) => {
                    let plan = shared.plan(&counting);
                    Ok(shared
                        .responder
                        .limited(&request, &counting, plan, &decision))
                }
                Outcome::Uncounted => inner.call(request).await.map(|r| r.map(Body::new)),
                Outcome::Unavailable => Ok(shared.responder.unavailable(request.headers())),
            }
        })
    }
}

impl<S> Throttle<S> {
    // Inlined into `call`: the request and the future are then built in place, not copied
    // through another frame (~170 instructions of `memcpy` per request, by callgrind).
    #[inline(always)]
    fn respond<ReqBody>(
        &mut self,
        request: Request<ReqBody>,
        counting: Counting,
        decision: Decision,
        meter: &RouteMeter,
    ) -> ResponseFuture<S::Future, S::Error>
    where
        S: Service<Request<ReqBody>>,
    {
        meter.count(Verdict::of(&decision));
        self.shared.trace(&counting, &decision);
        if decision.allowed {
            let finish = Finish {
                decision,
                unmatched: counting.key.lacks_route(),
                dynamic: counting.dynamic,
                shared: Arc::clone(&self.shared),
            };
            ResponseFuture::inner(self.inner.call(request), Some(finish))
        } else {
            let plan = self.shared.plan(&counting);
            ResponseFuture::ready(
                self.shared
                    .responder
                    .limited(&request, &counting, plan, &decision),
            )
        }
    }
}
