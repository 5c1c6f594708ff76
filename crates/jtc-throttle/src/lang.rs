//! Translated messages and `Accept-Language` negotiation.
//!
//! The catalogues are the JSON files in `resources/lang/` at the workspace root, embedded at
//! build time and looked up by key (`http.too_many_requests`).

use std::{collections::HashMap, sync::OnceLock};

/// The locales shipped, with their catalogues.
const CATALOGUES: &[(&str, &str)] = &[
    (
        "en",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../resources/lang/en.json"
        )),
    ),
    (
        "pt_BR",
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../resources/lang/pt_BR.json"
        )),
    ),
];

/// The locale used when nothing else matches.
pub(crate) const DEFAULT_LOCALE: &str = "en";

type Catalogue = HashMap<String, String>;

fn catalogues() -> &'static HashMap<&'static str, Catalogue> {
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

/// The shipped locale named by `tag` (`pt-BR`, `pt_br`, `pt` → `pt_BR`), if any.
pub(crate) fn supported(tag: &str) -> Option<&'static str> {
    let tag = tag.trim().replace('_', "-").to_ascii_lowercase();
    let language = tag.split('-').next().unwrap_or_default();
    let locales = || CATALOGUES.iter().map(|(locale, _)| *locale);
    locales()
        .find(|locale| locale.replace('_', "-").to_ascii_lowercase() == tag)
        .or_else(|| locales().find(|locale| locale.split('_').next() == Some(language)))
}

/// The message for `key` in `locale`, falling back to English, then to the key itself.
pub(crate) fn translate(locale: &str, key: &str) -> String {
    let all = catalogues();
    [locale, DEFAULT_LOCALE]
        .iter()
        .find_map(|l| all.get(l).and_then(|c| c.get(key)))
        .cloned()
        .unwrap_or_else(|| key.to_owned())
}

/// The best shipped locale for an `Accept-Language` header: highest q-value first, header
/// order among equals, `q=0` never; `fallback` when nothing matches.
pub(crate) fn negotiate(accept_language: Option<&str>, fallback: &'static str) -> &'static str {
    let Some(header) = accept_language else {
        return fallback;
    };
    let mut ranges: Vec<(f32, usize, &str)> = header
        .split(',')
        .enumerate()
        .filter_map(|(position, item)| {
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
            (!tag.is_empty() && q > 0.0 && q <= 1.0).then_some((q, position, tag))
        })
        .collect();
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    ranges
        .iter()
        .find_map(|(_, _, tag)| supported(tag))
        .unwrap_or(fallback)
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

    #[test]
    fn tags_map_to_shipped_locales() {
        for tag in ["pt-BR", "pt_BR", "PT-br", "pt", "pt-PT"] {
            assert_eq!(supported(tag), Some("pt_BR"), "{tag}");
        }
        for tag in ["en", "en-US", "EN_gb"] {
            assert_eq!(supported(tag), Some("en"), "{tag}");
        }
        assert_eq!(supported("de-DE"), None);
        assert_eq!(supported("*"), None);
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
    fn messages_fall_back_to_english_then_to_the_key() {
        assert!(translate("pt_BR", "http.too_many_requests").starts_with("Muitas"));
        assert!(translate("en", "http.too_many_requests").starts_with("Too many"));
        assert_eq!(translate("pt_BR", "no.such.key"), "no.such.key");
    }
}
