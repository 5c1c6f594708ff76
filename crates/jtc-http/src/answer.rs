//! A stored response turned into the answer to a request: `304`s, `HEAD`, `Age`, `X-Cache`.

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header, request::Parts};

use crate::{layer::X_CACHE, stored::Stored};

/// A stored response as the answer to `request`: `304` when its validators match, the body
/// left out for `HEAD`; with `Age` and `X-Cache: <how>` (`hit`, or `stale` while it is being
/// refreshed).
pub(crate) fn answer(stored: &Stored, request: &Parts, how: &'static str) -> Response<Body> {
    let mut headers = stored.header_map(2);
    headers.insert(header::AGE, age(stored.age()));
    headers.insert(X_CACHE, HeaderValue::from_static(how));
    let not_modified = match request.headers.get(header::IF_NONE_MATCH) {
        Some(tags) => tags.to_str().is_ok_and(|tags| {
            tags.split(',')
                .map(|t| t.trim().trim_start_matches("W/"))
                .any(|t| t == "*" || t == stored.etag().trim_start_matches("W/"))
        }),
        None if request.headers.contains_key(header::IF_MODIFIED_SINCE) => {
            modified_since(request, &headers)
        }
        None => false,
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

/// `Age: <seconds>`; under 100 s (most hits) a slice of a static table, not an allocation.
fn age(seconds: u64) -> HeaderValue {
    const DIGITS: &[u8; 200] = b"00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899";
    let Ok(small) = usize::try_from(seconds) else {
        return HeaderValue::from(seconds);
    };
    let digits = match small {
        0..=9 => &DIGITS[2 * small + 1..2 * small + 2],
        10..=99 => &DIGITS[2 * small..2 * small + 2],
        _ => return HeaderValue::from(seconds),
    };
    HeaderValue::from_maybe_shared(Bytes::from_static(digits))
        .unwrap_or_else(|_| HeaderValue::from(seconds))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_are_their_decimal_seconds() {
        for seconds in [0, 1, 9, 10, 42, 99, 100, 3_600, u64::MAX] {
            assert_eq!(age(seconds), seconds.to_string().as_str(), "{seconds}");
        }
    }
}
