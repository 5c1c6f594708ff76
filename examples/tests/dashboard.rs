//! docs/grafana/jtc.json: it parses, has the panels operators look for, and every query names
//! a metric the libraries report (and every metric they report is on it).

use std::collections::BTreeSet;

use jtc_cache::metrics as cache;
use jtc_throttle::metrics as throttle;

const DASHBOARD: &str = include_str!("../../docs/grafana/jtc.json");

/// The names a query may use: the metrics, and the series Prometheus makes of a histogram.
fn reported() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = [
        cache::GETS,
        cache::WRITES,
        cache::DELETES,
        cache::ERRORS,
        cache::NEAR_READS,
        cache::NEAR_INVALIDATIONS,
        cache::NEAR_EVICTIONS,
        cache::NEAR_ENTRIES,
        throttle::REQUESTS,
        throttle::STORE_FALLBACK_ACTIVE,
    ]
    .map(str::to_owned)
    .into();
    for suffix in ["_bucket", "_sum", "_count"] {
        names.insert(format!("{}{suffix}", cache::DURATION));
    }
    names
}

/// Every `jtc_…` identifier in a query.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("jtc_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

/// The labels of every `by (…)` clause.
fn grouping_labels(expr: &str) -> Vec<String> {
    expr.split("by (")
        .skip(1)
        .flat_map(|part| part.split(')').next().unwrap_or_default().split(','))
        .map(|label| label.trim().to_owned())
        .collect()
}

#[test]
fn the_dashboard_parses_and_every_query_names_a_reported_metric() {
    let dashboard: serde_json::Value = serde_json::from_str(DASHBOARD).expect("valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Cache hit ratio",
        "Cache operations per second",
        "Cache p99 latency by operation",
        "Requests limited per second, by route",
        "Rate limit store fallback",
    ] {
        assert!(
            titles.contains(&wanted),
            "no panel {wanted:?} in {titles:?}"
        );
    }

    let reported = reported();
    let known_labels = ["cache", "op", "result", "kind", "le", "limiter", "route"];
    let mut used = BTreeSet::new();
    let mut queries: Vec<String> = Vec::new();
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        queries.extend(
            targets
                .iter()
                .map(|t| t["expr"].as_str().unwrap().to_owned()),
        );
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["definition"].as_str() {
            queries.push(query.to_owned());
        }
    }
    for expr in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "a query with no jtc metric: {expr}");
        for name in names {
            assert!(
                reported.contains(&name),
                "{name} is not reported (in {expr})"
            );
            used.insert(name.trim_end_matches("_bucket").to_owned());
        }
        for label in grouping_labels(expr) {
            assert!(
                known_labels.contains(&label.as_str()),
                "label {label} in {expr}"
            );
        }
    }
    for metric in [
        cache::GETS,
        cache::WRITES,
        cache::DELETES,
        cache::ERRORS,
        cache::DURATION,
        cache::NEAR_READS,
        cache::NEAR_INVALIDATIONS,
        cache::NEAR_EVICTIONS,
        cache::NEAR_ENTRIES,
    ]
    .into_iter()
    .chain([throttle::REQUESTS, throttle::STORE_FALLBACK_ACTIVE])
    {
        assert!(used.contains(metric), "{metric} is on no panel");
    }
}

#[test]
fn the_checks_catch_a_misspelt_metric() {
    assert_eq!(
        metric_names("rate(jtc_cache_get_total[5m])"),
        ["jtc_cache_get_total"]
    );
    assert!(!reported().contains("jtc_cache_get_total"));
    assert_eq!(grouping_labels("sum by (cache, op) (x)"), ["cache", "op"]);
}
