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

    /// The locale named by `tag` (`pt-BR`, `pt_br`, `pt` → `pt_BR`), the app's first.
    pub(crate) fn supported(&self, tag: &str) -> Option<String> {
        let names = || {
            self.custom
                .iter()
                .map(|(l, _)| l.as_str())
                .chain(CATALOGUES.iter().map(|(l, _)| *l))
        };
        let language = normalize(tag);
        let language = language.split('-').next().unwrap_or_default().to_owned();
        names()
            .find(|name| same_tag(name, tag))
            .or_else(|| names().find(|name| normalize(name).split('-').next() == Some(&language)))
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
        let mut best: Option<(f32, String)> = None;
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
/// The most language ranges that negotiation reads (real browsers send fewer than ten).
pub(crate) const MAX_LANGUAGE_RANGES: usize = 32;

/// `pt_BR`, `pt-br` → `pt-br`.
fn normalize(tag: &str) -> String {
    tag.trim().replace('_', "-").to_ascii_lowercase()
}

fn same_tag(a: &str, b: &str) -> bool {
    normalize(a) == normalize(b)
}

/// The language tag of a locale for `Content-Language`: `pt_BR` → `pt-BR`.
pub(crate) fn content_language(locale: &str) -> String {
    locale.replace('_', "-")
}

/// The language ranges of an `Accept-Language` header with their q-values, in header order;
/// `q=0` and malformed ones left out. Bounded: the first [`MAX_LANGUAGE_RANGES`] ranges of the
/// first [`MAX_ACCEPT_LANGUAGE_BYTES`] (a range cut by that bound is dropped).
fn ranges(header: &str) -> impl Iterator<Item = (f32, &str)> {
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
            let mut parts = item.split(';');
            let tag = parts.next()?.trim();
            let q = parts
                .filter_map(|p| {
                    p.trim()
                        .strip_prefix("q=")
                        .or_else(|| p.trim().strip_prefix("Q="))
                })
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (!tag.is_empty() && q > 0.0 && q <= 1.0).then_some((q, tag))
        })
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
