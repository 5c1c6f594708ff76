//! The limiter's metrics (feature `metrics`), read back from a recording recorder: requests
//! per limiter, route and result, and the store-fallback gauge through an outage and back.

mod common;

use std::time::Duration;

use axum::{
    Router,
    routing::{get, post},
};
use common::{request, send};
use http::{Method, StatusCode};
use jtc_cache::{Cache, FileDriver};
use jtc_throttle::{StoreErrorPolicy, ThrottleLayer, metrics as names};
use metrics_util::{
    CompositeKey,
    debugging::{DebugValue, DebuggingRecorder, Snapshotter},
};

const PEER: &str = "203.0.113.9:50000";

fn values(snapshotter: &Snapshotter) -> Vec<(CompositeKey, DebugValue)> {
    let snapshot = snapshotter.snapshot().into_vec();
    snapshot.into_iter().map(|(k, _, _, v)| (k, v)).collect()
}

fn find<'a>(
    values: &'a [(CompositeKey, DebugValue)],
    name: &str,
    labels: &[(&str, &str)],
) -> Option<&'a DebugValue> {
    values.iter().find_map(|(key, value)| {
        let key = key.key();
        let mut found: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        found.sort_unstable();
        let mut wanted = labels.to_vec();
        wanted.sort_unstable();
        (key.name() == name && found == wanted).then_some(value)
    })
}

fn requests(values: &[(CompositeKey, DebugValue)], route: &str, result: &str) -> u64 {
    let labels = [("limiter", "api"), ("route", route), ("result", result)];
    match find(values, names::REQUESTS, &labels) {
        Some(DebugValue::Counter(count)) => *count,
        other => panic!("{route} {result}: {other:?}"),
    }
}

fn fallback(values: &[(CompositeKey, DebugValue)]) -> Option<f64> {
    match find(values, names::STORE_FALLBACK_ACTIVE, &[("limiter", "api")]) {
        Some(DebugValue::Gauge(value)) => Some(value.0),
        None => None,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn requests_are_counted_by_route_template_and_result() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let app = Router::new()
        .route(
            "/users/{id}",
            get(|| async { "user" }).post(|| async { "saved" }),
        )
        .layer(ThrottleLayer::new(2, 60).name("api").methods([Method::GET]));
    for id in [7, 8, 9] {
        send(&app, request(&format!("/users/{id}"), PEER, &[])).await;
    }
    let mut write = request("/users/7", PEER, &[]);
    *write.method_mut() = Method::POST;
    assert_eq!(send(&app, write).await.status(), StatusCode::OK);

    let seen = values(&snapshotter);
    assert_eq!(requests(&seen, "/users/{id}", "allowed"), 2);
    assert_eq!(requests(&seen, "/users/{id}", "limited"), 1);
    assert_eq!(
        requests(&seen, "/users/{id}", "uncounted"),
        1,
        "POST is not limited"
    );
    assert_eq!(requests(&seen, "/users/{id}", "store_error"), 0);
    for (key, _) in &seen {
        for label in key.key().labels() {
            let value = label.value();
            assert!(
                !value.contains("203.0.113") && !value.contains("/users/7"),
                "{value}"
            );
        }
    }
}

#[tokio::test]
async fn an_outage_counts_store_errors_and_raises_the_fallback_gauge_until_the_store_answers() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("limits");
    let cache = Cache::new(FileDriver::new(&root).unwrap());
    let app = Router::new()
        .route("/pay", post(|| async { "paid" }))
        .layer(
            ThrottleLayer::new(100, 60)
                .name("api")
                .with_cache(cache)
                .on_store_error(StoreErrorPolicy::FailOpen),
        );
    let pay = || {
        let mut pay = request("/pay", PEER, &[]);
        *pay.method_mut() = Method::POST;
        pay
    };
    assert_eq!(send(&app, pay()).await.status(), StatusCode::OK);
    // A snapshot reads counters as counts since the previous one.
    let before = values(&snapshotter);
    assert_eq!(requests(&before, "/pay", "allowed"), 1);
    assert_eq!(fallback(&before), None, "never failed: no gauge yet");

    // The store's folder becomes a file: every hit fails, and fail-open lets requests by.
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::write(&root, b"not a folder").unwrap();
    for _ in 0..3 {
        assert_eq!(send(&app, pay()).await.status(), StatusCode::OK);
    }
    let during = values(&snapshotter);
    assert_eq!(requests(&during, "/pay", "allowed"), 0);
    assert_eq!(requests(&during, "/pay", "store_error"), 3);
    assert_eq!(fallback(&during), Some(1.0));

    // The store comes back; after the limiter's one-second pause it is asked again.
    std::fs::remove_file(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(send(&app, pay()).await.status(), StatusCode::OK);
    let after = values(&snapshotter);
    assert_eq!(requests(&after, "/pay", "allowed"), 1);
    assert_eq!(requests(&after, "/pay", "store_error"), 0);
    assert_eq!(fallback(&after), Some(0.0));
}
