//! How much memory the in-process limiter holds for 1,000,000 distinct clients inside one
//! window: `cargo run --release --example throttle_memory [clients] [capacity]`.
//!
//! Each client is a distinct IPv4 address sending one request through a `ThrottleLayer` on a
//! Router (in process, no sockets). The process's resident memory is read from
//! `/proc/self/status` before and after; the baseline is the same Router without the layer.

use std::net::{Ipv4Addr, SocketAddr};

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use http::Request;
use jtc_throttle::ThrottleLayer;
use tower::ServiceExt;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn drive(app: &Router, clients: u32) {
    for i in 0..clients {
        let ip = Ipv4Addr::from(0x0A00_0000 + i); // 10.0.0.0 upwards
        let mut request = Request::get("/").body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
        let response = app.clone().oneshot(request).await.unwrap();
        assert!(response.status().is_success());
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let clients: u32 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let capacity: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let router = || Router::new().route("/", get(|| async { "ok" }));

    let start = rss_kib();
    let plain = router();
    drive(&plain, clients).await;
    let baseline = rss_kib();
    // Keep the throttled router (and so its counters) alive while measuring.
    let throttled = router().layer(ThrottleLayer::new(10, 60).memory_capacity(capacity));
    drive(&throttled, clients).await;
    let limited = rss_kib();
    drop((plain, throttled));
    println!("clients: {clients}, capacity: {capacity} keys");
    println!("RSS at start:                {start:>8} KiB");
    println!("RSS after the plain router:  {baseline:>8} KiB");
    println!(
        "RSS after the throttled one: {:>8} KiB (+{} KiB)",
        limited,
        limited.saturating_sub(baseline)
    );
}
