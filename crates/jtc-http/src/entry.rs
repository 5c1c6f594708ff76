//! One key's entry: the `Vary` names of its responses and a stored response per combination
//! of the request values they name, read and written as one value of the cache.

use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use jtc_cache::Cache;

use crate::{
    stored::{Stored, now_ms},
    wire::{MAGIC, Reader, Writer},
};

/// Variants kept per entry: a `Vary` on a header clients fill freely (`User-Agent`) would
/// otherwise grow one entry without bound. The oldest goes first.
const MAX_VARIANTS: usize = 8;

/// A stored response and the request header values that select it.
#[derive(Debug, Clone)]
pub(crate) struct Variant {
    pub(crate) selecting: Vec<Option<String>>,
    pub(crate) stored: Stored,
}

/// What one key holds: the header names the responses vary on, and a variant per
/// combination of their values seen.
///
/// Layout: [`MAGIC`], `u16` count of `Vary` names, each with a `u16` length; `u8` count of
/// variants, each its selecting values (per name: `u8` 1 and the value with a `u32` length,
/// or `u8` 0 when the request had none) and its [`Stored`] bytes (`u32` length).
#[derive(Debug, Clone, Default)]
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
    /// The entry kept in `bytes`; `None` when they are not one (another layout, another
    /// program's value at the key, a truncated write).
    pub(crate) fn decode(bytes: &Bytes) -> Option<Self> {
        let mut reader = Reader::new(bytes);
        if reader.take(MAGIC.len())? != MAGIC {
            return None;
        }
        let mut entry = Self::default();
        let now = now_ms();
        for _ in 0..reader.u16()? {
            let name = std::str::from_utf8(reader.short()?).ok()?;
            entry.vary.push(name.to_owned());
        }
        for _ in 0..reader.u8()? {
            let mut selecting = Vec::with_capacity(entry.vary.len());
            for _ in 0..entry.vary.len() {
                selecting.push(match reader.u8()? {
                    0 => None,
                    _ => {
                        let value = reader.long_range()?;
                        Some(std::str::from_utf8(&bytes[value]).ok()?.to_owned())
                    }
                });
            }
            let stored = Stored::read(bytes.slice(reader.long_range()?), now)?;
            entry.variants.push(Variant { selecting, stored });
        }
        reader.is_done().then_some(entry)
    }

    /// The bytes that keep it; `None` when a field is longer than the layout can hold.
    pub(crate) fn encode(&self) -> Option<Vec<u8>> {
        let size: usize = self
            .variants
            .iter()
            .map(|v| v.stored.raw().len() + 64)
            .sum();
        let mut bytes = Vec::with_capacity(MAGIC.len() + 64 + size);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&u16::try_from(self.vary.len()).ok()?.to_le_bytes());
        for name in &self.vary {
            bytes.put_short(name.as_bytes())?;
        }
        bytes.push(u8::try_from(self.variants.len()).ok()?);
        for variant in &self.variants {
            for value in &variant.selecting {
                match value {
                    None => bytes.push(0),
                    Some(value) => {
                        bytes.push(1);
                        bytes.put_long(value.as_bytes())?;
                    }
                }
            }
            bytes.put_long(variant.stored.raw())?;
        }
        Some(bytes)
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

/// An entry as read from the cache: its bytes, decoded in full only when a variant must be
/// added to it (a hit reads its response straight out of them).
pub(crate) struct Found(pub(crate) Bytes);

impl Found {
    /// The response stored for a request with `headers` that may still be served (fresh, or
    /// within its stale-while-revalidate window).
    pub(crate) fn usable(&self, headers: &HeaderMap) -> Option<Stored> {
        let mut reader = Reader::new(&self.0);
        if reader.take(MAGIC.len())? != MAGIC {
            return None;
        }
        if reader.u16()? != 0 {
            // Responses that vary: the variants are told apart by the request's values.
            return Entry::decode(&self.0)?.take_usable(headers).ok();
        }
        // None varies: at most one variant is kept, read without building the entry.
        let now = now_ms();
        for _ in 0..reader.u8()? {
            let stored = Stored::read(self.0.slice(reader.long_range()?), now)?;
            if stored.is_usable() {
                return Some(stored);
            }
        }
        None
    }

    /// [`usable`](Self::usable), and fresh.
    pub(crate) fn fresh(&self, headers: &HeaderMap) -> Option<Stored> {
        self.usable(headers).filter(Stored::is_fresh)
    }

    /// The whole entry, to add a variant to; `None` when the bytes are not one (another
    /// layout, another program's value at the key, a truncated write): it is then replaced.
    pub(crate) fn entry(&self) -> Option<Entry> {
        let entry = Entry::decode(&self.0);
        if entry.is_none() {
            tracing::debug!("jtc-http: an entry in another layout is replaced");
        }
        entry
    }
}

/// Reads the entry at `key`, under `tags` when there are any.
pub(crate) async fn read(
    cache: &Cache,
    tags: &[String],
    key: &str,
) -> jtc_cache::Result<Option<Found>> {
    let found = if tags.is_empty() {
        cache.get_bytes(key).await?
    } else {
        // Boxed: a tagged read's state is larger, and every request's future would carry it.
        let tagged = cache.tags(tags);
        Box::pin(tagged.get_bytes(key)).await?
    };
    Ok(found.map(Found))
}

/// Writes `entry` at `key`, under `tags` when there are any.
pub(crate) async fn write(
    cache: &Cache,
    tags: &[String],
    key: &str,
    entry: &Entry,
) -> jtc_cache::Result<()> {
    let ttl = entry.ttl();
    let Some(bytes) = entry.encode() else {
        tracing::debug!("jtc-http: a response too large for the entry layout is not stored");
        return Ok(());
    };
    if tags.is_empty() {
        cache.put_bytes(key, &bytes, ttl).await
    } else {
        cache.tags(tags).put_bytes(key, &bytes, ttl).await
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderValue, StatusCode};

    use super::*;

    fn stored(tag: &str, body: &'static [u8]) -> Stored {
        let mut headers = HeaderMap::new();
        headers.insert("etag", HeaderValue::from_str(tag).unwrap());
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        headers.append("x-several", HeaderValue::from_static("one"));
        headers.append("x-several", HeaderValue::from_static("two"));
        Stored::new(
            StatusCode::OK,
            &headers,
            &Bytes::from_static(body),
            Duration::from_secs(60),
            Duration::ZERO,
        )
        .unwrap()
    }

    #[test]
    fn variants_are_chosen_by_the_vary_values_and_bounded() {
        let vary = vec!["accept-language".to_owned()];
        let mut entry = Entry::default();
        for i in 0..10 {
            entry.add(
                vary.clone(),
                vec![Some(format!("l{i}"))],
                stored(&format!("\"{i}\""), b"x"),
            );
        }
        assert_eq!(entry.variants.len(), MAX_VARIANTS);
        let mut asking = HeaderMap::new();
        asking.insert("accept-language", HeaderValue::from_static("l9"));
        let found = Found(Bytes::from(entry.encode().unwrap()));
        assert_eq!(found.fresh(&asking).unwrap().etag(), "\"9\"");
        asking.insert("accept-language", HeaderValue::from_static("l0"));
        assert!(found.fresh(&asking).is_none(), "the oldest went");
        assert!(entry.take_usable(&asking).is_err());
    }

    #[test]
    fn an_entry_reads_back_as_written_and_damaged_bytes_read_as_nothing() {
        let mut entry = Entry::default();
        let vary = vec!["accept-language".to_owned(), "accept".to_owned()];
        entry.add(
            vary.clone(),
            vec![Some("fr".to_owned()), None],
            stored("\"fr\"", b"bonjour"),
        );
        entry.add(
            vary,
            vec![Some("de".to_owned()), Some("text/html".to_owned())],
            stored("\"de\"", b"guten tag"),
        );
        let bytes = Bytes::from(entry.encode().unwrap());
        let read = Entry::decode(&bytes).unwrap();
        assert_eq!(read.vary, entry.vary);
        assert_eq!(read.variants.len(), 2);
        for (read, written) in read.variants.iter().zip(&entry.variants) {
            assert_eq!(read.selecting, written.selecting);
            assert_eq!(read.stored.raw(), written.stored.raw());
            assert_eq!(read.stored.body(), written.stored.body());
        }
        let headers = read.variants[1].stored.header_map(0);
        assert_eq!(headers["content-type"], "text/plain");
        assert_eq!(headers["etag"], "\"de\"");
        let several: Vec<_> = headers.get_all("x-several").iter().collect();
        assert_eq!(several, ["one", "two"]);
        assert_eq!(read.variants[1].stored.body(), &b"guten tag"[..]);

        // Every truncation, and every single byte changed, reads as no entry or as one whose
        // parts all lie inside the buffer (no panic, no read past the end).
        for cut in 0..bytes.len() {
            assert!(Entry::decode(&bytes.slice(..cut)).is_none(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            let mut damaged = bytes.to_vec();
            damaged[at] ^= 0xa5;
            if let Some(entry) = Entry::decode(&Bytes::from(damaged)) {
                for variant in entry.variants {
                    drop(variant.stored.header_map(2));
                    drop(variant.stored.body());
                }
            }
        }
        assert!(Entry::decode(&Bytes::from_static(b"jtc\x01not an entry")).is_none());
    }
}
