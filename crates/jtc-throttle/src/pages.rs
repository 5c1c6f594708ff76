//! The answers a rejection needs, prepared when the layer is built: per locale the translated
//! messages, the start of the JSON body and the `Content-Language` value; and the header
//! values of small numbers. A 429 in a flood then costs less than an admitted request does
//! (see docs/benchmarks.md), instead of translating and serialising on every rejection.

use std::{
    cell::RefCell,
    sync::{
        LazyLock,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, header};

use crate::lang::{self, Catalogues};

/// Header values of 0 ..= `SMALL`, made once: `Retry-After` and `X-RateLimit-Remaining`
/// are usually small, and a cloned value costs no allocation.
///
/// Their digits are written once into one string kept for the life of the process (16 KB),
/// so each value is static bytes: its clone and its drop cost no reference count, where a
/// shared value costs an atomic operation for each (two per field of every response; a
/// repeated 429 carries four such fields).
const SMALL: u64 = 4_096;
static NUMBERS: LazyLock<Vec<HeaderValue>> = LazyLock::new(|| {
    let mut digits = String::new();
    let ends: Vec<usize> = (0..=SMALL)
        .map(|n| {
            digits.push_str(itoa::Buffer::new().format(n));
            digits.len()
        })
        .collect();
    let digits: &'static str = Box::leak(digits.into_boxed_str());
    let mut start = 0;
    ends.into_iter()
        .map(|end| {
            let value = HeaderValue::from_static(&digits[start..end]);
            start = end;
            value
        })
        .collect()
});

/// A number as a header value: a shared one when small, else its digits written into this
/// thread's arena (one allocation per 16 KiB of digits instead of one per value; a chunk is
/// freed when the last response using it is). 2–3 % of the layer's in-process time
/// (docs/benchmarks.md).
pub(crate) fn number(n: u64) -> HeaderValue {
    if let Some(value) = usize::try_from(n).ok().and_then(|i| NUMBERS.get(i)) {
        return value.clone();
    }
    thread_local! {
        static ARENA: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    }
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n).as_bytes();
    ARENA.with_borrow_mut(|arena| {
        if arena.capacity() < digits.len() {
            *arena = BytesMut::with_capacity(ARENA_CHUNK);
        }
        arena.extend_from_slice(digits);
        HeaderValue::from_maybe_shared(arena.split().freeze())
            .unwrap_or_else(|_| HeaderValue::from(n))
    })
}

/// The size of a thread's arena for the digits of header values.
const ARENA_CHUNK: usize = 16 * 1024;

/// A number that changes slowly (a Unix time in seconds) as a header value: the last one made
/// on this thread is reused while it holds.
pub(crate) fn slow_number(n: u64) -> HeaderValue {
    thread_local! {
        static LAST: RefCell<Option<(u64, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((held, value)) if *held == n => value.clone(),
        _ => {
            let value = HeaderValue::from(n);
            *last = Some((n, value.clone()));
            value
        }
    })
}

/// What one locale answers.
#[derive(Debug)]
pub(crate) struct Page {
    pub(crate) locale: String,
    pub(crate) too_many: String,
    pub(crate) unavailable: String,
    /// `{"error":"<too_many, escaped>","retry_after":`
    pub(crate) json_head: String,
    pub(crate) content_language: Option<HeaderValue>,
}

impl Page {
    /// The default 429 body: `{"error":…,"retry_after":<retry>,"limit":<limit>}`. In a flood
    /// the figures repeat, so the last body made on this thread is shared while they hold.
    pub(crate) fn too_many_body(&self, retry: u64, limit: u64) -> Bytes {
        type Last = Option<(usize, u64, u64, Bytes)>;
        thread_local! {
            static LAST: RefCell<Last> = const { RefCell::new(None) };
        }
        let page = std::ptr::from_ref(self) as usize;
        LAST.with_borrow_mut(|last| match last {
            Some((p, r, l, body)) if (*p, *r, *l) == (page, retry, limit) => body.clone(),
            _ => {
                let body = Bytes::from(format!("{}{retry},\"limit\":{limit}}}", self.json_head));
                *last = Some((page, retry, limit, body.clone()));
                body
            }
        })
    }
}

/// Every locale's page, and which one is the fallback.
#[derive(Debug)]
pub(crate) struct Pages {
    pages: Vec<Page>,
    fallback: usize,
    /// Tells this set of pages from every other (for the thread's last negotiation).
    id: u64,
}

impl Pages {
    pub(crate) fn new(catalogues: &Catalogues, fallback: &str) -> Self {
        let pages: Vec<Page> = catalogues
            .locales()
            .into_iter()
            .map(|locale| {
                let too_many = catalogues.translate(&locale, "http.too_many_requests");
                let escaped = serde_json::to_string(&too_many).unwrap_or_default();
                Page {
                    unavailable: catalogues.translate(&locale, "http.service_unavailable"),
                    json_head: format!("{{\"error\":{escaped},\"retry_after\":"),
                    content_language: HeaderValue::from_str(&lang::content_language(&locale)).ok(),
                    too_many,
                    locale,
                }
            })
            .collect();
        let fallback = pages.iter().position(|p| p.locale == fallback).unwrap_or(0);
        static IDS: AtomicU64 = AtomicU64::new(0);
        let id = IDS.fetch_add(1, Ordering::Relaxed);
        Self {
            pages,
            fallback,
            id,
        }
    }

    /// The page for a request's `Accept-Language`.
    pub(crate) fn for_request(&self, headers: &HeaderMap, catalogues: &Catalogues) -> &Page {
        let fallback = &self.pages[self.fallback];
        let Some(accept) = headers.get(header::ACCEPT_LANGUAGE).and_then(lang::head) else {
            return fallback;
        };
        // A client sends the same header with every request of a flood: the page of the last
        // header this thread negotiated is kept, and a repeat costs one comparison of the
        // header's head (at most 4 KB, however long the header).
        type Last = Option<(u64, String, usize)>;
        thread_local! {
            static LAST: RefCell<Last> = const { RefCell::new(None) };
        }
        let index = LAST.with_borrow_mut(|last| match last {
            Some((id, head, index)) if *id == self.id && head == accept => *index,
            _ => {
                let locale = catalogues.negotiate(Some(accept), &fallback.locale);
                let index = self
                    .pages
                    .iter()
                    .position(|p| p.locale == locale)
                    .unwrap_or(self.fallback);
                match last {
                    Some((id, head, page)) => {
                        head.clear();
                        head.push_str(accept);
                        (*id, *page) = (self.id, index);
                    }
                    None => *last = Some((self.id, accept.to_owned(), index)),
                }
                index
            }
        });
        &self.pages[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_numbers_are_shared_and_large_ones_made() {
        for n in (0..=SMALL + 2).chain([1_700_000_000, u64::MAX]) {
            assert_eq!(number(n), n.to_string().as_str(), "{n}");
        }
    }

    #[test]
    fn each_locale_has_its_page() {
        let catalogues = Catalogues::default();
        let pages = Pages::new(&catalogues, "en");
        let mut headers = HeaderMap::new();
        assert_eq!(pages.for_request(&headers, &catalogues).locale, "en");
        headers.insert(header::ACCEPT_LANGUAGE, HeaderValue::from_static("pt-BR"));
        let page = pages.for_request(&headers, &catalogues);
        assert_eq!(page.locale, "pt_BR");
        assert_eq!(page.content_language.as_ref().unwrap(), "pt-BR");
        assert!(
            page.json_head.starts_with("{\"error\":\""),
            "{}",
            page.json_head
        );
    }
}
