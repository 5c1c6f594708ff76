//! The response cache's metrics (feature `metrics`), read back from a recording recorder:
//! requests by cache, route template and result, and never a URL in a label.

#![cfg(feature = "metrics")]

use axum::{Router, body::Body, http::header, routing::get};
use http::{Method, Request};
use jtc_cache::{ArrayDriver, Cache};
use jtc_http::{ResponseCacheLayer, metrics::REQUESTS};
use metrics_util::{
    CompositeKey,
    debugging::{DebugValue, DebuggingRecorder},
};
use tower::ServiceExt;

async fn send(app: &Router, method: Method, path: &str) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    app.clone().oneshot(request).await.unwrap();
}

fn count(seen: &[(CompositeKey, DebugValue)], route: &str, result: &str) -> u64 {
    let wanted = [("cache", "pages"), ("result", result), ("route", route)];
    seen.iter()
        .find_map(|(key, value)| {
            let key = key.key();
            let mut labels: Vec<(&str, &str)> =
                key.labels().map(|l| (l.key(), l.value())).collect();
            labels.sort_unstable();
            (key.name() == REQUESTS && labels == wanted).then_some(value)
        })
        .map_or(0, |value| match value {
            DebugValue::Counter(count) => *count,
            other => panic!("{other:?}"),
        })
}

#[tokio::test]
async fn requests_are_counted_by_route_template_and_result() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let cache = Cache::new(ArrayDriver::new()).named("pages");
    let app = Router::new()
        .route(
            "/reports/{id}",
            get(|| async { ([(header::CACHE_CONTROL, "public, max-age=30")], "report") }),
        )
        .route(
            "/live",
            get(|| async { ([(header::CACHE_CONTROL, "no-store")], "live") }),
        )
        .layer(ResponseCacheLayer::new(cache));
    for path in ["/reports/1", "/reports/1", "/reports/2", "/live"] {
        send(&app, Method::GET, path).await;
    }
    send(&app, Method::POST, "/reports/1").await;

    let seen: Vec<_> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| (key, value))
        .collect();
    assert_eq!(count(&seen, "/reports/{id}", "miss"), 2);
    assert_eq!(count(&seen, "/reports/{id}", "hit"), 1);
    assert_eq!(count(&seen, "/live", "uncacheable"), 1);
    assert_eq!(count(&seen, "/reports/{id}", "bypass"), 1);
    for (key, _) in &seen {
        for label in key.key().labels() {
            assert!(!label.value().contains("/reports/1"), "{}", label.value());
        }
    }
}
