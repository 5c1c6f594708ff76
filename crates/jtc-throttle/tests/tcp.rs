//! The layer behind real TCP servers with many concurrent clients: exact on every store,
//! exact across two app instances sharing one Redis, and sane while Redis is down.

mod common;

use std::{net::SocketAddr, time::Duration};

use axum::{Router, routing::get};
use common::{burst, get_status, serve};
use http::StatusCode;
use jtc_cache::{Cache, FileDriver, RedisConfig, RedisDriver};
use jtc_test_support::{RedisServer, shared_server, unique_prefix};
use jtc_throttle::{Algorithm, StoreErrorPolicy, ThrottleLayer};

const LIMIT: u64 = 100;
const REQUESTS: usize = 1_000;

fn app(layer: ThrottleLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer)
}

async fn redis_cache(prefix: &str) -> Cache {
    Cache::new(
        RedisDriver::connect(&shared_server().url(), prefix)
            .await
            .unwrap(),
    )
}

async fn assert_exact(addresses: &[SocketAddr]) {
    let (ok, limited, other) = burst(addresses, "/", REQUESTS).await;
    assert_eq!(
        (ok, limited, other),
        (LIMIT as usize, REQUESTS - LIMIT as usize, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_counters_are_exact_under_a_burst() {
    for algorithm in [Algorithm::FixedWindow, Algorithm::SlidingWindow] {
        let address = serve(app(ThrottleLayer::new(LIMIT, 60).algorithm(algorithm))).await;
        assert_exact(&[address]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_driver_counters_are_exact_under_a_burst() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(FileDriver::new(dir.path()).unwrap());
    let address = serve(app(ThrottleLayer::new(LIMIT, 60).with_cache(cache))).await;
    assert_exact(&[address]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_counters_are_exact_under_a_burst() {
    for algorithm in [Algorithm::FixedWindow, Algorithm::SlidingWindow] {
        let cache = redis_cache(&unique_prefix("burst")).await;
        let layer = ThrottleLayer::new(LIMIT, 60)
            .algorithm(algorithm)
            .with_cache(cache);
        let address = serve(app(layer)).await;
        assert_exact(&[address]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_app_instances_sharing_redis_admit_the_limit_together() {
    let prefix = unique_prefix("shared");
    // Two instances: separate layers, separate connections, one Redis.
    let first = serve(app(
        ThrottleLayer::new(LIMIT, 60).with_cache(redis_cache(&prefix).await)
    ))
    .await;
    let second = serve(app(
        ThrottleLayer::new(LIMIT, 60).with_cache(redis_cache(&prefix).await)
    ))
    .await;
    assert_exact(&[first, second]).await;
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
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let status = get_status(address, "/").await;
        assert!(
            status == StatusCode::OK || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
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
