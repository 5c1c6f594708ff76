//! The layer's own cost per request, without sockets: a hello-world Router called in process
//! (`oneshot`) with no limiter, with tower_governor (headers on) and with `ThrottleLayer`
//! in memory, passing and flooded (429s). `cargo bench -p jtc-throttle --bench layer`.

use std::{hint::black_box, net::SocketAddr, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use jtc_throttle::ThrottleLayer;
use tower::ServiceExt;

const QUOTA: u64 = 8_000_000;

fn request() -> Request<Body> {
    let mut request = Request::get("/").body(Body::empty()).unwrap();
    let peer: SocketAddr = "203.0.113.9:50000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let router = || Router::new().route("/", get(|| async { "Hello, World!" }));
    let governor = tower_governor::governor::GovernorConfigBuilder::default()
        .per_nanosecond(600)
        .burst_size(QUOTA as u32)
        .use_headers()
        .finish()
        .unwrap();
    let apps = [
        ("plain", router()),
        (
            "tower-governor",
            router().layer(tower_governor::GovernorLayer::new(governor)),
        ),
        (
            "throttle-memory",
            router().layer(ThrottleLayer::new(QUOTA, 60)),
        ),
        (
            // Every request but the first ten is a 429.
            "throttle-memory-flood",
            router().layer(ThrottleLayer::new(10, 60)),
        ),
    ];
    let mut group = c.benchmark_group("layer");
    for (name, app) in apps {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let app = app.clone();
                async move { black_box(app.oneshot(request()).await.unwrap()) }
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = layer
}
criterion_main!(benches);
