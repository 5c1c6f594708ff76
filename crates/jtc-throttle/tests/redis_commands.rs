//! What the limiter costs Redis, counted by the server itself (`INFO commandstats`) on a
//! server of the test's own: a rejected flood sends nothing, several limits on one key cost
//! at most one script per admitted request, and concurrent requests of one key share their
//! round trips (one `INCRBY` or one script for a batch), and clients hanging up mid-batch leave
//! no key stuck.

mod common;

use std::collections::HashMap;

use axum::{Router, routing::get};
use common::{burst, get_status, serve};
use jtc_cache::{Cache, RedisDriver};
use jtc_test_support::RedisServer;
use jtc_throttle::{Limit, ThrottleLayer};
use std::time::Duration;
use tokio::{io::AsyncWriteExt, net::TcpStream};

fn app(layer: ThrottleLayer) -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(layer)
}

/// Calls per command since the last `CONFIG RESETSTAT`, without the `INFO` and `CONFIG`
/// calls of the test itself.
fn commands(server: &RedisServer) -> HashMap<String, u64> {
    server
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            (!name.starts_with("info") && !name.starts_with("config"))
                .then(|| (name.to_owned(), calls))
        })
        .collect()
}

fn reset(server: &RedisServer) {
    server.cli(&["CONFIG", "RESETSTAT"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_flood_sends_no_command_to_redis() {
    let server = RedisServer::start();
    let cache = Cache::new(RedisDriver::connect(&server.url(), "flood:").await.unwrap());
    let address = serve(app(ThrottleLayer::new(10, 60).with_cache(cache))).await;
    let counts = burst(&[address], "/", 11).await;
    assert_eq!(
        (counts.0, counts.1),
        (10, 1),
        "ten admitted, the eleventh rejected"
    );
    reset(&server);
    let flood = burst(&[address], "/", 2_000).await;
    assert_eq!(flood, (0, 2_000, 0));
    assert_eq!(
        commands(&server),
        HashMap::new(),
        "the flood stayed in the process"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_limits_cost_at_most_one_script_per_admitted_request() {
    let server = RedisServer::start();
    let cache = Cache::new(RedisDriver::connect(&server.url(), "two:").await.unwrap());
    let layer =
        ThrottleLayer::dynamic(|_| vec![Limit::per_second(1_000), Limit::per_hour(100_000)].into())
            .with_cache(cache);
    let address = serve(app(layer)).await;
    burst(&[address], "/", 1).await; // loads the script
    reset(&server);
    let counts = burst(&[address], "/", 200).await;
    assert_eq!(counts, (200, 0, 0));
    // The server counts the commands a script runs too; the client sent only the scripts.
    let mut commands = commands(&server);
    let scripts = commands.remove("evalsha").unwrap_or(0);
    assert!(
        (1..=200).contains(&scripts),
        "{scripts} scripts for 200 requests: one per request at the most"
    );
    let inside_the_script = ["time", "get", "set"];
    for (name, calls) in commands {
        assert!(
            inside_the_script.contains(&name.as_str()),
            "{name} ×{calls} was sent"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hits_on_one_key_share_round_trips() {
    let server = RedisServer::start();
    let cache = Cache::new(RedisDriver::connect(&server.url(), "batch:").await.unwrap());
    let address = serve(app(ThrottleLayer::new(100_000, 60).with_cache(cache))).await;
    burst(&[address], "/", 1).await; // loads the script
    reset(&server);
    let counts = burst(&[address], "/", 2_000).await;
    assert_eq!(counts, (2_000, 0, 0));
    let scripts = commands(&server).get("evalsha").copied().unwrap_or(0);
    assert!(
        scripts < 2_000,
        "{scripts} scripts for 2,000 concurrent requests of one client"
    );
    let counter = server.cli(&["GET", "batch:throttle:100000per60000ms:127.0.0.1:/"]);
    assert_eq!(counter.trim(), "2001", "every request counted once");
}

/// Several limits on one key: concurrent requests share scripts (one script run counts a
/// batch, one request after the other), and exactly as many are admitted as the tighter
/// limit allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_with_two_limits_share_scripts_and_stay_exact() {
    let server = RedisServer::start();
    let cache = Cache::new(
        RedisDriver::connect(&server.url(), "batch2:")
            .await
            .unwrap(),
    );
    let layer = ThrottleLayer::dynamic(|_| {
        vec![Limit::per_second(1_000_000), Limit::per_hour(1_500)].into()
    })
    .with_cache(cache);
    let address = serve(app(layer)).await;
    reset(&server);
    let counts = burst(&[address], "/", 2_000).await;
    assert_eq!(counts, (1_500, 500, 0), "the hourly limit, exactly");
    let scripts = commands(&server).get("evalsha").copied().unwrap_or(0);
    assert!(
        scripts < 1_500,
        "{scripts} scripts for 2,000 concurrent requests of one client"
    );
}

/// Clients that hang up while their requests wait for Redis (wrk closing its connections at
/// the end of a run, a browser tab closed) leave no key of the limiter stuck: requests queued
/// behind a batch are dropped at every stage of it, and the next request is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_hanging_up_mid_batch_leave_no_key_stuck() {
    let server = RedisServer::start();
    let cache = Cache::new(
        RedisDriver::connect(&server.url(), "hangup:")
            .await
            .unwrap(),
    );
    let one = serve(app(
        ThrottleLayer::new(1_000_000, 60).with_cache(cache.clone())
    ))
    .await;
    let two = ThrottleLayer::dynamic(|_| {
        vec![Limit::per_second(1_000_000), Limit::per_hour(1_000_000)].into()
    });
    let two = serve(app(two.with_cache(cache))).await;
    for wave in 0..20u64 {
        let tasks: Vec<_> = (0..200u64)
            .map(|i| {
                let address = if i % 2 == 0 { one } else { two };
                tokio::spawn(async move {
                    let mut stream = TcpStream::connect(address).await.unwrap();
                    let request = "GET / HTTP/1.1\r\nHost: test\r\n\r\n";
                    stream.write_all(request.as_bytes()).await.unwrap();
                    // Hang up at different points of the batches in flight.
                    tokio::time::sleep(Duration::from_micros((i * 37 + wave * 101) % 1_500)).await;
                    drop(stream);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        for address in [one, two] {
            let answered =
                tokio::time::timeout(Duration::from_secs(10), get_status(address, "/")).await;
            assert_eq!(
                answered.unwrap_or_else(|_| panic!("wave {wave}: no answer, a key is stuck")),
                http::StatusCode::OK
            );
        }
    }
}
