//! Cache warming (`jtc_cache::warm`): the concurrency bound, the run's timeout, failures and
//! skips reported exactly, progress; a fleet of caches on one Redis loading each entry once;
//! refresh ahead keeping a 1 s key from ever missing; readiness over real HTTP.

#![cfg(all(feature = "redis", feature = "axum"))]

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use jtc_cache::{
    ArrayDriver, Cache, Clock, ErrorKind, RedisDriver,
    warm::{Progress, Warmer},
};
use jtc_test_support::{shared_server, unique_prefix};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOUR: Duration = Duration::from_secs(3600);

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("item:{i}")).collect()
}

#[tokio::test(start_paused = true)]
async fn no_more_loaders_run_at_once_than_the_concurrency_allows() {
    let cache = Cache::new(ArrayDriver::new());
    let (running, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (r, m) = (Arc::clone(&running), Arc::clone(&most));
    let report = Warmer::new(&cache)
        .entries(keys(100), HOUR, move |key| {
            let (running, most) = (Arc::clone(&r), Arc::clone(&m));
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<_, Infallible>(key)
            }
        })
        .concurrency(4)
        .run()
        .await;
    assert_eq!(report.loaded, 100);
    assert_eq!(most.load(Ordering::SeqCst), 4, "four at once, never five");
    assert_eq!(
        cache.get::<String>("item:99").await.unwrap().as_deref(),
        Some("item:99")
    );
}

#[tokio::test(start_paused = true)]
async fn the_timeout_stops_the_run_and_reports_every_entry_it_left() {
    let cache = Cache::new(ArrayDriver::new());
    let report = Warmer::new(&cache)
        .entries(keys(10), HOUR, |key| async move {
            let slow = key.trim_start_matches("item:").parse::<u32>().unwrap() >= 5;
            if slow {
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Ok::<_, Infallible>(1)
        })
        .concurrency(10)
        .timeout(Duration::from_secs(1))
        .run()
        .await;
    assert_eq!(report.loaded, 5);
    let left: Vec<_> = report.failed.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(left, ["item:5", "item:6", "item:7", "item:8", "item:9"]);
    for (_, error) in &report.failed {
        assert!(
            matches!(error.kind(), ErrorKind::Timeout { operation: "warm", after } if *after == Duration::from_secs(1)),
            "{error:?}"
        );
    }
    assert!(report.took >= Duration::from_secs(1) && report.took < Duration::from_secs(2));
    // The cancelled loaders wrote nothing, and never will.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert!(!cache.has("item:7").await.unwrap());
}

#[tokio::test]
async fn failures_and_skips_are_reported_exactly_and_overwrite_reloads() {
    let cache = Cache::new(ArrayDriver::new());
    for key in ["item:0", "item:1", "item:2"] {
        cache.put(key, &"old", HOUR).await.unwrap();
    }
    let calls = Arc::new(AtomicUsize::new(0));
    let warmer = |overwrite| {
        let calls = Arc::clone(&calls);
        Warmer::new(&cache)
            .entries(keys(10), HOUR, move |key| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    match key.as_str() {
                        "item:4" | "item:8" => Err(format!("no row for {key}")),
                        _ => Ok(format!("new {key}")),
                    }
                }
            })
            .overwrite(overwrite)
    };
    let seen = Arc::new(Mutex::new(Vec::<Progress>::new()));
    let log = Arc::clone(&seen);
    let report = warmer(false)
        .on_progress(move |p| log.lock().unwrap().push(p))
        .run()
        .await;
    assert_eq!((report.loaded, report.skipped), (5, 3));
    let failed: Vec<_> = report.failed.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(failed, ["item:4", "item:8"]);
    assert!(matches!(report.failed[0].1.kind(), ErrorKind::Loader { key, .. } if key == "item:4"));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        7,
        "skipped entries never load"
    );
    assert_eq!(
        cache.get::<String>("item:0").await.unwrap().as_deref(),
        Some("old")
    );
    assert_eq!(
        cache.get::<String>("item:3").await.unwrap().as_deref(),
        Some("new item:3")
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 10, "one report per entry");
    assert!(seen.windows(2).all(|w| w[0].done + 1 == w[1].done));
    let last = seen.last().unwrap();
    assert_eq!(
        (
            last.done,
            last.total,
            last.loaded,
            last.skipped,
            last.failed
        ),
        (10, 10, 5, 3, 2)
    );

    let again = warmer(true).run().await;
    assert_eq!((again.loaded, again.skipped, again.failed.len()), (8, 0, 2));
    assert_eq!(
        cache.get::<String>("item:0").await.unwrap().as_deref(),
        Some("new item:0")
    );
}

/// `handles` caches on one Redis (each its own connection), warming the same 500 entries at
/// once with `once_per`: every loader runs once in all.
async fn a_fleet_loads_each_entry_once(handles: usize) {
    let prefix = unique_prefix("fleet");
    let calls: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let mut runs = Vec::new();
    for _ in 0..handles {
        let driver = RedisDriver::connect(&shared_server().url(), &prefix)
            .await
            .unwrap();
        let cache = Cache::new(driver);
        let calls = Arc::clone(&calls);
        runs.push(tokio::spawn(async move {
            Warmer::new(&cache)
                .entries(keys(500), HOUR, move |key| {
                    *calls.lock().unwrap().entry(key.clone()).or_default() += 1;
                    async move {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        Ok::<_, Infallible>(key)
                    }
                })
                .concurrency(16)
                .once_per(Duration::from_secs(60))
                .run()
                .await
        }));
    }
    let (mut loaded, mut skipped) = (0, 0);
    for run in runs {
        let report = run.await.unwrap();
        assert!(report.failed.is_empty(), "{:?}", report.failed);
        loaded += report.loaded;
        skipped += report.skipped;
    }
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 500);
    assert!(calls.values().all(|n| *n == 1), "a loader ran twice");
    assert_eq!((loaded, skipped), (500, 500 * (handles - 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_caches_on_one_redis_load_each_entry_once() {
    a_fleet_loads_each_entry_once(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_caches_on_one_redis_load_each_entry_once() {
    a_fleet_loads_each_entry_once(4).await;
}

#[tokio::test(start_paused = true)]
async fn once_per_lets_another_instance_load_an_entry_whose_loader_failed() {
    let cache = Cache::new(ArrayDriver::new());
    let failing = Warmer::new(&cache)
        .entry("k", HOUR, || async { Err::<u8, _>("down") })
        .once_per(HOUR)
        .run()
        .await;
    assert_eq!(failing.failed.len(), 1);
    let second = Warmer::new(&cache)
        .entry("k", HOUR, || async { Ok::<_, Infallible>(7u8) })
        .once_per(HOUR)
        .run()
        .await;
    assert_eq!(second.loaded, 1, "the failed loader released its lock");
    // A third instance within the period skips it, even with overwrite.
    let third = Warmer::new(&cache)
        .entry("k", HOUR, || async { Ok::<_, Infallible>(9u8) })
        .once_per(HOUR)
        .overwrite(true)
        .run()
        .await;
    assert_eq!((third.loaded, third.skipped), (0, 1));
    assert_eq!(cache.get::<u8>("k").await.unwrap(), Some(7));
}

/// The cache's clock on tokio's (paused) time, so that expiry and refresh move together.
#[derive(Debug)]
struct TokioClock(tokio::time::Instant);

impl Clock for TokioClock {
    fn now_ms(&self) -> u64 {
        1_700_000_000_000 + self.0.elapsed().as_millis() as u64
    }
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_keeps_a_hot_1_s_key_from_ever_missing_and_stops_when_dropped() {
    let driver = ArrayDriver::builder()
        .clock(TokioClock(tokio::time::Instant::now()))
        .build();
    let cache = Cache::new(driver);
    let loads = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&loads);
    let mut report = Warmer::new(&cache)
        .entry("hot", Duration::from_secs(1), move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok::<_, Infallible>(n)
            }
        })
        .refresh_ahead(0.8)
        .run()
        .await;
    let refresh = report.refresh.take().expect("a refresh handle");
    assert_eq!(refresh.entries(), 1);
    let mut misses = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if cache.get::<usize>("hot").await.unwrap().is_none() {
            misses += 1;
        }
    }
    assert_eq!(misses, 0, "a refreshed key never misses");
    let loaded = loads.load(Ordering::SeqCst);
    assert!((5..=8).contains(&loaded), "{loaded} loads in 5 s, not 100");
    drop(refresh);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        loads.load(Ordering::SeqCst),
        loaded,
        "dropping the handle stops it"
    );
    assert_eq!(
        cache.get::<usize>("hot").await.unwrap(),
        None,
        "and the key expires"
    );
}

/// A GET over a fresh TCP connection: the status code, the headers and the body.
async fn get(port: u16, path: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_holds_routes_with_503_and_retry_after_until_warm_and_answers_the_probe() {
    use axum::{Router, routing::get as route};

    let cache = Cache::new(ArrayDriver::new());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let opened = Arc::clone(&gate);
    let warmer = Warmer::new(&cache)
        .entries(keys(3), HOUR, move |key| {
            let gate = Arc::clone(&opened);
            async move {
                gate.acquire().await.unwrap().forget();
                Ok::<_, Infallible>(key)
            }
        })
        .concurrency(1);
    let readiness = warmer.readiness();
    let app: Router = Router::new()
        .route("/data", route(|| async { "warm data" }))
        .route_layer(readiness.layer())
        .route("/ready", readiness.route());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let run = tokio::spawn(warmer.run());

    let (status, head, body) = get(port, "/data").await;
    assert_eq!(status, 503);
    assert!(head.contains("retry-after: 5"), "{head}");
    assert!(body.contains(r#""ready":false"#), "{body}");
    gate.add_permits(1);
    // One entry done: the probe shows it.
    let mut probe = get(port, "/ready").await;
    while !probe.2.contains(r#""done":1"#) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        probe = get(port, "/ready").await;
    }
    assert_eq!(probe.0, 503);
    let json: serde_json::Value = serde_json::from_str(&probe.2).unwrap();
    assert_eq!(json["ready"], false);
    assert_eq!(
        (json["done"].as_u64(), json["total"].as_u64()),
        (Some(1), Some(3))
    );

    gate.add_permits(2);
    let report = run.await.unwrap();
    assert_eq!(report.loaded, 3);
    let (status, _, body) = get(port, "/data").await;
    assert_eq!((status, body.as_str()), (200, "warm data"));
    let (status, _, body) = get(port, "/ready").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["ready"], true);
    assert_eq!(json["loaded"], 3);
}
