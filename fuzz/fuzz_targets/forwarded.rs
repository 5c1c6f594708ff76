//! Arbitrary `X-Forwarded-For` and `Forwarded` headers behind a trusted proxy, read as either
//! header: the client the layer settles on is an address (or an IPv6 prefix), never a panic.

#![no_main]

use std::{
    net::{IpAddr, SocketAddr},
    sync::{Mutex, OnceLock},
};

use arbitrary::Arbitrary;
use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use http::{HeaderValue, Request};
use jtc_throttle::{ForwardedHeader, ThrottleLayer};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

#[derive(Debug, Arbitrary)]
struct Input {
    forwarded_for: Vec<u8>,
    forwarded: Vec<u8>,
    peer_v6: bool,
    /// Read `Forwarded` instead of `X-Forwarded-For`.
    rfc_7239: bool,
}

struct World {
    runtime: tokio::runtime::Runtime,
    /// Reading `X-Forwarded-For`, and reading `Forwarded`.
    apps: [Router; 2],
}

static SEEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        // A limit no run reaches (the first 10-minute run found that 1,000,000 requests from
        // the peer's own bucket do reach a limit of 1,000,000 — the limiter working).
        let layer = |header| {
            ThrottleLayer::new(1 << 40, 3600)
                .trusted_proxies(["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()])
                .forwarded_header(header)
                .memory_capacity(10_000)
                .key_fn(|info| {
                    SEEN.lock().unwrap().push(info.client.to_owned());
                    Some(info.client.to_owned())
                })
        };
        let app = |header| {
            Router::new()
                .route("/", get(|| async { "ok" }))
                .layer(layer(header))
        };
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            apps: [
                app(ForwardedHeader::XForwardedFor),
                app(ForwardedHeader::Forwarded),
            ],
        }
    })
}

fuzz_target!(|input: Input| {
    let world = world();
    let mut request = Request::get("/").body(Body::empty()).unwrap();
    if let Ok(value) = HeaderValue::from_bytes(&input.forwarded_for) {
        request.headers_mut().insert("x-forwarded-for", value);
    }
    if let Ok(value) = HeaderValue::from_bytes(&input.forwarded) {
        request.headers_mut().insert(http::header::FORWARDED, value);
    }
    let peer: SocketAddr = if input.peer_v6 {
        "[fd00::1]:443"
    } else {
        "10.0.0.1:443"
    }
    .parse()
    .unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    world.runtime.block_on(async {
        let app = &world.apps[usize::from(input.rfc_7239)];
        let response = app.clone().oneshot(request).await.unwrap();
        assert!(response.status().is_success());
    });
    for client in SEEN.lock().unwrap().drain(..) {
        let address = client.split('/').next().unwrap();
        assert!(
            address.parse::<IpAddr>().is_ok(),
            "client {client:?} is not an address"
        );
    }
});
