//! A stored response turned into the answer to a request: `304`s, `HEAD`, `Age`, `X-Cache`.

use std::cell::RefCell;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header, request::Parts};

use crate::{
    layer::X_CACHE,
    stored::{self, Stored},
};

/// A stored response as the answer to `request`: `304` when its validators match, the body
/// left out for `HEAD`; with `Age` and `X-Cache: <how>` (`hit`, or `stale` while it is being
/// refreshed).
pub(crate) fn answer(stored: &Stored, request: &Parts, how: &'static str) -> Response<Body> {
    let mut headers = answer_fields(stored);
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
        // The length `GET` would send (already among the fields), and no body.
        if !status_has_length(status) {
            headers.remove(header::CONTENT_LENGTH);
        }
        let mut response = Response::new(Body::empty());
        *response.status_mut() = status;
        response
    } else {
        if !status_has_length(status) {
            headers.remove(header::CONTENT_LENGTH);
        }
        let mut response = Response::new(Body::from(stored.body()));
        *response.status_mut() = status;
        response
    };
    *response.headers_mut() = headers;
    response
}

/// Whether a response with `status` may carry `Content-Length` (RFC 9110 §8.6: never on
/// `1xx` and `204`; on `304` it would describe a body not sent).
fn status_has_length(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// The stored fields of an answer with its `Content-Length`, and `Age` and `X-Cache` among
/// them or room for them.
fn answer_fields(stored: &Stored) -> HeaderMap {
    let (count, block) = stored.header_block();
    let body_len = stored.body_len();
    if block.len() <= RECENT_BLOCK
        && let Some(map) = RECENT.with_borrow_mut(|recent| recent.fields(count, block, body_len))
    {
        return map;
    }
    let mut map = stored.header_map(3);
    map.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    map
}

/// The header fields of the response this thread answered last from the cache: while
/// requests come for one response (a page in demand), each answer's map is a copy of one
/// already made — a reference count per value — not the fields read, checked and hashed
/// into a new map again. Keyed by the fields' stored bytes themselves (and the body's
/// length), so it serves any driver (the bytes read from Redis are new each time, their
/// content is not) and can never answer with another response's fields.
struct Recent {
    count: u16,
    body_len: usize,
    block: Vec<u8>,
    /// The map those fields make, with `Content-Length`, `Age` and `X-Cache` (the last two
    /// replaced per answer), once they came twice in a row: a stream of different responses
    /// pays a comparison and a copy of the bytes, not a map each.
    map: Option<HeaderMap>,
}

/// The largest field block kept (bytes): a larger one is read into a new map each time.
const RECENT_BLOCK: usize = 4096;

thread_local! {
    static RECENT: RefCell<Recent> = const {
        RefCell::new(Recent { count: 0, body_len: 0, block: Vec::new(), map: None })
    };
}

impl Recent {
    /// A copy of the map of these fields when they are the ones seen last; else `None`, and
    /// they are noted.
    fn fields(&mut self, count: u16, block: &[u8], body_len: usize) -> Option<HeaderMap> {
        if self.count != count || self.body_len != body_len || self.block != block {
            self.count = count;
            self.body_len = body_len;
            self.block.clear();
            self.block.extend_from_slice(block);
            self.map = None;
            return None;
        }
        let map = self.map.get_or_insert_with(|| {
            // The values are slices of a copy of their own, not of a read's buffer: the map
            // holds a few hundred bytes, never a body.
            let own = Bytes::copy_from_slice(block);
            // Room for one more than the three set here: a map inserts (even in place of a
            // field it has) only while it is below its capacity, and a copy keeps the room.
            let mut map = stored::fields(&own, 0..own.len(), count, 4);
            map.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
            map.insert(header::AGE, HeaderValue::from_static("0"));
            map.insert(X_CACHE, HeaderValue::from_static("hit"));
            map
        });
        Some(map.clone())
    }
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
fn modified_since(request: &Parts, stored: &HeaderMap) -> bool {
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
    use std::time::Duration;

    use super::*;

    fn stored(status: u16, fields: &[(&'static str, &'static str)], body: &'static [u8]) -> Stored {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        let status = StatusCode::from_u16(status).unwrap();
        let body = Bytes::from_static(body);
        Stored::new(
            status,
            &headers,
            &body,
            Duration::from_secs(60),
            Duration::ZERO,
        )
        .unwrap()
    }

    fn fields_of(response: &Response<Body>) -> Vec<(String, String)> {
        let mut fields: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        fields.sort();
        fields
    }

    #[test]
    fn answers_made_from_the_thread_s_kept_fields_are_those_read_afresh() {
        let get = http::Request::get("/").body(()).unwrap().into_parts().0;
        let head = http::Request::head("/").body(()).unwrap().into_parts().0;
        let page = stored(
            200,
            &[("content-type", "text/html"), ("x-app", "a")],
            b"hello",
        );
        let other = stored(
            200,
            &[("content-type", "text/html"), ("x-app", "b")],
            b"hello",
        );
        let longer = stored(
            200,
            &[("content-type", "text/html"), ("x-app", "a")],
            b"hello!",
        );
        let empty = stored(204, &[("x-app", "a")], b"");
        let expected = |x_app: &str, length: &str, how: &str| {
            let mut fields: Vec<(String, String)> = [
                ("age", "0"),
                ("content-length", length),
                ("content-type", "text/html"),
                ("x-app", x_app),
                ("x-cache", how),
            ]
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
            fields.sort();
            fields
        };
        // Fresh (first sight), kept (second), copied (third and on), interleaved with others.
        let sequence = [
            (&page, "a", "5"),
            (&page, "a", "5"),
            (&page, "a", "5"),
            (&other, "b", "5"),
            (&page, "a", "5"),
            (&page, "a", "5"),
            (&longer, "a", "6"),
            (&longer, "a", "6"),
            (&page, "a", "5"),
        ];
        for (i, (stored, x_app, length)) in sequence.into_iter().enumerate() {
            let how = if i % 2 == 0 { "hit" } else { "stale" };
            let mut fields = fields_of(&answer(stored, &get, how));
            let etag = fields.iter().position(|(n, _)| n == "etag").unwrap();
            assert_eq!(fields.remove(etag).1, stored.etag(), "step {i}");
            assert_eq!(fields, expected(x_app, length, how), "step {i}");
            let head_fields = fields_of(&answer(stored, &head, how));
            assert!(head_fields.contains(&("content-length".to_owned(), length.to_owned())));
        }
        // A 204 never says `Content-Length`, however often it is answered.
        for _ in 0..3 {
            let response = answer(&empty, &get, "hit");
            assert_eq!(response.status(), StatusCode::NO_CONTENT);
            assert!(!response.headers().contains_key(header::CONTENT_LENGTH));
            assert_eq!(response.headers()["x-app"], "a");
        }
    }

    #[test]
    fn ages_are_their_decimal_seconds() {
        for seconds in [0, 1, 9, 10, 42, 99, 100, 3_600, u64::MAX] {
            assert_eq!(age(seconds), seconds.to_string().as_str(), "{seconds}");
        }
    }
}
