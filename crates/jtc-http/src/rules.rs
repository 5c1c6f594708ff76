//! The rules of HTTP caching this layer follows (RFC 9111 for a shared cache, RFC 9110 for the
//! statuses): what a request asks of the cache, whether a response may be stored, and for how
//! long.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode, header};

/// The `Cache-Control` directives this layer reads, of a request or a response.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) no_store: bool,
    pub(crate) no_cache: bool,
    pub(crate) private: bool,
    pub(crate) public: bool,
    pub(crate) only_if_cached: bool,
    pub(crate) max_age: Option<u64>,
    pub(crate) s_maxage: Option<u64>,
    pub(crate) stale_while_revalidate: Option<u64>,
}

impl Directives {
    /// Every `Cache-Control` field of `headers`, directives compared without case. A directive
    /// with a value this layer cannot read (`max-age=soon`) counts as absent, and a `private`
    /// or `no-cache` with a list of fields (`private="Set-Cookie"`) as the whole directive:
    /// the stricter reading.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut found = Self::default();
        for value in headers.get_all(header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',') {
                let (name, argument) = match directive.split_once('=') {
                    Some((name, argument)) => {
                        (name.trim(), Some(argument.trim().trim_matches('"')))
                    }
                    None => (directive.trim(), None),
                };
                let seconds = || argument.and_then(|a| a.parse::<u64>().ok());
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => found.no_store = true,
                    "no-cache" => found.no_cache = true,
                    "private" => found.private = true,
                    "public" => found.public = true,
                    "only-if-cached" => found.only_if_cached = true,
                    "max-age" => found.max_age = seconds().or(found.max_age),
                    "s-maxage" => found.s_maxage = seconds().or(found.s_maxage),
                    "stale-while-revalidate" => {
                        found.stale_while_revalidate = seconds().or(found.stale_while_revalidate);
                    }
                    _ => {}
                }
            }
        }
        found
    }
}

/// Statuses a cache may store without explicit freshness (RFC 9110 §15.1: "heuristically
/// cacheable"). 206 is left out: this layer does not answer ranges.
fn cacheable_by_default(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Why a response is not stored (for logs and tests), or how long it may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Storable {
    /// Stored, fresh for this long.
    For(Duration),
    /// Not stored.
    No(&'static str),
}

/// Whether a shared cache may store `status` with `headers` for a request that carried
/// `request` directives (and an `Authorization` field when `authorized`), and for how long;
/// `default_ttl` when the response names no lifetime.
pub(crate) fn storable(
    request: Directives,
    authorized: bool,
    status: StatusCode,
    headers: &HeaderMap,
    default_ttl: Duration,
    now: SystemTime,
) -> Storable {
    let response = Directives::of(headers);
    if request.no_store || response.no_store {
        return Storable::No("no-store");
    }
    if response.private {
        return Storable::No("private");
    }
    if headers.contains_key(header::SET_COOKIE) {
        return Storable::No("set-cookie");
    }
    if authorized && !(response.public || response.s_maxage.is_some()) {
        return Storable::No("authorization");
    }
    if headers.get_all(header::VARY).iter().any(|v| {
        v.to_str()
            .map_or(true, |v| v.split(',').any(|n| n.trim() == "*"))
    }) {
        return Storable::No("vary-star");
    }
    if status == StatusCode::PARTIAL_CONTENT {
        return Storable::No("partial");
    }
    let expires = headers.get(header::EXPIRES).map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| httpdate::parse_http_date(v).ok())
    });
    let explicit = match (response.s_maxage, response.max_age, expires) {
        (Some(seconds), _, _) | (None, Some(seconds), _) => Some(Duration::from_secs(seconds)),
        // An `Expires` that cannot be read means "already expired" (RFC 9111 §5.3).
        (None, None, Some(at)) => Some(
            at.and_then(|at| at.duration_since(date_of(headers).unwrap_or(now)).ok())
                .unwrap_or(Duration::ZERO),
        ),
        (None, None, None) => None,
    };
    if explicit.is_none() && !cacheable_by_default(status) {
        return Storable::No("status");
    }
    match explicit.unwrap_or(default_ttl) {
        ttl if ttl.is_zero() => Storable::No("stale-at-once"),
        ttl => Storable::For(ttl),
    }
}

/// The response's `Date`, when it has a readable one.
fn date_of(headers: &HeaderMap) -> Option<SystemTime> {
    let value = headers.get(header::DATE)?.to_str().ok()?;
    httpdate::parse_http_date(value).ok()
}

/// The names a stored response's `Vary` lists, lowercased, in order, without repeats.
pub(crate) fn vary_names(headers: &HeaderMap) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for value in headers.get_all(header::VARY) {
        let Ok(value) = value.to_str() else { continue };
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let name = name.to_ascii_lowercase();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn decide(status: u16, fields: &[(&'static str, &'static str)]) -> Storable {
        storable(
            Directives::default(),
            false,
            StatusCode::from_u16(status).unwrap(),
            &headers(fields),
            Duration::from_secs(10),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000),
        )
    }

    #[test]
    fn lifetimes_come_from_s_maxage_then_max_age_then_expires_then_the_default() {
        let both = [("cache-control", "max-age=5, s-maxage=7")];
        assert_eq!(decide(200, &both), Storable::For(Duration::from_secs(7)));
        let max_age = [("cache-control", "public, max-age=5")];
        assert_eq!(decide(200, &max_age), Storable::For(Duration::from_secs(5)));
        let expires = [
            ("date", "Sun, 09 Sep 2001 01:46:40 GMT"),
            ("expires", "Sun, 09 Sep 2001 01:47:40 GMT"),
        ];
        assert_eq!(
            decide(200, &expires),
            Storable::For(Duration::from_secs(60))
        );
        assert_eq!(
            decide(200, &[("expires", "0")]),
            Storable::No("stale-at-once")
        );
        assert_eq!(decide(200, &[]), Storable::For(Duration::from_secs(10)));
    }

    #[test]
    fn statuses_need_explicit_freshness_unless_cacheable_by_default() {
        for status in [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501] {
            assert!(matches!(decide(status, &[]), Storable::For(_)), "{status}");
        }
        for status in [201, 302, 400, 500, 503] {
            assert_eq!(decide(status, &[]), Storable::No("status"), "{status}");
        }
        assert!(matches!(
            decide(500, &[("cache-control", "max-age=3")]),
            Storable::For(_)
        ));
        assert_eq!(
            decide(206, &[("cache-control", "max-age=3")]),
            Storable::No("partial")
        );
    }

    #[test]
    fn what_a_shared_cache_never_stores() {
        assert_eq!(
            decide(200, &[("cache-control", "no-store")]),
            Storable::No("no-store")
        );
        assert_eq!(
            decide(200, &[("Cache-Control", "PRIVATE")]),
            Storable::No("private")
        );
        assert_eq!(
            decide(200, &[("set-cookie", "a=b")]),
            Storable::No("set-cookie")
        );
        assert_eq!(
            decide(200, &[("vary", "accept, *")]),
            Storable::No("vary-star")
        );
        let request = Directives {
            no_store: true,
            ..Directives::default()
        };
        let none = HeaderMap::new();
        let now = SystemTime::now();
        let ttl = Duration::from_secs(1);
        assert_eq!(
            storable(request, false, StatusCode::OK, &none, ttl, now),
            Storable::No("no-store")
        );
        let plain = Directives::default();
        assert_eq!(
            storable(plain, true, StatusCode::OK, &none, ttl, now),
            Storable::No("authorization")
        );
        let public = headers(&[("cache-control", "public")]);
        assert!(matches!(
            storable(plain, true, StatusCode::OK, &public, ttl, now),
            Storable::For(_)
        ));
    }

    #[test]
    fn vary_names_are_lowercased_and_listed_once() {
        let fields = headers(&[("vary", "Accept-Language, accept"), ("vary", "ACCEPT")]);
        assert_eq!(vary_names(&fields), ["accept-language", "accept"]);
    }
}
