//! Translated messages and `Accept-Language` negotiation.
//!
//! The shipped catalogues are the JSON files in this crate's `lang/` folder (`en.json`,
//! `pt_BR.json`), embedded at build time and looked up by key (`http.too_many_requests`).
//! Adding a shipped locale is adding a file there and a line below. An app adds its own
//! catalogues at run time with [`ThrottleLayer::translations`](crate::ThrottleLayer::translations).

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, OnceLock},
};

/// The locales shipped, with their catalogues.
const CATALOGUES: &[(&str, &str)] = &[
    ("en", include_str!("../lang/en.json")),
    ("pt_BR", include_str!("../lang/pt_BR.json")),
];

/// The locale used when nothing else matches.
pub(crate) const DEFAULT_LOCALE: &str = "en";

type Catalogue = HashMap<String, String>;

fn shipped() -> &'static HashMap<&'static str, Catalogue> {
    static PARSED: OnceLock<HashMap<&'static str, Catalogue>> = OnceLock::new();
    PARSED.get_or_init(|| {
        CATALOGUES
            .iter()
            .map(|(locale, json)| {
                // The files are part of this crate and checked by its tests.
                let catalogue = serde_json::from_str(json).unwrap_or_else(|e| {
                    tracing::error!(locale, error = %e, "a shipped translation file does not parse");
                    Catalogue::new()
                });
                (*locale, catalogue)
            })
            .collect()
    })
}

/// The catalogues one layer answers in: its app's own, then the shipped ones.
#[derive(Clone, Default)]
pub(crate) struct Catalogues {
    /// Registered by the app, by locale name as given (`de`, `fr_CA`).
    custom: Arc<Vec<(String, Catalogue)>>,
}

impl fmt::Debug for Catalogues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let custom: Vec<&str> = self.custom.iter().map(|(l, _)| l.as_str()).collect();
        f.debug_struct("Catalogues")
            .field("custom", &custom)
            .finish()
    }
}

impl Catalogues {
    /// Adds `messages` to the app's catalogue of `locale`, over any it had before.
    pub(crate) fn register(&mut self, locale: &str, messages: Catalogue) {
        let mut custom = (*self.custom).clone();
        match custom.iter_mut().find(|(l, _)| same_tag(l, locale)) {
            Some((_, catalogue)) => catalogue.extend(messages),
            None => custom.push((locale.trim().to_owned(), messages)),
        }
        self.custom = Arc::new(custom);
    }

    /// The locale named by `tag` (`pt-BR`, `pt_br`, `pt` → `pt_BR`), the app's first. No
    /// allocation: negotiation asks this of up to 32 ranges a client chose.
    pub(crate) fn supported(&self, tag: &str) -> Option<String> {
        let names = || {
            self.custom
                .iter()
                .map(|(l, _)| l.as_str())
                .chain(CATALOGUES.iter().map(|(l, _)| *l))
        };
        let language = primary(tag);
        names()
            .find(|name| same_tag(name, tag))
            .or_else(|| names().find(|name| primary(name).eq_ignore_ascii_case(language)))
            .map(str::to_owned)
    }

    /// Every locale it can answer in: the app's, then the shipped ones.
    pub(crate) fn locales(&self) -> Vec<String> {
        let mut locales: Vec<String> = self.custom.iter().map(|(l, _)| l.clone()).collect();
        for (locale, _) in CATALOGUES {
            if !locales.iter().any(|l| same_tag(l, locale)) {
                locales.push((*locale).to_owned());
            }
        }
        locales
    }

    /// The message for `key` in `locale`, falling back to English, then to the key itself.
    pub(crate) fn translate(&self, locale: &str, key: &str) -> String {
        let custom = |l: &str| {
            self.custom
                .iter()
                .find(|(name, _)| same_tag(name, l))
                .and_then(|(_, c)| c.get(key))
        };
        [locale, DEFAULT_LOCALE]
            .iter()
            .find_map(|l| custom(l).or_else(|| shipped().get(l).and_then(|c| c.get(key))))
            .cloned()
            .unwrap_or_else(|| key.to_owned())
    }

    /// The best locale for an `Accept-Language` header: highest q-value first, header order
    /// among equals, `q=0` never; `fallback` when nothing matches. Reads at most the first
    /// [`MAX_ACCEPT_LANGUAGE_BYTES`] of the header and its first [`MAX_LANGUAGE_RANGES`]
    /// ranges, in one pass: a client's huge header costs no more than a long ordinary one.
    pub(crate) fn negotiate(&self, accept_language: Option<&str>, fallback: &str) -> String {
        let mut best: Option<(u16, String)> = None;
        for (q, tag) in ranges(accept_language.unwrap_or_default()) {
            if best.as_ref().is_some_and(|(chosen, _)| *chosen >= q) {
                continue;
            }
            if let Some(locale) = self.supported(tag) {
                best = Some((q, locale));
            }
        }
        best.map_or_else(|| fallback.to_owned(), |(_, locale)| locale)
    }
}

/// The most of an `Accept-Language` header that negotiation reads, in bytes.
pub(crate) const MAX_ACCEPT_LANGUAGE_BYTES: usize = 4096;
/// The head of an `Accept-Language` value that negotiation reads, as text: up to its
/// [`MAX_LANGUAGE_RANGES`]th comma, and at most one byte more than
/// [`MAX_ACCEPT_LANGUAGE_BYTES`] (so that [`ranges`] sees it was cut); `None` when that head
/// holds anything but visible ASCII (what `HeaderValue::to_str` says of a whole value — which
/// would look at every byte of a 300 KB header on every 429).
pub(crate) fn head(value: &http::HeaderValue) -> Option<&str> {
    let bytes = value.as_bytes();
    let limit = bytes.len().min(MAX_ACCEPT_LANGUAGE_BYTES + 1);
    let (mut end, mut commas) = (limit, 0);
    for (at, &byte) in bytes[..limit].iter().enumerate() {
        if byte == b',' {
            commas += 1;
            if commas == MAX_LANGUAGE_RANGES {
                end = at;
                break;
            }
        } else if byte != b'\t' && !(32..127).contains(&byte) {
            return None;
        }
    }
    std::str::from_utf8(&bytes[..end]).ok()
}

/// The most language ranges that negotiation reads (real browsers send fewer than ten).
pub(crate) const MAX_LANGUAGE_RANGES: usize = 32;

/// Whether two tags name the same locale: case aside, and `_` the same as `-`.
fn same_tag(a: &str, b: &str) -> bool {
    let fold = |byte: u8| {
        if byte == b'_' {
            b'-'
        } else {
            byte.to_ascii_lowercase()
        }
    };
    let (a, b) = (a.trim(), b.trim());
    a.len() == b.len() && a.bytes().zip(b.bytes()).all(|(x, y)| fold(x) == fold(y))
}

/// The language of a tag: `pt` of `pt-BR` and `pt_BR`.
fn primary(tag: &str) -> &str {
    let tag = tag.trim();
    tag.split(['-', '_']).next().unwrap_or(tag)
}

/// The language tag of a locale for `Content-Language`: `pt_BR` → `pt-BR`.
pub(crate) fn content_language(locale: &str) -> String {
    locale.replace('_', "-")
}

/// The language ranges of an `Accept-Language` header with their q-values, in header order;
/// `q=0` and malformed ones left out. Bounded: the first [`MAX_LANGUAGE_RANGES`] ranges of the
/// first [`MAX_ACCEPT_LANGUAGE_BYTES`] (a range cut by that bound is dropped).
fn ranges(header: &str) -> impl Iterator<Item = (u16, &str)> {
    let header = if header.len() > MAX_ACCEPT_LANGUAGE_BYTES {
        let mut end = MAX_ACCEPT_LANGUAGE_BYTES;
        while !header.is_char_boundary(end) {
            end -= 1;
        }
        header[..end]
            .rsplit_once(',')
            .map_or("", |(whole, _)| whole)
    } else {
        header
    };
    header
        .split(',')
        .take(MAX_LANGUAGE_RANGES)
        .filter_map(|item| {
            let (tag, parameters) = item.split_once(';').unwrap_or((item, ""));
            let tag = tag.trim();
            let q = parameters
                .split(';')
                .find_map(|p| {
                    let (name, value) = p.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| qvalue(value.trim()))
                })
                .unwrap_or(Some(1000))?;
            (!tag.is_empty() && q > 0).then_some((q, tag))
        })
}

/// An RFC 9110 qvalue (`0`, `0.5`, `0.125`, `1`, `1.000`) in thousandths; `None` for anything
/// else (`1.5`, `-1`, `NaN`, `0.1234`).
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(3)
        .fold(0u16, |n, digit| n * 10 + u16::from(digit - b'0'));
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_catalogue_parses_and_has_every_key() {
        for (locale, json) in CATALOGUES {
            let catalogue: Catalogue = serde_json::from_str(json).unwrap();
            for key in ["http.too_many_requests", "http.service_unavailable"] {
                assert!(catalogue.contains_key(key), "{locale} lacks {key}");
            }
        }
    }

    fn supported(tag: &str) -> Option<String> {
        Catalogues::default().supported(tag)
    }

    fn negotiate(header: Option<&str>, fallback: &str) -> String {
        Catalogues::default().negotiate(header, fallback)
    }

    fn translate(locale: &str, key: &str) -> String {
        Catalogues::default().translate(locale, key)
    }

    #[test]
    fn tags_map_to_shipped_locales() {
        for tag in ["pt-BR", "pt_BR", "PT-br", "pt", "pt-PT"] {
            assert_eq!(supported(tag).as_deref(), Some("pt_BR"), "{tag}");
        }
        for tag in ["en", "en-US", "EN_gb"] {
            assert_eq!(supported(tag).as_deref(), Some("en"), "{tag}");
        }
        assert_eq!(supported("de-DE"), None);
        assert_eq!(supported("*"), None);
    }

    #[test]
    fn an_apps_catalogue_is_negotiated_and_falls_back_to_english() {
        let mut catalogues = Catalogues::default();
        let german = [("http.too_many_requests", "Zu viele Anfragen.")];
        catalogues.register(
            "de",
            german.map(|(k, v)| (k.to_owned(), v.to_owned())).into(),
        );
        assert_eq!(catalogues.negotiate(Some("de-AT, en;q=0.5"), "en"), "de");
        assert_eq!(
            catalogues.translate("de", "http.too_many_requests"),
            "Zu viele Anfragen."
        );
        assert!(
            catalogues
                .translate("de", "http.service_unavailable")
                .starts_with("The service")
        );
        let english = [("http.too_many_requests", "Easy, tiger.")];
        catalogues.register(
            "en",
            english.map(|(k, v)| (k.to_owned(), v.to_owned())).into(),
        );
        assert_eq!(
            catalogues.translate("en", "http.too_many_requests"),
            "Easy, tiger."
        );
        assert_eq!(content_language("pt_BR"), "pt-BR");
    }

    #[test]
    fn negotiation_honours_q_values_order_and_fallback() {
        assert_eq!(negotiate(Some("pt-BR"), "en"), "pt_BR");
        assert_eq!(negotiate(Some("en;q=0.5, pt-BR;q=0.9"), "en"), "pt_BR");
        assert_eq!(negotiate(Some("pt-BR;q=0.5, en;q=0.9"), "en"), "en");
        assert_eq!(negotiate(Some("de, pt;q=0.8, en;q=0.7"), "en"), "pt_BR");
        assert_eq!(negotiate(Some("pt;q=0, en;q=0.1"), "pt_BR"), "en");
        assert_eq!(negotiate(Some("de, fr"), "pt_BR"), "pt_BR");
        assert_eq!(negotiate(None, "en"), "en");
        assert_eq!(negotiate(Some(";;;,,q=,\u{1F600}"), "en"), "en");
    }

    #[test]
    fn q_values_are_read_as_rfc_9110_writes_them() {
        for (text, q) in [
            ("1", 1000),
            ("1.000", 1000),
            ("0", 0),
            ("0.5", 500),
            ("0.125", 125),
        ] {
            assert_eq!(qvalue(text), Some(q), "{text}");
        }
        for text in ["1.5", "2", "-1", "NaN", "0.1234", "", ".5", "1e0", "0.x"] {
            assert_eq!(qvalue(text), None, "{text}");
        }
        assert_eq!(
            negotiate(Some("pt;q=1.5, en;q=0.2"), "de"),
            "en",
            "a bad q drops its range"
        );
    }

    #[test]
    fn negotiation_reads_a_bounded_head_of_the_header() {
        let junk = |n: usize| vec!["xx-yy"; n].join(", ");
        let within = format!("{}, pt-BR", junk(MAX_LANGUAGE_RANGES - 1));
        assert_eq!(negotiate(Some(&within), "en"), "pt_BR");
        let past_the_ranges = format!("{}, pt-BR", junk(MAX_LANGUAGE_RANGES));
        assert_eq!(negotiate(Some(&past_the_ranges), "en"), "en");
        // One long range fills the byte bound: what follows it is not read, and a range cut
        // by the bound is dropped rather than read as a shorter tag.
        let long = format!("en;q=0.1, {}, pt-BR", "x".repeat(MAX_ACCEPT_LANGUAGE_BYTES));
        assert_eq!(negotiate(Some(&long), "de"), "en");
        let cut = format!("{}pt", " ".repeat(MAX_ACCEPT_LANGUAGE_BYTES - 2));
        assert_eq!(negotiate(Some(&cut), "en"), "pt_BR", "whole: 4,096 bytes");
        let cut = format!("{}pt-BR", " ".repeat(MAX_ACCEPT_LANGUAGE_BYTES - 2));
        assert_eq!(negotiate(Some(&cut), "en"), "en", "cut at `pt`: dropped");
        // A 300 KB header of ranges is read in its first 32.
        let huge = junk(50_000);
        assert!(huge.len() > 300_000);
        assert_eq!(negotiate(Some(&huge), "en"), "en");
    }

    #[test]
    fn messages_fall_back_to_english_then_to_the_key() {
        assert!(translate("pt_BR", "http.too_many_requests").starts_with("Muitas"));
        assert!(translate("en", "http.too_many_requests").starts_with("Too many"));
        assert_eq!(translate("pt_BR", "no.such.key"), "no.such.key");
    }
}
