//! The layer's own cost per request, without sockets: a hello-world Router called in process
//! (`oneshot`) with no limiter, with tower_governor (headers on) and with `ThrottleLayer`
//! in memory, passing and flooded (429s), and a `from_fn` middleware that only adds the two
//! headers; and the flood again with a 300 KB `Accept-Language` (a client making each 429
//! negotiate a huge header: it must cost within 2x a plain 429).
//! `cargo bench -p jtc-throttle --bench layer`.

use std::{hint::black_box, net::SocketAddr, time::Duration};

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request};
use jtc_throttle::ThrottleLayer;
use std::sync::atomic::{AtomicU64, Ordering};
use tower::ServiceExt;

const QUOTA: u64 = 8_000_000;

fn request(accept_language: Option<&HeaderValue>) -> Request<Body> {
    let mut request = Request::get("/").body(Body::empty()).unwrap();
    if let Some(value) = accept_language {
        request
            .headers_mut()
            .insert(http::header::ACCEPT_LANGUAGE, value.clone());
    }
    let peer: SocketAddr = "203.0.113.9:50000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

async fn floor(request: Request<Body>, next: axum::middleware::Next) -> axum::response::Response {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .cloned();
    black_box((peer, route));
    let mut response = next.run(request).await;
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(QUOTA));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(QUOTA - count));
    response
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
    // 300 KB of language ranges no catalogue has, Brazilian Portuguese last.
    let mut huge = vec!["xx-yy;q=0.5"; 27_000].join(", ");
    huge.push_str(", pt-BR");
    let huge = HeaderValue::from_str(&huge).unwrap();
    let plain_header = HeaderValue::from_static("pt-BR, en;q=0.8");
    let apps = [
        ("plain", router(), None),
        // A `from_fn` middleware doing the least any limiter with headers does: read the peer
        // and the route, count, and add `X-RateLimit-Limit` and `X-RateLimit-Remaining`.
        (
            "from-fn-two-headers",
            router().layer(axum::middleware::from_fn(floor)),
            None,
        ),
        (
            "tower-governor",
            router().layer(tower_governor::GovernorLayer::new(governor)),
            None,
        ),
        (
            "throttle-memory",
            router().layer(ThrottleLayer::new(QUOTA, 60)),
            None,
        ),
        (
            // Every request but the first ten is a 429.
            "throttle-memory-flood",
            router().layer(ThrottleLayer::new(10, 60)),
            None,
        ),
        (
            "throttle-memory-flood-accept-language",
            router().layer(ThrottleLayer::new(10, 60)),
            Some(&plain_header),
        ),
        (
            "throttle-memory-flood-accept-language-300kb",
            router().layer(ThrottleLayer::new(10, 60)),
            Some(&huge),
        ),
    ];
    let mut group = c.benchmark_group("layer");
    // The worst case: 64 different huge headers in turn, so no request repeats the header of
    // the one before (the thread's last negotiation never applies).
    let varying: Vec<HeaderValue> = (0..64)
        .map(|i| HeaderValue::from_str(&format!("x{i}, {}", huge.to_str().unwrap())).unwrap())
        .collect();
    let app: Router = router().layer(ThrottleLayer::new(10, 60)).with_state(());
    let mut turn = 0;
    group.bench_function("throttle-memory-flood-accept-language-300kb-varying", |b| {
        b.to_async(&rt).iter(|| {
            turn = (turn + 1) % varying.len();
            let (app, request) = (app.clone(), request(Some(&varying[turn])));
            async move { black_box(app.oneshot(request).await.unwrap()) }
        })
    });
    for (name, app, accept_language) in apps {
        // As `axum::serve` does: handlers compiled into routes once, not on every request.
        let app: Router = app.with_state(());
        group.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let app = app.clone();
                let request = request(accept_language);
                async move { black_box(app.oneshot(request).await.unwrap()) }
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
