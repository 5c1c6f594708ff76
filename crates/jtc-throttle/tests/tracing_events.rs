//! The limiter's events. Alone in its test binary: `tracing` caches per call site whether
//! anyone listens, and tests of other files running at the same time with no subscriber would
//! make that answer "nobody".

mod common;

use axum::{Router, routing::get};
use common::{request, send};
use jtc_throttle::ThrottleLayer;

const PEER: &str = "203.0.113.9:50000";

/// Each decision is told to the log at debug level — allowed, remaining, the limit's name —
/// without the client or the key.
#[tokio::test]
async fn each_decision_is_a_debug_event_without_personal_data() {
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Events(Arc<Mutex<Vec<String>>>);
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Events {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            let mut line = String::new();
            event.record(
                &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                    line.push_str(&format!("{}={value:?} ", field.name()));
                },
            );
            if line.contains("jtc-throttle: decision") {
                self.0.lock().unwrap().push(line);
            }
        }
    }

    let events = Events::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(events.clone()));
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(ThrottleLayer::new(1, 60).name("login"));
    send(&app, request("/", PEER, &[])).await;
    send(&app, request("/", PEER, &[])).await;
    let lines = events.0.lock().unwrap().clone();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].contains("allowed=true") && lines[0].contains("remaining=0"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("allowed=false"), "{}", lines[1]);
    assert!(
        lines[0].contains("policy=default") && lines[0].contains("limiter=throttle:login"),
        "{}",
        lines[0]
    );
    assert!(
        lines.iter().all(|l| !l.contains("203.0.113.9")),
        "no client address: {lines:#?}"
    );
}
