//! Arbitrary `Accept-Language` headers on a 429: the body is JSON in one of the shipped
//! languages, never a panic.

#![no_main]

use std::{net::SocketAddr, sync::OnceLock};

use axum::{Router, body::Body, extract::ConnectInfo, routing::get};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use jtc_throttle::ThrottleLayer;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

struct World {
    runtime: tokio::runtime::Runtime,
    app: Router,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| World {
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        // One request per hour for everybody: after the first, every request is a 429.
        app: Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(ThrottleLayer::new(1, 3600).key_fn(|_| Some("everyone".to_owned()))),
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = HeaderValue::from_bytes(data) else {
        return;
    };
    let world = world();
    world.runtime.block_on(async {
        for _ in 0..2 {
            let mut request = Request::get("/").body(Body::empty()).unwrap();
            request
                .headers_mut()
                .insert(http::header::ACCEPT_LANGUAGE, value.clone());
            let peer: SocketAddr = "203.0.113.1:1000".parse().unwrap();
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = world.app.clone().oneshot(request).await.unwrap();
            if response.status() == StatusCode::TOO_MANY_REQUESTS {
                let language = response
                    .headers()
                    .get(http::header::CONTENT_LANGUAGE)
                    .cloned();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert!(json["error"].is_string(), "{json}");
                if let Some(language) = language {
                    assert!(
                        ["en", "pt-BR"].contains(&language.to_str().unwrap()),
                        "{language:?}"
                    );
                }
            }
        }
    });
});
