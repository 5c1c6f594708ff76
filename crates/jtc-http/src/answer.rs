//! A stored response turned into the answer to a request: `304`s, `HEAD`, `Age`, `X-Cache`.

use axum::body::Body;
use http::{HeaderValue, Method, Response, StatusCode, header, request::Parts};

use crate::{layer::X_CACHE, stored::Stored};

/// A stored response as the answer to `request`: `304` when its validators match, the body
/// left out for `HEAD`; with `Age` and `X-Cache: <how>` (`hit`, or `stale` while it is being
/// refreshed).
pub(crate) fn answer(stored: &Stored, request: &Parts, how: &'static str) -> Response<Body> {
    let mut headers = stored.header_map(2);
    headers.insert(header::AGE, HeaderValue::from(stored.age()));
    headers.insert(X_CACHE, HeaderValue::from_static(how));
    let not_modified = match request.headers.get(header::IF_NONE_MATCH) {
        Some(tags) => tags.to_str().is_ok_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t == stored.etag().trim_start_matches("W/"))
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
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(stored.body_len()));
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        response
    } else {
        let mut response = Response::new(Body::from(stored.body()));
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

pub(crate) fn marked(mut response: Response<Body>, how: &'static str) -> Response<Body> {
    response
        .headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(how));
    response
}
