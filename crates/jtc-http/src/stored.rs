//! What the layer keeps in the cache: one entry per method, path and query (and the app's
//! own key parts), holding the variants its responses' `Vary` told apart.

use std::{
    ops::Range,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};

use crate::{
    layer::X_CACHE,
    wire::{Reader, Writer},
};

/// The cache key of a request: method (`HEAD` reads `GET`'s entry), path, query with its
/// parameters in a canonical order, and the app's own parts. The scheme and host are not in
/// it: one app, one namespace (add the host with [`key`](crate::ResponseCacheLayer::key)
/// when one app serves several).
pub(crate) fn key_of(method: &Method, uri: &Uri, extra: Option<&str>) -> String {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let mut key = String::with_capacity(16 + uri.path().len() + uri.query().map_or(0, str::len));
    key.push_str("http:");
    key.push_str(method);
    key.push(':');
    key.push_str(uri.path());
    if let Some(query) = uri.query().filter(|q| !q.is_empty()) {
        let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
        pairs.sort_unstable();
        key.push('?');
        key.push_str(&pairs.join("&"));
    }
    if let Some(extra) = extra {
        key.push('#');
        key.push_str(extra);
    }
    // A client chooses its URL: one too long for a cache key is stored under its digest.
    if key.len() > LONGEST_KEY_TEXT {
        key = format!("http:~blake3:{}", blake3::hash(key.as_bytes()).to_hex());
    }
    key
}

/// The longest key kept as text; longer ones are digested (well under the cache's
/// `MAX_KEY_BYTES`, leaving room for the lock suffix and a tagged key's prefix).
const LONGEST_KEY_TEXT: usize = 200;

/// One stored response, in the byte form it is kept in: status, times, validator, header
/// fields and body, read in place.
///
/// Layout (lengths and numbers little-endian): `u16` status, `u64` stored-at (Unix ms),
/// `u64` fresh lifetime (ms), `u64` stale-while-revalidate window (ms), the `ETag` (`u16`
/// length), the body (`u32` length), then a `u16` count of header fields, each a name (a `u8`
/// code of a common name, or `0` and the name with a `u16` length) and value (`u32` length).
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    raw: Bytes,
    pub(crate) status: u16,
    /// Unix milliseconds when stored.
    stored_at: u64,
    /// How long it is fresh, in milliseconds.
    ttl: u64,
    /// How long after that it may still be served while a fresh copy is fetched
    /// (stale-while-revalidate), in milliseconds.
    stale: u64,
    /// The strong validator sent with it: the handler's own `ETag`, else one made from the
    /// body.
    etag: Range<usize>,
    header_count: u16,
    headers: Range<usize>,
    body: Range<usize>,
    /// When it was read (Unix ms): freshness and `Age` are decided against one clock reading.
    now: u64,
}

/// Fields never stored: hop-by-hop fields (RFC 9110 §7.6.1; RFC 9111 §3.1 keeps them out of
/// a cache), `Content-Length` (the stored body's length is sent instead) and the two fields
/// the layer sets on every answer, `Age` and `X-Cache`.
const NOT_STORED: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::CONTENT_LENGTH,
    header::AGE,
    X_CACHE,
];

/// Header names written as one byte instead of their text (a code's position here, plus
/// one; `0` is followed by the name). Append only: stored entries name headers by position.
const COMMON_NAMES: [HeaderName; 16] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CACHE_CONTROL,
    header::ETAG,
    header::LAST_MODIFIED,
    header::EXPIRES,
    header::VARY,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::DATE,
    header::ACCESS_CONTROL_ALLOW_ORIGIN,
    header::X_CONTENT_TYPE_OPTIONS,
    header::CONTENT_SECURITY_POLICY,
    header::STRICT_TRANSPORT_SECURITY,
    header::LINK,
    header::ACCEPT_RANGES,
];

/// Writes `name`: its code when it is a common one, else `0` and its text.
fn put_name(raw: &mut Vec<u8>, name: &HeaderName) -> Option<()> {
    match COMMON_NAMES.iter().position(|common| common == name) {
        Some(at) => raw.push(u8::try_from(at + 1).ok()?),
        None => {
            raw.push(0);
            raw.put_short(name.as_str().as_bytes())?;
        }
    }
    Some(())
}

/// Reads a name [`put_name`] wrote; `Err(())` when the bytes end, `Ok(None)` for a code this
/// version does not know or a name that does not parse (the field is then skipped).
fn read_name(reader: &mut Reader<'_>) -> Result<Option<HeaderName>, ()> {
    match reader.u8().ok_or(())? {
        0 => Ok(HeaderName::from_bytes(reader.short().ok_or(())?).ok()),
        code => Ok(COMMON_NAMES.get(usize::from(code) - 1).cloned()),
    }
}

impl Stored {
    /// The response with `status`, `headers` and `body`, fresh for `ttl` and servable for
    /// `stale` after that; `None` when a field is longer than the layout can hold (a header
    /// over 64 KiB, a body over 4 GiB).
    pub(crate) fn new(
        status: StatusCode,
        headers: &HeaderMap,
        body: &Bytes,
        ttl: Duration,
        stale: Duration,
    ) -> Option<Self> {
        let made;
        let etag = match headers.get(header::ETAG) {
            Some(etag) => etag.as_bytes(),
            None => {
                made = format!("\"{}\"", &blake3::hash(body).to_hex()[..32]);
                made.as_bytes()
            }
        };
        let mut raw = Vec::with_capacity(64 + body.len() + 64 * headers.len());
        raw.extend_from_slice(&status.as_u16().to_le_bytes());
        for ms in [now_ms(), millis(ttl), millis(stale)] {
            raw.extend_from_slice(&ms.to_le_bytes());
        }
        raw.put_short(etag)?;
        raw.put_long(body)?;
        let kept = || {
            headers
                .iter()
                .filter(|(name, _)| !NOT_STORED.contains(name))
        };
        let count = kept().count() + usize::from(!headers.contains_key(header::ETAG));
        raw.extend_from_slice(&u16::try_from(count).ok()?.to_le_bytes());
        for (name, value) in kept() {
            put_name(&mut raw, name)?;
            raw.put_long(value.as_bytes())?;
        }
        if !headers.contains_key(header::ETAG) {
            put_name(&mut raw, &header::ETAG)?;
            raw.put_long(etag)?;
        }
        Self::read(Bytes::from(raw), now_ms())
    }

    /// The response kept in `raw`, read at `now` (Unix ms); `None` when it is not one in
    /// this layout.
    pub(crate) fn read(raw: Bytes, now: u64) -> Option<Self> {
        let mut reader = Reader::new(&raw);
        let status = reader.u16()?;
        let (stored_at, ttl, stale) = (reader.u64()?, reader.u64()?, reader.u64()?);
        let etag_len = reader.u16()?;
        let etag = reader.skip(usize::from(etag_len))?;
        let body = reader.long_range()?;
        let header_count = reader.u16()?;
        // The fields are read when the answer is made; one that does not read ends them.
        let headers = reader.at()..raw.len();
        Some(Self {
            status,
            stored_at,
            ttl,
            stale,
            etag,
            header_count,
            headers,
            body,
            raw,
            now,
        })
    }

    /// The bytes it is kept in.
    pub(crate) fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The stored validator, as text (empty when it is not).
    pub(crate) fn etag(&self) -> &str {
        std::str::from_utf8(&self.raw[self.etag.clone()]).unwrap_or_default()
    }

    /// The body: a slice of the stored bytes, not a copy.
    pub(crate) fn body(&self) -> Bytes {
        self.raw.slice(self.body.clone())
    }

    pub(crate) fn body_len(&self) -> usize {
        self.body.len()
    }

    /// Whole seconds since it was stored (`Age`).
    pub(crate) fn age(&self) -> u64 {
        self.now.saturating_sub(self.stored_at) / 1000
    }

    pub(crate) fn is_fresh(&self) -> bool {
        self.now < self.stored_at.saturating_add(self.ttl)
    }

    /// Fresh, or stale but still within its stale-while-revalidate window.
    pub(crate) fn is_usable(&self) -> bool {
        self.now < self.expires_at()
    }

    /// When it can no longer be served at all.
    pub(crate) fn expires_at(&self) -> u64 {
        self.stored_at
            .saturating_add(self.ttl)
            .saturating_add(self.stale)
    }

    /// The stored header fields, each as it was (a field that no longer parses is dropped),
    /// with room for `spare` more. The values are slices of the stored bytes.
    pub(crate) fn header_map(&self, spare: usize) -> HeaderMap {
        fields(&self.raw, self.headers.clone(), self.header_count, spare)
    }

    /// The stored header fields in their byte form, with their count: what
    /// [`header_map`](Self::header_map) reads, and all it reads.
    pub(crate) fn header_block(&self) -> (u16, &[u8]) {
        (self.header_count, &self.raw[self.headers.clone()])
    }
}

/// The `count` header fields stored in `raw[block]` as a map with room for `spare` more;
/// the values are slices of `raw`.
pub(crate) fn fields(raw: &Bytes, block: Range<usize>, count: u16, spare: usize) -> HeaderMap {
    // The count is what the bytes claim: room is made for a plausible number only.
    let mut map = HeaderMap::with_capacity(usize::from(count).min(64) + spare);
    let mut reader = Reader::new(&raw[block.clone()]);
    for _ in 0..count {
        let (Ok(name), Some(value)) = (read_name(&mut reader), reader.long_range()) else {
            break;
        };
        let value = raw.slice(block.start + value.start..block.start + value.end);
        if let (Some(name), Ok(value)) = (name, HeaderValue::from_maybe_shared(value))
            && map.try_append(name, value).is_err()
        {
            break;
        }
    }
    map
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_put_query_parameters_in_order_and_head_with_get() {
        let uri: Uri = "/reports?b=2&a=1&a=0".parse().unwrap();
        assert_eq!(
            key_of(&Method::GET, &uri, None),
            "http:GET:/reports?a=0&a=1&b=2"
        );
        assert_eq!(
            key_of(&Method::HEAD, &uri, Some("tenant-7")),
            "http:GET:/reports?a=0&a=1&b=2#tenant-7"
        );
        let bare: Uri = "/reports?".parse().unwrap();
        assert_eq!(key_of(&Method::GET, &bare, None), "http:GET:/reports");
        let long: Uri = format!("/{}", "a".repeat(10_000)).parse().unwrap();
        let digested = key_of(&Method::GET, &long, None);
        assert!(
            digested.starts_with("http:~blake3:") && digested.len() < 100,
            "{digested}"
        );
        let other: Uri = format!("/{}b", "a".repeat(10_000)).parse().unwrap();
        assert_ne!(key_of(&Method::GET, &other, None), digested);
    }

    #[test]
    fn hop_by_hop_fields_and_those_the_layer_sets_are_not_stored() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("content-type", "text/plain"),
            ("connection", "close"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("content-length", "2"),
            ("age", "100"),
            ("x-cache", "hit"),
            ("x-app", "kept"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        let body = Bytes::from_static(b"ok");
        let stored = Stored::new(
            StatusCode::OK,
            &headers,
            &body,
            Duration::from_secs(60),
            Duration::ZERO,
        )
        .unwrap();
        let kept = stored.header_map(0);
        let mut names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "etag", "x-app"]);
        assert_eq!(stored.body(), body);
        assert_eq!(kept["etag"], stored.etag());
    }

    #[test]
    fn a_stored_response_claiming_more_fields_than_a_header_map_holds_is_cut_not_a_panic() {
        let mut raw = Vec::new();
        raw.extend_from_slice(&200u16.to_le_bytes());
        for ms in [now_ms(), 60_000, 0] {
            raw.extend_from_slice(&ms.to_le_bytes());
        }
        raw.put_short(b"\"e\"").unwrap();
        raw.put_long(b"body").unwrap();
        raw.extend_from_slice(&u16::MAX.to_le_bytes());
        for i in 0..40_000 {
            raw.push(0); // a name of its own each
            raw.put_short(format!("x-{i}").as_bytes()).unwrap();
            raw.put_long(b"a").unwrap();
        }
        let stored = Stored::read(Bytes::from(raw), now_ms()).unwrap();
        let map = stored.header_map(2);
        assert!(map.len() > 20_000 && map.len() < 40_000, "{}", map.len());
        assert_eq!(stored.body(), &b"body"[..]);
    }
}
