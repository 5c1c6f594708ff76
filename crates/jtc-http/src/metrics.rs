//! The names of the response cache's metrics (feature `metrics`, through the `metrics`
//! facade: install any recorder, such as Prometheus's).

/// Counter: requests seen by a `ResponseCacheLayer`, labelled `cache` (the cache's name),
/// `route` (the matched route template, never the URL) and `result`: `hit` (served from the
/// cache), `stale` (a stale copy served while it is refreshed), `miss` (the handler answered
/// and the answer was stored), `uncacheable` (the handler answered and the answer may not be
/// stored: `no-store`, too large, a `POST`…) or `bypass` (a method the layer does not cache).
pub const REQUESTS: &str = "jtc_http_cache_requests_total";
