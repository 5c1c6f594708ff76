//! What the layer keeps in the cache: one entry per method, path and query (and the app's
//! own key parts), holding the variants its responses' `Vary` told apart.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use jtc_cache::Cache;
use serde::{Deserialize, Serialize};

/// Variants kept per entry: a `Vary` on a header clients fill freely (`User-Agent`) would
/// otherwise grow one entry without bound. The oldest goes first.
const MAX_VARIANTS: usize = 8;

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
    let mut key = format!("http:{method}:{}", uri.path());
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

/// One stored response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, serde_bytes::ByteBuf)>,
    #[serde(with = "serde_bytes")]
    pub(crate) body: Vec<u8>,
    /// Unix milliseconds when stored.
    pub(crate) stored_at: u64,
    /// How long it is fresh, in milliseconds.
    pub(crate) ttl: u64,
    /// How long after that it may still be served while a fresh copy is fetched
    /// (stale-while-revalidate), in milliseconds.
    #[serde(default)]
    pub(crate) stale: u64,
    /// The strong validator sent with it: the handler's own `ETag`, else one made from the
    /// body.
    pub(crate) etag: String,
}

impl Stored {
    pub(crate) fn new(
        status: StatusCode,
        headers: &HeaderMap,
        body: &Bytes,
        ttl: Duration,
        stale: Duration,
    ) -> Self {
        let etag = headers
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map_or_else(
                || format!("\"{}\"", &blake3::hash(body).to_hex()[..32]),
                str::to_owned,
            );
        let mut kept = Vec::with_capacity(headers.len() + 1);
        for (name, value) in headers {
            kept.push((name.as_str().to_owned(), value.as_bytes().to_vec().into()));
        }
        if !headers.contains_key(http::header::ETAG) {
            kept.push(("etag".to_owned(), etag.clone().into_bytes().into()));
        }
        Self {
            status: status.as_u16(),
            headers: kept,
            body: body.to_vec(),
            stored_at: now_ms(),
            ttl: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            stale: u64::try_from(stale.as_millis()).unwrap_or(u64::MAX),
            etag,
        }
    }

    /// Whole seconds since it was stored (`Age`).
    pub(crate) fn age(&self) -> u64 {
        now_ms().saturating_sub(self.stored_at) / 1000
    }

    pub(crate) fn is_fresh(&self) -> bool {
        now_ms() < self.stored_at.saturating_add(self.ttl)
    }

    /// Fresh, or stale but still within its stale-while-revalidate window.
    fn is_usable(&self) -> bool {
        now_ms() < self.expires_at()
    }

    /// When it can no longer be served at all.
    fn expires_at(&self) -> u64 {
        self.stored_at
            .saturating_add(self.ttl)
            .saturating_add(self.stale)
    }

    /// The stored header fields, each as it was (a field that no longer parses is dropped).
    pub(crate) fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.headers.len() + 2);
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value),
            ) {
                map.append(name, value);
            }
        }
        map
    }
}

/// A stored response and the request header values that select it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Variant {
    pub(crate) selecting: Vec<Option<String>>,
    pub(crate) stored: Stored,
}

/// What one key holds: the header names the responses vary on, and a variant per
/// combination of their values seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub(crate) vary: Vec<String>,
    pub(crate) variants: Vec<Variant>,
}

/// The values of `names` in `headers` (several fields of one name joined by `, `).
pub(crate) fn selecting(names: &[String], headers: &HeaderMap) -> Vec<Option<String>> {
    names
        .iter()
        .map(|name| {
            let values: Vec<&str> = headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        })
        .collect()
}

impl Entry {
    /// The fresh response stored for a request with `headers`, taken out of the entry (its
    /// body is then sent without a copy); the entry back when there is none.
    pub(crate) fn take_fresh(self, headers: &HeaderMap) -> Result<Stored, Self> {
        match self.take_usable(headers) {
            Ok(stored) if stored.is_fresh() => Ok(stored),
            Ok(_) => Err(Self::default()),
            Err(entry) => Err(entry),
        }
    }

    /// The response stored for a request with `headers` that may still be served — fresh, or
    /// within its stale-while-revalidate window — taken out of the entry; the entry back
    /// when there is none.
    pub(crate) fn take_usable(mut self, headers: &HeaderMap) -> Result<Stored, Self> {
        let wanted = selecting(&self.vary, headers);
        match self
            .variants
            .iter()
            .position(|v| v.selecting == wanted && v.stored.is_usable())
        {
            Some(at) => Ok(self.variants.swap_remove(at).stored),
            None => Err(self),
        }
    }

    /// Adds `stored` as the variant of `selecting` under `vary`: a different `Vary` starts
    /// the entry over; expired variants go, and the oldest beyond [`MAX_VARIANTS`].
    pub(crate) fn add(
        &mut self,
        vary: Vec<String>,
        selecting: Vec<Option<String>>,
        stored: Stored,
    ) {
        if self.vary != vary {
            self.vary = vary;
            self.variants.clear();
        }
        self.variants
            .retain(|v| v.selecting != selecting && v.stored.is_usable());
        self.variants.push(Variant { selecting, stored });
        if self.variants.len() > MAX_VARIANTS {
            self.variants.remove(0);
        }
    }

    /// How long the entry must live: until its last variant expires.
    pub(crate) fn ttl(&self) -> Duration {
        let last = self
            .variants
            .iter()
            .map(|v| v.stored.expires_at())
            .max()
            .unwrap_or(0);
        Duration::from_millis(last.saturating_sub(now_ms()).max(1))
    }
}

/// Reads the entry at `key`, under `tags` when there are any.
pub(crate) async fn read(
    cache: &Cache,
    tags: &[String],
    key: &str,
) -> jtc_cache::Result<Option<Entry>> {
    if tags.is_empty() {
        cache.get(key).await
    } else {
        cache.tags(tags).get(key).await
    }
}

/// Writes `entry` at `key`, under `tags` when there are any.
pub(crate) async fn write(
    cache: &Cache,
    tags: &[String],
    key: &str,
    entry: &Entry,
) -> jtc_cache::Result<()> {
    let ttl = entry.ttl();
    if tags.is_empty() {
        cache.put(key, entry, ttl).await
    } else {
        cache.tags(tags).put(key, entry, ttl).await
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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
    fn variants_are_chosen_by_the_vary_values_and_bounded() {
        let body = Bytes::from_static(b"x");
        let stored = |tag: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("etag", HeaderValue::from_str(tag).unwrap());
            Stored::new(
                StatusCode::OK,
                &headers,
                &body,
                Duration::from_secs(60),
                Duration::ZERO,
            )
        };
        let vary = vec!["accept-language".to_owned()];
        let mut entry = Entry::default();
        for i in 0..10 {
            entry.add(
                vary.clone(),
                vec![Some(format!("l{i}"))],
                stored(&format!("\"{i}\"")),
            );
        }
        assert_eq!(entry.variants.len(), MAX_VARIANTS);
        let mut asking = HeaderMap::new();
        asking.insert("accept-language", HeaderValue::from_static("l9"));
        assert_eq!(entry.clone().take_fresh(&asking).unwrap().etag, "\"9\"");
        asking.insert("accept-language", HeaderValue::from_static("l0"));
        assert!(entry.take_fresh(&asking).is_err(), "the oldest went");
    }
}
