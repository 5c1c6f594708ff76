//! The 429 response and the rate-limit headers.

use std::{cell::RefCell, sync::Arc, time::Duration};

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};

use crate::{
    limiter::Decision,
    pages::{Page, number, slow_number},
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
    /// The requests allowed per window by the limit that rejected.
    pub limit: u64,
    /// Seconds until the client may retry (rounded up, at least 1): the `Retry-After` value.
    pub retry_after_secs: u64,
    /// The Unix time (seconds) the client may retry: the `X-RateLimit-Reset` value.
    pub reset_at: u64,
    /// The key the request was counted under: a [`Limit::by`](crate::Limit::by) key, a custom
    /// key, or `<client>:<route>`. It may hold personal data (an e-mail address): log it with
    /// care.
    pub key: String,
    /// The client as the layer identified it (`203.0.113.9`, `2001:db8::/64`).
    pub client: String,
    /// The matched route template (`/users/{id}`), or `(unmatched)`.
    pub route: String,
    /// The name of the limit that rejected ([`Limit::name`](crate::Limit::name)).
    pub policy: String,
    /// The locale negotiated from `Accept-Language` (`en`, `pt_BR`, or one the app
    /// registered with [`translations`](crate::ThrottleLayer::translations)).
    pub locale: String,
    /// The translated message for that locale.
    pub message: String,
}

/// What a custom [`on_unavailable`](crate::ThrottleLayer::on_unavailable) hook knows: the
/// store is down and the policy is [`FailClosed`](crate::StoreErrorPolicy::FailClosed).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Unavailable {
    /// The locale negotiated from `Accept-Language`.
    pub locale: String,
    /// The translated message for that locale.
    pub message: String,
}

/// A hook that builds the 429 response; the layer adds the rate-limit headers to it.
pub(crate) type OnLimited = Arc<dyn Fn(&Limited) -> Response<Body> + Send + Sync>;
/// A hook that builds the fail-closed response.
pub(crate) type OnUnavailable = Arc<dyn Fn(&Unavailable) -> Response<Body> + Send + Sync>;

/// Who and what a rejection is about.
pub(crate) struct Context {
    pub(crate) key: String,
    pub(crate) client: String,
    pub(crate) route: String,
    pub(crate) policy: String,
}

/// Whole seconds until the reset, rounded up from its whole milliseconds: the IETF `t=`.
/// (Worked out from the seconds and the millisecond part, not `as_millis`: that one is a
/// 128-bit number, and its division a library call on every rejection.)
fn reset_secs(reset_after: Duration) -> u64 {
    let part = u64::from(reset_after.subsec_millis() > 0);
    reset_after.as_secs().saturating_add(part)
}

/// Seconds to wait, rounded up, never 0: a client told "retry after 0" retries at once.
pub(crate) fn retry_after_secs(reset_after: Duration) -> u64 {
    reset_secs(reset_after).max(1)
}

/// What a hook is told about a rejection.
pub(crate) fn limited(decision: &Decision, context: Context, page: &Page) -> Limited {
    let retry_after_secs = retry_after_secs(decision.reset_after);
    Limited {
        limit: decision.limit,
        retry_after_secs,
        reset_at: decision.at_ms / 1000 + retry_after_secs,
        key: context.key,
        client: context.client,
        route: context.route,
        policy: context.policy,
        message: page.too_many.clone(),
        locale: page.locale.clone(),
    }
}

/// The default 429: `{"error": "<message>", "retry_after": <seconds>, "limit": <n>}`, from
/// the locale's prepared page, with its `Content-Length`; the caller adds the rate-limit
/// headers. Returns the body's bytes too, for [`Repeat429::answer`].
pub(crate) fn too_many_requests(page: &Page, decision: &Decision) -> (Response<Body>, Bytes) {
    let retry = retry_after_secs(decision.reset_after);
    let body = page.too_many_body(retry, decision.limit);
    let mut response = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        Body::from(body.clone()),
        page,
    );
    // Set here, not by the router after us, so that a repeated 429 carries it already.
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, number(body.len() as u64));
    (response, body)
}

/// What makes two default 429s the same bytes: the layer, the locale's page and the figures
/// of the rejecting decision. (The limits' names in the IETF fields are the layer's own when
/// they are fixed; a caller must not repeat a 429 whose plan was decided per request and
/// that carries those fields.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Repeat429 {
    layer: u64,
    page: usize,
    limit: u64,
    remaining: u64,
    /// Whole seconds until the reset, rounded up (`Retry-After` and the IETF `t=`).
    reset_secs: u64,
    /// The clock's second: with `reset_secs`, `X-RateLimit-Reset`.
    at_secs: u64,
    policy: usize,
}

/// A finished 429, kept for copies: its head (status and headers; cloned whole, which costs
/// less than a fresh response given a copy of the headers) and its body.
type Kept = (Response<()>, Bytes);

thread_local! {
    /// The key of the last default 429 this thread made, and that answer itself once the key
    /// came twice in a row.
    static LAST_429: RefCell<Option<(Repeat429, Option<Kept>)>> = const { RefCell::new(None) };
}

impl Repeat429 {
    pub(crate) fn new(layer: u64, page: &Page, decision: &Decision) -> Self {
        Self {
            layer,
            page: std::ptr::from_ref(page) as usize,
            limit: decision.limit,
            remaining: decision.remaining,
            reset_secs: reset_secs(decision.reset_after),
            at_secs: decision.at_ms / 1000,
            policy: decision.policy,
        }
    }

    /// The 429 of this key: a copy of the last one this thread made when it kept one of this
    /// key, else `make`'s fresh answer (its response and body). In a flood every rejection of
    /// one client within a second is the same answer: copying the finished header map costs a
    /// fraction of inserting its seven fields again (each insert hashes the field's name).
    ///
    /// A fresh answer is kept (a clone of its header map: an allocation) only when its key is
    /// the one noted last, so that a flood of many clients whose answers differ — each window
    /// resets at its own second — pays a comparison for the copies it cannot use, not a clone
    /// per rejection. `make` must not answer a 429 itself (it runs with this thread's copy
    /// borrowed).
    pub(crate) fn answer(self, make: impl FnOnce() -> (Response<Body>, Bytes)) -> Response<Body> {
        LAST_429.with_borrow_mut(|last| {
            let noted = match last {
                Some((key, kept)) if *key == self => Some(kept),
                _ => None,
            };
            if let Some(Some((head, body))) = &noted {
                return head.clone().map(|()| Body::from(body.clone()));
            }
            let (response, body) = make();
            let kept = noted.map(|_| {
                let mut head = Response::new(());
                *head.status_mut() = response.status();
                *head.headers_mut() = response.headers().clone();
                (head, body)
            });
            *last = Some((self, kept));
            response
        })
    }
}

/// What an `on_unavailable` hook is told.
pub(crate) fn unavailable(page: &Page) -> Unavailable {
    Unavailable {
        message: page.unavailable.clone(),
        locale: page.locale.clone(),
    }
}

/// The default 503 of the fail-closed store-error policy: `{"error": "<message>"}`.
pub(crate) fn service_unavailable(page: &Page) -> Response<Body> {
    let body = serde_json::json!({ "error": page.unavailable }).to_string();
    json_response(StatusCode::SERVICE_UNAVAILABLE, Body::from(body), page)
}

fn json_response(status: StatusCode, body: Body, page: &Page) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    // Room for these and the rate-limit headers at once, instead of growing on the way.
    headers.reserve(8);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(language) = &page.content_language {
        headers.insert(header::CONTENT_LANGUAGE, language.clone());
    }
    response
}

/// Adds this limiter's headers, unless the response already carries a more restrictive
/// limiter's (a per-route layer inside a global one): the tighter figures win.
pub(crate) fn add_headers(
    headers: &mut HeaderMap,
    decision: &Decision,
    limit: Option<&HeaderValue>,
) {
    // One lookup of `X-RateLimit-Remaining` writes ours and hands back a tighter inner
    // limiter's figure, if any (a custom header name costs a hash of its bytes per lookup);
    // only then, rarely, a second one puts that figure back.
    let previous = headers.insert(X_RATELIMIT_REMAINING, number(decision.remaining));
    let existing = previous
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if existing.is_some_and(|remaining| remaining <= decision.remaining) {
        if let Some(previous) = previous {
            headers.insert(X_RATELIMIT_REMAINING, previous);
        }
        return;
    }
    let limit = match limit {
        Some(value) => value.clone(),
        None => number(decision.limit),
    };
    headers.insert(X_RATELIMIT_LIMIT, limit);
    if decision.allowed {
        if existing.is_some() {
            // A looser limiter's rejection figures would contradict ours.
            headers.remove(X_RATELIMIT_RESET);
            headers.remove(header::RETRY_AFTER);
        }
    } else {
        let retry = retry_after_secs(decision.reset_after);
        headers.insert(
            X_RATELIMIT_RESET,
            slow_number(decision.at_ms / 1000 + retry),
        );
        headers.insert(header::RETRY_AFTER, number(retry));
    }
}

/// The IETF draft fields: `RateLimit-Policy` lists every limit, `RateLimit` the tightest's
/// state. Like the `X-RateLimit-*` headers, a tighter limiter's fields are kept.
pub(crate) fn add_ietf_headers(
    headers: &mut HeaderMap,
    policy: Option<HeaderValue>,
    name: &str,
    decision: &Decision,
) {
    let ours = headers
        .get(&X_RATELIMIT_REMAINING)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        == Some(decision.remaining);
    if !ours {
        return;
    }
    let reset = reset_secs(decision.reset_after);
    let state = format!(
        "\"{}\";r={};t={reset}",
        crate::limiter::quoted(name),
        decision.remaining
    );
    if let (Some(policy), Ok(state)) = (policy, HeaderValue::from_str(&state)) {
        headers.insert(RATELIMIT_POLICY, policy);
        headers.insert(RATELIMIT, state);
    }
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
    fn reset_seconds_round_up_whole_milliseconds() {
        let cases = [
            Duration::ZERO,
            Duration::from_nanos(999_999),
            Duration::from_millis(1),
            Duration::from_micros(2_000_500),
            Duration::from_millis(59_999),
            Duration::from_secs(60),
            Duration::new(u64::MAX / 1_000, 999_999_999),
        ];
        for d in cases {
            assert_eq!(
                u128::from(reset_secs(d)),
                d.as_millis().div_ceil(1000),
                "{d:?}"
            );
        }
        assert_eq!(reset_secs(Duration::MAX), u64::MAX);
    }

    #[test]
    fn the_tighter_limiter_wins() {
        let decision = |limit, remaining| Decision {
            allowed: true,
            limit,
            remaining,
            reset_after: Duration::from_secs(10),
            at_ms: 0,
            policy: 0,
        };
        let mut headers = HeaderMap::new();
        add_headers(&mut headers, &decision(5, 1), None);
        add_headers(&mut headers, &decision(60, 59), None);
        assert_eq!(headers[&X_RATELIMIT_LIMIT], "5");
        assert_eq!(headers[&X_RATELIMIT_REMAINING], "1");
        add_headers(&mut headers, &decision(60, 0), None);
        assert_eq!(headers[&X_RATELIMIT_LIMIT], "60");
        assert_eq!(headers[&X_RATELIMIT_REMAINING], "0");
    }
}
