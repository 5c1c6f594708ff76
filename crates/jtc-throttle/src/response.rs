//! The 429 response and the rate-limit headers.

use std::{sync::Arc, time::Duration};

use axum::body::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};

use crate::{
    lang::{self, Catalogues},
    limiter::Decision,
};

/// `X-RateLimit-Limit`: the requests allowed per window.
pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`: the requests left in this window.
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset`: the Unix time (seconds) at which the window ends.
pub const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// What a custom [`on_limited`](crate::ThrottleLayer::on_limited) hook knows about a
/// rejected request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limited {
    /// The requests allowed per window.
    pub limit: u64,
    /// Seconds until the client may retry (rounded up, at least 1): the `Retry-After` value.
    pub retry_after_secs: u64,
    /// The Unix time (seconds) the window ends: the `X-RateLimit-Reset` value.
    pub reset_at: u64,
    /// The locale negotiated from `Accept-Language` (`en`, `pt_BR`, or one the app
    /// registered with [`translations`](crate::ThrottleLayer::translations)).
    pub locale: String,
    /// The translated message for that locale.
    pub message: String,
}

/// A hook that builds the 429 response; the layer adds the rate-limit headers to it.
pub(crate) type OnLimited = Arc<dyn Fn(&Limited) -> Response<Body> + Send + Sync>;

/// Seconds to wait, rounded up, never 0: a client told "retry after 0" retries at once.
pub(crate) fn retry_after_secs(reset_after: Duration) -> u64 {
    reset_after.as_millis().div_ceil(1000).max(1) as u64
}

pub(crate) fn limited(
    decision: &Decision,
    now_ms: u64,
    locale: String,
    catalogues: &Catalogues,
) -> Limited {
    let retry_after_secs = retry_after_secs(decision.reset_after);
    Limited {
        limit: decision.limit,
        retry_after_secs,
        reset_at: now_ms / 1000 + retry_after_secs,
        message: catalogues.translate(&locale, "http.too_many_requests"),
        locale,
    }
}

/// The default 429: `{"error": "<message>", "retry_after": <seconds>, "limit": <n>}`.
pub(crate) fn too_many_requests(limited: &Limited) -> Response<Body> {
    let body = serde_json::json!({
        "error": limited.message,
        "retry_after": limited.retry_after_secs,
        "limit": limited.limit,
    });
    json_response(StatusCode::TOO_MANY_REQUESTS, &body, &limited.locale)
}

/// The 503 of the fail-closed store-error policy.
pub(crate) fn service_unavailable(locale: &str, catalogues: &Catalogues) -> Response<Body> {
    let message = catalogues.translate(locale, "http.service_unavailable");
    let body = serde_json::json!({ "error": message });
    json_response(StatusCode::SERVICE_UNAVAILABLE, &body, locale)
}

fn json_response(status: StatusCode, body: &serde_json::Value, locale: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(language) = HeaderValue::from_str(&lang::content_language(locale)) {
        headers.insert(header::CONTENT_LANGUAGE, language);
    }
    response
}

/// Adds this limiter's headers, unless the response already carries a more restrictive
/// limiter's (a per-route layer inside a global one): the tighter figures win.
pub(crate) fn add_headers(
    headers: &mut HeaderMap,
    decision: &Decision,
    now_ms: u64,
    window: Duration,
    ietf: bool,
) {
    let existing = headers
        .get(&X_RATELIMIT_REMAINING)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if existing.is_some_and(|remaining| remaining <= decision.remaining) {
        return;
    }
    headers.insert(X_RATELIMIT_LIMIT, number(decision.limit));
    headers.insert(X_RATELIMIT_REMAINING, number(decision.remaining));
    if decision.allowed {
        if existing.is_some() {
            // A looser limiter's rejection figures would contradict ours.
            headers.remove(X_RATELIMIT_RESET);
            headers.remove(header::RETRY_AFTER);
        }
    } else {
        let retry = retry_after_secs(decision.reset_after);
        headers.insert(X_RATELIMIT_RESET, number(now_ms / 1000 + retry));
        headers.insert(header::RETRY_AFTER, number(retry));
    }
    if ietf {
        let reset = decision.reset_after.as_millis().div_ceil(1000);
        let window = window.as_secs().max(1);
        let policy = format!("\"default\";q={};w={window}", decision.limit);
        let state = format!("\"default\";r={};t={reset}", decision.remaining);
        if let (Ok(policy), Ok(state)) = (
            HeaderValue::from_str(&policy),
            HeaderValue::from_str(&state),
        ) {
            headers.insert(RATELIMIT_POLICY, policy);
            headers.insert(RATELIMIT, state);
        }
    }
}

fn number(n: u64) -> HeaderValue {
    HeaderValue::from(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_and_is_never_zero() {
        assert_eq!(retry_after_secs(Duration::from_millis(700)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2_000)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2_001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn the_tighter_limiter_wins() {
        let decision = |limit, remaining| Decision {
            allowed: true,
            limit,
            remaining,
            reset_after: Duration::from_secs(10),
        };
        let mut headers = HeaderMap::new();
        add_headers(
            &mut headers,
            &decision(5, 1),
            0,
            Duration::from_secs(60),
            false,
        );
        add_headers(
            &mut headers,
            &decision(60, 59),
            0,
            Duration::from_secs(60),
            false,
        );
        assert_eq!(headers[&X_RATELIMIT_LIMIT], "5");
        assert_eq!(headers[&X_RATELIMIT_REMAINING], "1");
        add_headers(
            &mut headers,
            &decision(60, 0),
            0,
            Duration::from_secs(60),
            false,
        );
        assert_eq!(headers[&X_RATELIMIT_LIMIT], "60");
        assert_eq!(headers[&X_RATELIMIT_REMAINING], "0");
    }
}
