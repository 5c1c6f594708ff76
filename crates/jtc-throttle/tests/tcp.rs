//! The layer behind real TCP servers while its Redis store is down: the outage policies,
//! recovery, and no 500 when Redis dies in the middle of a burst. Exactness on every store is
//! in the suite (stores.rs).

mod common;

use std::time::Duration;

use axum::{Router, routing::get};
use common::{burst, get_status, serve};
use http::StatusCode;
use jtc_cache::{Cache, RedisConfig, RedisDriver};
use jtc_test_support::RedisServer;
use jtc_throttle::{StoreErrorPolicy, ThrottleLayer};

fn app(layer: ThrottleLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .route("/other", get(|| async { "other" }))
        .layer(layer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_follows_the_policy_and_recovers() {
    let mut server = RedisServer::start();
    let connect = |prefix: &'static str| {
        let config = RedisConfig::from_url(server.url())
            .prefix(prefix)
            .command_timeout(Duration::from_millis(200));
        async move { Cache::new(RedisDriver::from_config(&config).await.unwrap()) }
    };
    let fallback = serve(app(
        ThrottleLayer::new(5, 60).with_cache(connect("fallback:").await)
    ))
    .await;
    let open = serve(app(ThrottleLayer::new(5, 60)
        .with_cache(connect("open:").await)
        .on_store_error(StoreErrorPolicy::FailOpen)))
    .await;
    let closed = serve(app(ThrottleLayer::new(5, 60)
        .with_cache(connect("closed:").await)
        .on_store_error(StoreErrorPolicy::FailClosed)))
    .await;
    for address in [fallback, open, closed] {
        assert_eq!(get_status(address, "/").await, StatusCode::OK);
    }

    server.stop();
    let (ok, limited, other) = burst(&[fallback], "/", 20).await;
    assert_eq!(
        (ok, limited, other),
        (5, 15, 0),
        "counted in memory meanwhile, no 500s"
    );
    let (ok, _, other) = burst(&[open], "/", 20).await;
    assert_eq!((ok, other), (20, 0), "fail open lets everything through");
    for _ in 0..5 {
        assert_eq!(
            get_status(closed, "/").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    server.restart();
    // The layer leaves a failed store alone for a second, then goes back to it by itself.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while get_status(closed, "/").await != StatusCode::OK {
        assert!(std::time::Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Back on Redis: the restarted (empty) server counts from scratch, shared again.
    let (ok, limited, _) = burst(&[closed], "/", 10).await;
    assert_eq!(ok + limited, 10);
    assert!(ok <= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_in_the_middle_of_a_burst_never_yields_a_500() {
    let mut server = RedisServer::start();
    let config = RedisConfig::from_url(server.url())
        .prefix("midburst:")
        .command_timeout(Duration::from_millis(200));
    let cache = Cache::new(RedisDriver::from_config(&config).await.unwrap());
    let address = serve(app(ThrottleLayer::new(50, 60).with_cache(cache))).await;

    // 400 requests in flight while the server is killed under them.
    let load = tokio::spawn(async move { burst(&[address], "/", 400).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    server.stop();
    let (ok, limited, other) = load.await.unwrap();
    assert_eq!(other, 0, "only 200s and 429s ({ok} ok, {limited} limited)");
    assert_eq!(ok + limited, 400);
    // Counted in Redis before the kill and in memory after: never more than the two limits.
    assert!(ok <= 100, "{ok} admitted");

    server.restart();
    // A client Redis had already turned away before the kill stays turned away by the deny
    // cache until its window ends, without asking Redis: the return to Redis shows on a
    // route (a key) that nobody was refused on.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        for path in ["/", "/other"] {
            let status = get_status(address, path).await;
            assert!(
                status == StatusCode::OK || status == StatusCode::TOO_MANY_REQUESTS,
                "{path}: {status}"
            );
        }
        if server.cli(&["KEYS", "midburst:*"]).contains("midburst:") {
            break; // counting in Redis again
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the layer did not return to Redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
