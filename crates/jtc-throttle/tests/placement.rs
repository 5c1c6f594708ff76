//! Where the layer sits: inside the `Router` it sees each route's template; wrapped around
//! the whole `Router` it sees none, and says so once. A binary of its own: the warning is
//! given once per process.

mod common;

use std::{
    io,
    sync::{Arc, Mutex},
};

use axum::{Router, routing::get};
use common::{request, send};
use http::StatusCode;
use jtc_throttle::ThrottleLayer;
use tower::Layer;

const PEER: &str = "203.0.113.9:50000";

/// Collects what the `fmt` subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn warnings(&self) -> usize {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.matches("without a matched route").count()
    }
}

fn routes() -> Router {
    Router::new()
        .route("/a", get(|| async { "a" }))
        .route("/b", get(|| async { "b" }))
}

#[tokio::test]
async fn a_layer_outside_the_router_is_told_once_and_one_inside_is_not() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // Inside: routes count apart, and unmatched paths (404) are no sign of anything.
    let inside = routes().layer(ThrottleLayer::new(1, 60));
    for path in ["/a", "/b", "/nope", "/nope"] {
        send(&inside, request(path, PEER, &[])).await;
    }
    assert_eq!(
        send(&inside, request("/b", PEER, &[])).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(captured.warnings(), 0);

    // Outside (what `ServiceBuilder::new().layer(throttle).service(router)` builds): every
    // route shares one bucket, and the layer says so, once.
    let outside = Router::new().fallback_service(ThrottleLayer::new(2, 60).layer(routes()));
    assert_eq!(
        send(&outside, request("/a", PEER, &[])).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&outside, request("/b", PEER, &[])).await.status(),
        StatusCode::OK
    );
    let third = send(&outside, request("/a", PEER, &[])).await;
    assert_eq!(
        third.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "one bucket for all routes"
    );
    assert_eq!(captured.warnings(), 1);
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        text.contains("WARN") && text.contains("Router::layer"),
        "{text}"
    );
}
