//! HTTP-level caching over [`jtc_cache`]: [`ResponseCacheLayer`] caches whole responses of the
//! routes it wraps by the rules of HTTP caching (RFC 9111, as a shared cache), in any jtc
//! driver — on Redis, every instance of an app serves what one of them stored.
//!
//! - **Key:** method (`HEAD` is answered from `GET`'s entry), path, the query's parameters in
//!   a canonical order, the app's own parts ([`ResponseCacheLayer::key`]), and the request
//!   fields the stored response's `Vary` names (`Vary: *` is never stored).
//! - **Stored** only when allowed: a status cacheable by default (200, 203, 204, 300, 301,
//!   308, 404, 405, 410, 414, 501) or explicit freshness; never with `no-store`, `private` or
//!   `Set-Cookie`, nor for a request with `Authorization` unless the response says `public`
//!   or `s-maxage`. Lifetime from `s-maxage`, else `max-age`, else `Expires`, else the
//!   layer's [`ttl`](ResponseCacheLayer::ttl).
//! - **Served** with `Age` and `X-Cache: hit`; `If-None-Match` (an `ETag` is made from the
//!   body when the handler sent none) and `If-Modified-Since` answered `304` from the cache; a
//!   request's `no-cache` runs the handler, `only-if-cached` answers `504` on a miss.
//! - **Stale while revalidate** ([`ResponseCacheLayer::stale_while_revalidate`]): a stale copy
//!   served at once (`X-Cache: stale`) while one request refreshes it in the background.
//! - **One fill per key:** concurrent misses wait for the first (bounded), in a process and,
//!   through the cache's fill lock, across instances.
//! - **An outage never fails a request:** the handler answers, and the error is logged (once
//!   per 10 s).
//!
//! - **Metrics** (feature `metrics`): [`metrics::REQUESTS`] by cache, route template and
//!   result; a `debug` span per request with the route template, never the URL.
//!
//! The crate depends on `jtc-cache` without its drivers: an app turns on the ones it uses.

mod answer;
mod entry;
mod flights;
mod layer;
pub mod metrics;
mod rules;
mod serve;
mod stored;
mod wire;

pub use layer::{
    DEFAULT_MAX_BODY, DEFAULT_TTL, ResponseCache, ResponseCacheLayer, ResponseFuture, X_CACHE,
};
