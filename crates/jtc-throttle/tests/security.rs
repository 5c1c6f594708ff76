//! What one client can make the limiter do to everyone else, tried as an attacker would over
//! real TCP (and real Redis): no way around a limit by picking an identity, no outage mode
//! switched on for everyone by one odd key, no memory eaten by long keys, no CPU eaten by a
//! huge `Accept-Language`. docs/security.md's threat table names these tests.

mod common;

use std::{net::SocketAddr, time::Duration};

use axum::{Router, routing::get};
use common::{get_status, serve};
use http::StatusCode;
use jtc_cache::{Cache, RedisConfig, RedisDriver};
use jtc_test_support::RedisServer;
use jtc_throttle::{ForwardedHeader, Limit, RateLimiter, StoreErrorPolicy, ThrottleLayer};

fn app(layer: ThrottleLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer)
}

/// One `GET /` over a fresh connection with `headers`; the status code.
async fn status_with(address: SocketAddr, headers: &[(&str, &str)]) -> StatusCode {
    common::status_with(address, "/", headers).await
}

async fn admitted(address: SocketAddr, headers: &[(&str, &str)], requests: usize) -> usize {
    let mut ok = 0;
    for _ in 0..requests {
        if status_with(address, headers).await == StatusCode::OK {
            ok += 1;
        }
    }
    ok
}

/// A layer keyed by a header the client sends (an API key, a user name), over Redis.
async fn keyed_by_header(server: &RedisServer, prefix: &str, policy: StoreErrorPolicy) -> Router {
    let config = RedisConfig::from_url(server.url())
        .prefix(prefix)
        .command_timeout(Duration::from_millis(500));
    let cache = Cache::new(RedisDriver::from_config(&config).await.unwrap());
    let layer = ThrottleLayer::dynamic(|req| {
        let key = req
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous");
        Limit::per_minute(5).by(format!("key:{key}")).into()
    })
    .with_cache(cache)
    .on_store_error(policy);
    app(layer)
}

/// Point 1 of the security review: one request with a 100 KB key (over the cache's 64 KiB key
/// limit) made the store refuse it, which the limiter took for an outage and applied its
/// policy to every client for a second. Now the key is digested before any store sees it, and
/// a refused key would be that request's problem alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_client_chosen_key_neither_fails_nor_switches_the_policy_on_for_others() {
    let server = RedisServer::start();
    let huge = "k".repeat(100_000);
    for (prefix, policy) in [
        ("open:", StoreErrorPolicy::FailOpen),
        ("closed:", StoreErrorPolicy::FailClosed),
        ("fallback:", StoreErrorPolicy::FallbackToMemory),
    ] {
        let address = serve(keyed_by_header(&server, prefix, policy).await).await;
        let attacker = [("x-api-key", huge.as_str())];
        assert_eq!(
            status_with(address, &attacker).await,
            StatusCode::OK,
            "{policy:?}: the long key is counted like any other"
        );
        // Right after it, a fresh client gets exactly its limit, counted in Redis.
        let fresh = [("x-api-key", "fresh-client")];
        assert_eq!(
            admitted(address, &fresh, 10).await,
            5,
            "{policy:?}: a fresh client at a limit of 5"
        );
        // The attacker's own key has a limit too: 4 more of 10 pass.
        assert_eq!(admitted(address, &attacker, 10).await, 4, "{policy:?}");
        // Both counters live in Redis under bounded keys.
        let keys = server.cli(&["--scan", "--pattern", &format!("{prefix}*")]);
        assert_eq!(keys.lines().count(), 2, "{policy:?}: {keys}");
        assert!(
            keys.lines().all(|key| key.len() < 300),
            "{policy:?}: stored keys are short: {keys}"
        );
    }
}

/// The same through `RateLimiter`: a 100 KB key is counted, in Redis, under a digest shared by
/// every instance (two limiters on one Redis see one count).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiter_counts_huge_keys_under_one_shared_digest() {
    let server = RedisServer::start();
    let connect = || async {
        let config = RedisConfig::from_url(server.url()).prefix("rl:");
        Cache::new(RedisDriver::from_config(&config).await.unwrap())
    };
    let one = RateLimiter::with_cache(connect().await);
    let two = RateLimiter::with_cache(connect().await);
    let key = format!("login:{}", "a".repeat(100_000));
    let limit = Limit::per_minute(3);
    assert!(one.hit(&key, &limit).await.unwrap().allowed());
    assert!(two.hit(&key, &limit).await.unwrap().allowed());
    assert!(one.hit(&key, &limit).await.unwrap().allowed());
    assert!(!two.hit(&key, &limit).await.unwrap().allowed(), "one count");
    // A key differing in its last byte is another client.
    let other = format!("{}b", &key[..key.len() - 1]);
    assert!(one.hit(&other, &limit).await.unwrap().allowed());
    two.clear(&key).await.unwrap();
    assert!(one.hit(&key, &limit).await.unwrap().allowed(), "cleared");
}

/// Point 2: nginx (`proxy_add_x_forwarded_for`) and AWS ALB append the client's address to
/// `X-Forwarded-For` and pass a `Forwarded` header the client wrote through untouched. The
/// limiter reads only the header it is told the proxies write, so a made-up `Forwarded` buys
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_pick_its_identity_behind_a_proxy_that_appends_x_forwarded_for() {
    // The test connects from 127.0.0.1: that is the trusted proxy.
    let layer = ThrottleLayer::new(5, 60).trusted_proxies(["127.0.0.1/32".parse().unwrap()]);
    let address = serve(app(layer)).await;
    let mut ok = 0;
    for i in 0..20 {
        // What the proxy sends on: the client's own headers, then its address appended.
        let spoofed = format!("for=192.0.2.{i}");
        let chain = format!("203.0.113.{i}, 198.51.100.7");
        let headers = [
            ("forwarded", spoofed.as_str()),
            ("x-forwarded-for", chain.as_str()),
        ];
        if status_with(address, &headers).await == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 5, "one client (198.51.100.7), a limit of 5");

    // Told that the proxies write `Forwarded`, the layer reads that one and ignores a
    // client's own X-Forwarded-For.
    let layer = ThrottleLayer::new(5, 60)
        .trusted_proxies(["127.0.0.1/32".parse().unwrap()])
        .forwarded_header(ForwardedHeader::Forwarded);
    let address = serve(app(layer)).await;
    let mut ok = 0;
    for i in 0..20 {
        let spoofed = format!("192.0.2.{i}");
        let headers = [
            ("x-forwarded-for", spoofed.as_str()),
            ("forwarded", "for=198.51.100.7"),
        ];
        if status_with(address, &headers).await == StatusCode::OK {
            ok += 1;
        }
    }
    assert_eq!(ok, 5);
    // And a peer that is not a trusted proxy is itself the client, whatever it sends.
    assert_eq!(get_status(address, "/").await, StatusCode::OK);
}

/// Point 3: the in-memory limiter was bounded in keys, not bytes; 6,000 keys of 100 KB took
/// 590 MB. Every key now costs a bounded amount, whatever its length.
#[tokio::test]
async fn twenty_thousand_huge_keys_cost_a_few_megabytes() {
    let limiter = RateLimiter::memory();
    let limit = Limit::per_minute(5);
    let tail = "x".repeat(100_000);
    for i in 0..20_000 {
        let key = format!("{i}:{tail}");
        assert!(limiter.hit(&key, &limit).await.unwrap().allowed());
    }
    let usage = limiter.memory_usage();
    assert_eq!(usage.keys, 20_000);
    let per_key = usage.bytes / usage.keys;
    assert!(
        usage.bytes < 4 << 20,
        "{} bytes for {} keys ({per_key} a key)",
        usage.bytes,
        usage.keys
    );
    assert!(per_key < 400, "{per_key} bytes a key");

    // The same through the layer's own counters, keys from a header.
    let layer = ThrottleLayer::new(5, 60).key_fn(|req| {
        req.headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    });
    let limiter = layer.limiter();
    let address = serve(app(layer)).await;
    for i in 0..200 {
        let key = format!("{i}:{}", &tail[..60_000]);
        let status = status_with(address, &[("x-api-key", key.as_str())]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let usage = limiter.memory_usage();
    assert_eq!(usage.keys, 200);
    assert!(usage.bytes < 200 * 400, "{usage:?}");
}
