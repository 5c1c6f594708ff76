//! A rate limiter for Axum/Tower that stays exact when many app instances share one Redis.
//!
//! [`ThrottleLayer::new(max_requests, window_secs)`](ThrottleLayer::new) limits each client
//! on each route. Alone it counts in process memory (bounded); with
//! [`.with_cache(cache)`](ThrottleLayer::with_cache) it counts in a [`jtc_cache::Cache`] —
//! file, Redis or Redis Cluster — with one atomic operation per request, so every instance
//! behind a load balancer shares one exact limit.
//!
//! - **Who**: the socket peer, or behind [trusted proxies](ThrottleLayer::trusted_proxies)
//!   the rightmost untrusted hop of the one header they write
//!   ([`X-Forwarded-For` or `Forwarded`](ThrottleLayer::forwarded_header)); IPv6 grouped by
//!   /64. Custom keys over 200 bytes are counted under a digest, so no client-chosen key can
//!   be too long for a store or cost memory by its length.
//! - **What**: the matched route template, so `/users/1` … `/users/N` share a bucket.
//! - **Headers**: `X-RateLimit-Limit` and `X-RateLimit-Remaining` on every response; on a 429
//!   also `X-RateLimit-Reset` (Unix time) and `Retry-After` (seconds left, rounded up, at
//!   least 1). With a global and a per-route layer, the tighter figures win.
//! - **429 body**: JSON, translated by `Accept-Language` (`en`, `pt_BR`).
//! - **Limits**: [`Limit`]s per user or per plan decided per request
//!   ([`ThrottleLayer::dynamic`]), several at once ([`ThrottleLayer::with_limits`], all must
//!   admit, one store step per key), or parsed from `"10/second;1000/hour"` ([`Limits`]);
//!   fixed window, sliding window or token bucket ([`Algorithm`]).
//! - **Without the layer**: [`RateLimiter`] (`hit`, `check`, `clear`) over the same stores.
//! - **Floods**: over a cache, a rejected key is answered in process until it may pass, and
//!   concurrent requests of one key share a round trip.
//! - **Outages**: a [policy](StoreErrorPolicy) for when the cache is down, logged, and
//!   recovered from by itself.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
//! use http::{Request, StatusCode};
//! use jtc_throttle::ThrottleLayer;
//! use std::net::SocketAddr;
//! use tower::ServiceExt;
//!
//! let app = Router::new()
//!     .route("/users/{id}", get(|| async { "user" }))
//!     .layer(ThrottleLayer::new(2, 60));
//!
//! let request = |path: &str| {
//!     let mut request = Request::get(path).body(Body::empty()).unwrap();
//!     let peer: SocketAddr = "203.0.113.9:50000".parse().unwrap();
//!     request.extensions_mut().insert(ConnectInfo(peer)); // what axum::serve adds
//!     request
//! };
//! let first = app.clone().oneshot(request("/users/1")).await.unwrap();
//! assert_eq!(first.headers()["x-ratelimit-remaining"], "1");
//! let second = app.clone().oneshot(request("/users/2")).await.unwrap();
//! assert_eq!(second.headers()["x-ratelimit-remaining"], "0");
//! let third = app.clone().oneshot(request("/users/3")).await.unwrap(); // same route template
//! assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(third.headers()["retry-after"], "60");
//! # });
//! ```
//!
//! In a server, keep the peer address available to the layer:
//!
//! ```no_run
//! # async fn serve(app: axum::Router) -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
//! # }
//! ```
//!
//! # Features
//!
//! None of its own. It depends on `jtc-cache` without that crate's default features, so an
//! app that limits in memory compiles neither Redis nor rustls nor LZ4; enable `jtc-cache`'s
//! `redis` feature in your own dependency on it to count in Redis.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod future;
mod key;
mod lang;
mod layer;
mod limit;
mod limiter;
mod meters;
mod pages;
mod rate_limiter;
mod responder;
mod response;
mod service;
mod settings;
mod shared;

pub mod metrics {
    //! The names of the metrics a limiter reports through the
    //! [`metrics`](https://docs.rs/metrics) facade, with the cargo feature `metrics`.
    //!
    //! | name | type | labels |
    //! |---|---|---|
    //! | `jtc_throttle_requests_total` | counter | `limiter`, `route`, `result` |
    //! | `jtc_throttle_store_fallback_active` | gauge | `limiter` |
    //!
    //! `limiter` is the layer's [name](crate::ThrottleLayer::name); `route` the matched route
    //! template (`/users/{id}`, or `(unmatched)`), never the path, the client or a key;
    //! `result` is `allowed`, `limited`, `store_error` (the store failed and the fail-open or
    //! fail-closed policy answered) or `uncounted` (a method the layer skips, a key function
    //! that returned `None`, no limit at all). Under the default fall-back-to-memory policy,
    //! requests during an outage stay `allowed`/`limited` (counted in memory) while the gauge
    //! reads 1. Handles bind to the recorder installed when a route is first seen: install the
    //! recorder before serving. docs/observability.md shows the whole set-up.
    pub use crate::meters::{REQUESTS, STORE_FALLBACK_ACTIVE};
}

pub use future::ResponseFuture;
pub use key::{ForwardedHeader, MAX_KEY_TEXT_BYTES};
pub use layer::ThrottleLayer;
pub use limit::{Limit, Limits, ParseLimitError};
pub use limiter::{Algorithm, Decision};
pub use rate_limiter::{MemoryUsage, RateLimiter};
pub use response::{
    Limited, Unavailable, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};
pub use service::{RequestInfo, Throttle};

/// What a layer counting in a cache does while the cache cannot be reached.
///
/// Whatever the policy, the failure is logged (once, then a summary every 10 s), the cache is
/// left alone for a second after each failure (so a dead Redis does not add its timeout to
/// every request), and the layer goes back to the cache by itself when it answers again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorPolicy {
    /// Count in this process's memory meanwhile: each instance enforces the limit on its own.
    /// The default.
    #[default]
    FallbackToMemory,
    /// Let every request through uncounted.
    FailOpen,
    /// Answer 503 Service Unavailable.
    FailClosed,
}

impl StoreErrorPolicy {
    fn as_str(self) -> &'static str {
        match self {
            Self::FallbackToMemory => "fall back to memory",
            Self::FailOpen => "fail open",
            Self::FailClosed => "fail closed",
        }
    }
}
