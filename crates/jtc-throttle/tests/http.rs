//! The layer on real Routers, in process (`oneshot`): identity, i18n, hooks, headers of
//! stacked layers. Timing, exactness and sharing on every store are in the suite (stores.rs).

mod common;

use axum::{
    Router,
    body::Body,
    routing::{get, post},
};
use common::{header, json, request, send};
use http::{Response, StatusCode};
use jtc_throttle::ThrottleLayer;

const PEER: &str = "203.0.113.9:50000";

fn app(layer: ThrottleLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/users/{id}", get(|| async { "user" }))
        .layer(layer)
}

#[tokio::test]
async fn the_route_template_is_one_bucket_and_unmatched_paths_share_one() {
    let app = app(ThrottleLayer::new(3, 60));
    for id in 1..=3 {
        let response = send(&app, request(&format!("/users/{id}"), PEER, &[])).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let fourth = send(&app, request("/users/4", PEER, &[])).await;
    assert_eq!(fourth.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        send(&app, request("/", PEER, &[])).await.status(),
        StatusCode::OK,
        "another route"
    );

    // A flood of distinct unknown paths is one bucket, not a bucket per path.
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(ThrottleLayer::new(5, 60));
    let mut statuses = Vec::new();
    for i in 0..20 {
        statuses.push(
            send(&app, request(&format!("/probe/{i}/x{i}"), PEER, &[]))
                .await
                .status(),
        );
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::NOT_FOUND)
            .count(),
        5
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        15
    );
}

#[tokio::test]
async fn spoofed_forwarding_headers_from_untrusted_peers_change_nothing() {
    let app = app(ThrottleLayer::new(2, 60));
    for i in 0..5 {
        let fake = format!("198.51.100.{i}");
        let response = send(
            &app,
            request(
                "/",
                PEER,
                &[
                    ("x-forwarded-for", &fake),
                    ("forwarded", &format!("for={fake}")),
                ],
            ),
        )
        .await;
        let expected = if i < 2 {
            StatusCode::OK
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(response.status(), expected, "request {i}");
    }
}

#[tokio::test]
async fn clients_behind_trusted_proxies_are_told_apart() {
    let xff = app(ThrottleLayer::new(1, 60).trusted_proxies(["10.0.0.0/8".parse().unwrap()]));
    let via_proxy = |client: &str| {
        let chain = format!("{client}, 10.0.0.7");
        request("/", "10.0.0.1:443", &[("x-forwarded-for", chain.as_str())])
    };
    assert_eq!(
        send(&xff, via_proxy("192.0.2.1")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&xff, via_proxy("192.0.2.2")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&xff, via_proxy("192.0.2.1")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let rfc_7239 = app(ThrottleLayer::new(1, 60)
        .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
        .forwarded_header(jtc_throttle::ForwardedHeader::Forwarded));
    let forwarded = |client: &str| {
        let element = format!("for={client};proto=https");
        request("/", "10.0.0.1:443", &[("forwarded", element.as_str())])
    };
    assert_eq!(
        send(&rfc_7239, forwarded("192.0.2.3")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&rfc_7239, forwarded("192.0.2.4")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&rfc_7239, forwarded("192.0.2.3")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn ipv6_clients_rotating_inside_a_64_share_a_bucket() {
    let app = app(ThrottleLayer::new(3, 60));
    let mut statuses = Vec::new();
    for i in 0..10 {
        let peer = format!("[2001:db8:aa:bb:{i:x}::{i:x}]:4000");
        statuses.push(send(&app, request("/", &peer, &[])).await.status());
    }
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 3);
    let other_network = send(&app, request("/", "[2001:db8:aa:cc::1]:4000", &[])).await;
    assert_eq!(other_network.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_429_body_is_translated_json() {
    let app = app(ThrottleLayer::new(0, 60));
    let cases = [
        (vec![("accept-language", "pt-BR")], "Muitas requisições"),
        (vec![("accept-language", "pt_BR")], "Muitas requisições"),
        (vec![("accept-language", "pt")], "Muitas requisições"),
        (
            vec![("accept-language", "en-US,en;q=0.9")],
            "Too many requests",
        ),
        (
            vec![("accept-language", "en;q=0.4, pt-BR;q=0.8")],
            "Muitas requisições",
        ),
        (
            vec![("accept-language", "pt-BR;q=0.1, en;q=0.8")],
            "Too many requests",
        ),
        (vec![("accept-language", "de-DE")], "Too many requests"),
        (vec![], "Too many requests"),
    ];
    for (headers, expected) in cases {
        let response = send(&app, request("/", PEER, &headers)).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        let body = json(response).await;
        let message = body["error"].as_str().unwrap();
        assert!(message.starts_with(expected), "{headers:?}: {message}");
        assert_eq!(body["retry_after"], 60);
    }
    let fallback_pt = app_with_locale("pt-BR");
    let body = json(
        send(
            &fallback_pt,
            request("/", PEER, &[("accept-language", "ja")]),
        )
        .await,
    )
    .await;
    assert!(
        body["error"].as_str().unwrap().starts_with("Muitas"),
        "{body}"
    );
}

fn app_with_locale(locale: &str) -> Router {
    app(ThrottleLayer::new(0, 60).fallback_locale(locale))
}

#[tokio::test]
async fn per_route_and_global_layers_count_apart_and_the_tighter_figures_win() {
    let app = Router::new()
        .route(
            "/login",
            post(|| async { "token" }).layer(ThrottleLayer::new(2, 60).name("login")),
        )
        .route("/", get(|| async { "hello" }))
        .layer(ThrottleLayer::new(5, 60).name("global"));
    let login = || {
        let mut r = request("/login", PEER, &[]);
        *r.method_mut() = http::Method::POST;
        r
    };
    let first = send(&app, login()).await;
    assert_eq!(header(&first, "x-ratelimit-limit"), Some("2"));
    assert_eq!(header(&first, "x-ratelimit-remaining"), Some("1"));
    assert_eq!(send(&app, login()).await.status(), StatusCode::OK);
    let third = send(&app, login()).await;
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&third, "x-ratelimit-limit"),
        Some("2"),
        "the route's limit is tighter"
    );

    let home = send(&app, request("/", PEER, &[])).await;
    assert_eq!(header(&home, "x-ratelimit-limit"), Some("5"));
    assert_eq!(
        header(&home, "x-ratelimit-remaining"),
        Some("4"),
        "/ has its own global bucket"
    );
}

#[tokio::test]
async fn hooks_custom_keys_and_ietf_headers() {
    let app = Router::new().route("/", get(|| async { "hello" })).layer(
        ThrottleLayer::new(1, 60)
            .ietf_headers(true)
            .key_fn(|info| {
                (info.headers.get("x-api-key").is_none()).then(|| info.client.to_owned())
            })
            .on_limited(|limited| {
                let mut response =
                    Response::new(Body::from(format!("slow down, {}", limited.locale)));
                *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
                response
            }),
    );
    let first = send(&app, request("/", PEER, &[])).await;
    assert_eq!(
        header(&first, "ratelimit-policy"),
        Some("\"default\";q=1;w=60")
    );
    assert_eq!(header(&first, "ratelimit"), Some("\"default\";r=0;t=60"));
    let second = send(&app, request("/", PEER, &[("accept-language", "pt-BR")])).await;
    assert_eq!(second.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&second, "retry-after"),
        Some("60"),
        "headers are added to hook responses"
    );
    let body = axum::body::to_bytes(second.into_body(), 1024)
        .await
        .unwrap();
    assert_eq!(&body[..], b"slow down, pt_BR");
    for _ in 0..3 {
        let keyed = send(&app, request("/", PEER, &[("x-api-key", "k")])).await;
        assert_eq!(keyed.status(), StatusCode::OK, "a None key is not counted");
    }
}

#[tokio::test]
async fn without_connect_info_every_client_shares_one_bucket() {
    let app = app(ThrottleLayer::new(2, 60));
    let bare = || http::Request::get("/").body(Body::empty()).unwrap();
    assert_eq!(send(&app, bare()).await.status(), StatusCode::OK);
    assert_eq!(send(&app, bare()).await.status(), StatusCode::OK);
    assert_eq!(
        send(&app, bare()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_hundred_thousand_distinct_paths_are_one_bucket() {
    // Matched and unmatched: a scanner walking 100,000 paths gets the one limit, and the
    // limiter's memory does not grow per path.
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(ThrottleLayer::new(1_000, 60).memory_capacity(16));
    let mut admitted = 0;
    for i in 0..100_000u32 {
        let path = if i % 2 == 0 {
            format!("/users/{i}")
        } else {
            format!("/scan/{i}/{}", "x".repeat((i % 50) as usize))
        };
        if send(&app, request(&path, PEER, &[])).await.status() != StatusCode::TOO_MANY_REQUESTS {
            admitted += 1;
        }
    }
    // One bucket for /users/{id}, one for everything unmatched.
    assert_eq!(admitted, 2_000);
}

/// The `on_limited` hook is told who and what: the key counted, the client, the route and the
/// name of the limit that rejected.
#[tokio::test]
async fn the_hook_knows_the_key_client_route_and_policy() {
    use jtc_throttle::{Limit, Limited};
    use std::sync::{Arc, Mutex};

    let seen: Arc<Mutex<Vec<Limited>>> = Arc::default();
    let hook_seen = Arc::clone(&seen);
    let layer = ThrottleLayer::dynamic(|req| match req.headers.get("x-user") {
        Some(user) => Limit::per_minute(1)
            .by(format!("user:{}", user.to_str().unwrap_or("?")))
            .name("per-user")
            .into(),
        None => Limit::per_minute(1).into(),
    })
    .on_limited(move |limited| {
        hook_seen.lock().unwrap().push(limited.clone());
        Response::builder().status(429).body(Body::empty()).unwrap()
    });
    let app = app(layer);
    for _ in 0..2 {
        send(&app, request("/users/7", PEER, &[("x-user", "ana")])).await;
        send(&app, request("/users/7", PEER, &[])).await;
    }
    let seen = seen.lock().unwrap();
    let [by_user, by_client] = &seen[..] else {
        panic!("two rejections: {seen:?}")
    };
    assert_eq!(by_user.key, "user:ana");
    assert_eq!(by_user.policy, "per-user");
    assert_eq!(by_user.client, "203.0.113.9");
    assert_eq!(by_user.route, "/users/{id}");
    assert_eq!(by_client.key, "203.0.113.9:/users/{id}");
    assert_eq!(by_client.policy, "1-per-60s");
    assert_eq!((by_client.limit, by_client.retry_after_secs), (1, 60));
}

/// The status, headers (in order) and body of a response.
async fn wire(response: Response<Body>) -> (StatusCode, Vec<(String, String)>, Vec<u8>) {
    let status = response.status();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .collect();
    let body = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .unwrap();
    (status, headers, body.to_vec())
}

// A flood's repeated 429 is a copy of the last one a thread made (docs/benchmarks.md): each
// copy must be what a freshly made 429 would be, whatever else the thread answered meanwhile.
#[tokio::test]
async fn a_repeated_429_is_the_answer_made_afresh() {
    let clock = jtc_cache::ManualClock::new(1_700_000_000_000);
    let tight = app(ThrottleLayer::new(1, 60).clock(clock.clone()));
    let loose = app(ThrottleLayer::new(2, 30).clock(clock.clone()));
    for app in [&tight, &loose, &loose] {
        assert_eq!(
            send(app, request("/", PEER, &[])).await.status(),
            StatusCode::OK
        );
    }
    let first = wire(send(&tight, request("/", PEER, &[])).await).await;
    assert_eq!(first.0, StatusCode::TOO_MANY_REQUESTS);
    let names: Vec<&str> = first.1.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            "content-type",
            "content-language",
            "content-length",
            "x-ratelimit-remaining",
            "x-ratelimit-limit",
            "x-ratelimit-reset",
            "retry-after"
        ]
    );
    assert_eq!(first.1[2].1, first.2.len().to_string());
    // The second answer of a key is made afresh and kept; from the third on they are copies.
    for _ in 0..3 {
        assert_eq!(
            wire(send(&tight, request("/", PEER, &[])).await).await,
            first,
            "a repeat is byte for byte the first"
        );
    }
    // Another locale, another layer, then the first again, all on this thread.
    let portuguese =
        wire(send(&tight, request("/", PEER, &[("accept-language", "pt-BR")])).await).await;
    assert_eq!(header_of(&portuguese, "content-language"), "pt-BR");
    assert!(String::from_utf8_lossy(&portuguese.2).contains("Muitas"));
    let other = wire(send(&loose, request("/", PEER, &[])).await).await;
    assert_eq!(header_of(&other, "x-ratelimit-limit"), "2");
    assert_eq!(header_of(&other, "retry-after"), "30");
    for _ in 0..3 {
        assert_eq!(
            wire(send(&tight, request("/", PEER, &[])).await).await,
            first
        );
    }
    // A second later the figures move on.
    clock.advance(std::time::Duration::from_millis(1_500));
    let later = wire(send(&tight, request("/", PEER, &[])).await).await;
    assert_eq!(header_of(&later, "retry-after"), "59");
    assert_eq!(
        header_of(&later, "x-ratelimit-reset"),
        header_of(&first, "x-ratelimit-reset")
    );
    assert!(String::from_utf8_lossy(&later.2).contains("\"retry_after\":59"));
}

fn header_of<'a>(wire: &'a (StatusCode, Vec<(String, String)>, Vec<u8>), name: &str) -> &'a str {
    wire.1
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {:?}", wire.1))
}

// Limits decided per request may carry other names with the same figures: their IETF fields
// must name the rejecting request's own limit, never a copy of another's.
#[tokio::test]
async fn ietf_fields_of_per_request_limits_name_the_request_s_own_limit() {
    let app = app(ThrottleLayer::dynamic(|info| {
        let plan = info
            .headers
            .get("x-plan")
            .map_or("free", |v| v.to_str().unwrap());
        jtc_throttle::Limit::per_minute(1)
            .name(plan)
            .by(plan.to_owned())
            .into()
    })
    .ietf_headers(true));
    for plan in ["free", "pro"] {
        let ok = send(&app, request("/", PEER, &[("x-plan", plan)])).await;
        assert_eq!(ok.status(), StatusCode::OK);
    }
    for _ in 0..2 {
        for plan in ["free", "pro"] {
            let limited = send(&app, request("/", PEER, &[("x-plan", plan)])).await;
            assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
            let policy = header(&limited, "ratelimit-policy").unwrap();
            assert!(
                policy.starts_with(&format!("\"{plan}\"")),
                "{plan}: {policy}"
            );
        }
    }
}
