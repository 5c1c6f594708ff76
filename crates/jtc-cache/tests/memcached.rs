//! The conformance suite on real `memcached` servers, plus what only memcached can get wrong:
//! flushing without `flush_all`, keys the protocol cannot carry, several servers (consistent
//! hashing, one of them down), counters under heavy concurrency, TTLs beyond 30 days and the
//! item size limit.

#![cfg(feature = "memcached")]

mod conformance;

use std::time::{Duration, Instant};

use bytes::Bytes;
use conformance::Subject;
use jtc_cache::{Cache, CacheDriver, ErrorKind, ManualClock, MemcachedConfig, MemcachedDriver};
use jtc_test_support::{MemcachedServer, shared_memcached, unique_prefix};

const MINUTE: Duration = Duration::from_secs(60);

/// The driver decides expiry on its own clock (memcached's whole seconds only free memory),
/// so the suite moves a manual one: exact boundaries, no sleeping, nothing a loaded machine can
/// stall.
async fn subject() -> Subject {
    let clock = ManualClock::starting_now();
    let config = MemcachedConfig::new(&shared_memcached().address())
        .prefix(unique_prefix("conformance"))
        .clock(clock.clone());
    Subject {
        cache: Cache::new(MemcachedDriver::from_config(&config).await.unwrap()),
        clock: Some(clock),
        guard: Box::new(()),
    }
}

conformance_tests!(subject);

async fn connect(servers: &str, prefix: &str) -> Cache {
    Cache::new(MemcachedDriver::connect(servers, prefix).await.unwrap())
}

#[tokio::test]
async fn flush_leaves_foreign_keys_and_other_prefixes_alone() {
    let server = MemcachedServer::start();
    assert!(
        server
            .command("set foreign 0 0 3\r\nabc")
            .starts_with("STORED")
    );
    let (mine, theirs) = (
        connect(&server.address(), "mine:").await,
        connect(&server.address(), "theirs:").await,
    );
    mine.put("k", &1, MINUTE).await.unwrap();
    theirs.put("k", &2, MINUTE).await.unwrap();
    mine.flush().await.unwrap();
    assert_eq!(mine.get::<i32>("k").await.unwrap(), None);
    assert_eq!(theirs.get::<i32>("k").await.unwrap(), Some(2));
    assert!(server.command("get foreign").contains("abc"));
    assert_eq!(server.stat("cmd_flush"), 0, "flush_all was never sent");
    // Another instance of the same prefix sees the flush within its namespace check (1 s).
    let other = connect(&server.address(), "mine:").await;
    mine.put("k", &3, MINUTE).await.unwrap();
    assert_eq!(other.get::<i32>("k").await.unwrap(), Some(3));
    mine.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(other.get::<i32>("k").await.unwrap(), None);
}

#[tokio::test]
async fn a_namespace_check_of_zero_sees_another_instances_flush_at_once() {
    let server = shared_memcached();
    let prefix = unique_prefix("check");
    let config = MemcachedConfig::new(&server.address())
        .prefix(&prefix)
        .namespace_check(Duration::ZERO);
    let (a, b) = (
        Cache::new(MemcachedDriver::from_config(&config).await.unwrap()),
        Cache::new(MemcachedDriver::from_config(&config).await.unwrap()),
    );
    a.put("k", &1, MINUTE).await.unwrap();
    assert_eq!(b.get::<i32>("k").await.unwrap(), Some(1));
    a.flush().await.unwrap();
    assert_eq!(b.get::<i32>("k").await.unwrap(), None);
}

#[tokio::test]
async fn hostile_keys_are_stored_apart_and_never_become_commands() {
    let server = MemcachedServer::start();
    assert!(
        server
            .command("set foreign 0 0 3\r\nabc")
            .starts_with("STORED")
    );
    let cache = connect(&server.address(), "app:").await;
    let long = "k".repeat(10_000);
    let keys = [
        "a\r\nflush_all",
        "a\r\nflush_all\r\n",
        "a b",
        "ключ 🔑",
        "nul\0byte",
        "../../etc/passwd",
        "#hash-looking",
        "tab\there",
        long.as_str(),
    ];
    for (i, key) in keys.iter().enumerate() {
        cache.put(key, &i, MINUTE).await.unwrap();
        assert_eq!(cache.increment(&format!("{key}:n"), 2).await.unwrap(), 2);
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(cache.get::<usize>(key).await.unwrap(), Some(i), "{key:?}");
    }
    assert!(
        server.command("get foreign").contains("abc"),
        "the foreign key survived"
    );
    assert_eq!(server.stat("cmd_flush"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_increments_and_hits_are_exact() {
    let cache = connect(&shared_memcached().address(), &unique_prefix("exact")).await;
    let tasks: Vec<_> = (0..1_000)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let n = cache.increment("n", 1).await.unwrap();
                let hit = cache.hit("h", MINUTE).await.unwrap();
                (n, hit.count)
            })
        })
        .collect();
    let (mut counts, mut hits) = (Vec::new(), Vec::new());
    for task in tasks {
        let (n, h) = task.await.unwrap();
        counts.push(n);
        hits.push(h);
    }
    counts.sort_unstable();
    hits.sort_unstable();
    let expected: Vec<i64> = (1..=1_000).collect();
    assert_eq!(counts, expected, "every increment got its own count");
    assert_eq!(hits, expected, "every hit got its own count");
    assert_eq!(cache.get::<i64>("n").await.unwrap(), Some(1_000));
}

#[tokio::test]
async fn ttls_beyond_thirty_days_are_sent_as_unix_times() {
    let server = shared_memcached();
    let prefix = unique_prefix("long");
    let cache = connect(&server.address(), &prefix).await;
    let forty_days = Duration::from_secs(40 * 24 * 3600);
    cache.put("k", &"kept", forty_days).await.unwrap();
    cache.put("n", &7, forty_days).await.unwrap();
    // memcached would treat a relative 40 days as a Unix time in 1970: expired at once.
    assert_eq!(
        cache.get::<String>("k").await.unwrap().as_deref(),
        Some("kept")
    );
    assert_eq!(cache.increment("n", 1).await.unwrap(), 8);
    // memcached's own expiry of both items: 40 days from now (plus its second of margin).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let dump = server.command("lru_crawler metadump all");
    let expiries: Vec<u64> = dump
        .lines()
        .filter(|line| line.contains(&prefix.replace(':', "%3A")))
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("exp=")))
        .filter_map(|exp| exp.parse().ok())
        .collect();
    assert_eq!(expiries.len(), 2, "{dump}");
    for exp in expiries {
        let left = exp.saturating_sub(now);
        assert!(
            left > forty_days.as_secs() - 60 && left <= forty_days.as_secs() + 2,
            "{left}"
        );
    }
}

#[tokio::test]
async fn values_over_the_item_limit_are_refused_clearly() {
    let server = shared_memcached();
    let cache = connect(&server.address(), &unique_prefix("big"))
        .await
        .without_compression();
    let big = vec![7u8; 2 * 1024 * 1024];
    let err = cache.put("big", &big, MINUTE).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ValueTooLarge { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("big"), "{err}");
    assert_eq!(cache.get::<Vec<u8>>("big").await.unwrap(), None);
    // Just under the limit stores, through the driver with no codec in between.
    let driver = MemcachedDriver::connect(&server.address(), &unique_prefix("edge"))
        .await
        .unwrap();
    let edge = Bytes::from(vec![1u8; 1024 * 1024 - 600]);
    driver.put("edge", edge.clone(), None).await.unwrap();
    assert_eq!(driver.get("edge").await.unwrap(), Some(edge));
}

#[tokio::test]
async fn adding_a_server_moves_about_a_third_of_the_keys() {
    let servers: Vec<_> = (0..3).map(|_| MemcachedServer::start()).collect();
    let two = format!("{},{}", servers[0].address(), servers[1].address());
    let three = format!("{two},{}", servers[2].address());
    let before = connect(&two, "ring:").await;
    for i in 0..600 {
        before.put(&format!("k{i}"), &i, MINUTE).await.unwrap();
    }
    let on = |s: &MemcachedServer| s.stat("curr_items");
    assert!(
        on(&servers[0]) > 200 && on(&servers[1]) > 200,
        "both servers hold keys"
    );
    let after = connect(&three, "ring:").await;
    let mut found = 0;
    for i in 0..600 {
        if after.get::<i32>(&format!("k{i}")).await.unwrap() == Some(i) {
            found += 1;
        }
    }
    // A third of the keys now belong to the new, empty server; the rest stay where they were.
    assert!((320..480).contains(&found), "{found} of 600 still found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_fails_only_its_own_keys_within_the_timeout() {
    let mut servers: Vec<_> = (0..2).map(|_| MemcachedServer::start()).collect();
    let list = format!("{},{}", servers[0].address(), servers[1].address());
    let timeout = Duration::from_millis(300);
    let config = MemcachedConfig::new(&list).prefix("down:").timeout(timeout);
    let driver = MemcachedDriver::from_config(&config).await.unwrap();
    let cache = Cache::new(driver);
    for i in 0..100 {
        cache.put(&format!("k{i}"), &i, MINUTE).await.unwrap();
    }
    servers[1].stop();
    let (mut ok, mut failed) = (0, 0);
    for i in 0..100 {
        let started = Instant::now();
        match cache.get::<i32>(&format!("k{i}")).await {
            Ok(value) => {
                assert_eq!(value, Some(i));
                ok += 1;
            }
            Err(err) => {
                assert!(matches!(err.kind(), ErrorKind::Memcached { .. }), "{err:?}");
                assert!(err.to_string().contains(&servers[1].address()), "{err}");
                failed += 1;
            }
        }
        assert!(started.elapsed() < timeout + Duration::from_millis(200));
    }
    assert!(ok > 20 && failed > 20, "{ok} served, {failed} failed");
    // Back (empty): its keys are missing, not failing.
    servers[1].restart();
    let mut missing = 0;
    for i in 0..100 {
        match cache.get::<i32>(&format!("k{i}")).await.unwrap() {
            Some(value) => assert_eq!(value, i),
            None => missing += 1,
        }
    }
    assert_eq!(missing, failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_reads_across_servers_and_fails_within_one_timeout() {
    let servers: Vec<_> = (0..2).map(|_| MemcachedServer::start()).collect();
    let list = format!("{},{}", servers[0].address(), servers[1].address());
    let timeout = Duration::from_millis(400);
    let config = MemcachedConfig::new(&list)
        .prefix("many:")
        .timeout(timeout)
        .namespace_check(Duration::from_secs(3_600));
    let cache = Cache::new(MemcachedDriver::from_config(&config).await.unwrap());
    let keys: Vec<String> = (0..60).map(|i| format!("k{i}")).collect();
    for (i, key) in keys.iter().enumerate().step_by(2) {
        cache.put(key, &i, MINUTE).await.unwrap();
    }
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let values = cache.many::<usize>(&keys).await.unwrap();
    let expected: Vec<_> = (0..60).map(|i| (i % 2 == 0).then_some(i)).collect();
    assert_eq!(
        values, expected,
        "each value in its key's place, from both servers"
    );

    // Both servers frozen (SIGSTOP): they accept but never answer. The call fails within one
    // timeout (the servers are asked at the same time), naming a server, and nothing is left
    // behind for the calls after it.
    let signal = |name: &str| {
        for server in &servers {
            let status = std::process::Command::new("kill")
                .args([name, &server.pid().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "kill {name}");
        }
    };
    signal("-STOP");
    let started = Instant::now();
    let failed = cache.many::<usize>(&keys).await;
    let took = started.elapsed();
    signal("-CONT");
    let error = failed.unwrap_err();
    assert!(
        matches!(error.kind(), ErrorKind::Memcached { .. }),
        "{error:?}"
    );
    assert!(
        took < timeout + Duration::from_millis(300),
        "two frozen servers took {took:?} with a timeout of {timeout:?}"
    );
    assert_eq!(cache.many::<usize>(&keys).await.unwrap(), expected, "back");
}

#[tokio::test]
async fn connecting_to_nothing_is_a_clear_error() {
    let port = jtc_test_support::free_port();
    let err = MemcachedDriver::connect(&format!("127.0.0.1:{port}"), "x:")
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Memcached { .. }), "{err:?}");
    assert!(err.to_string().contains(&port.to_string()), "{err}");
    let err = MemcachedDriver::connect("127.0.0.1:11211", "bad prefix")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("MEMCACHED_PREFIX"), "{err}");
}

#[tokio::test]
async fn config_from_env_builds_the_driver() {
    let server = shared_memcached();
    let vars = [
        ("CACHE_DRIVER", "memcached".to_owned()),
        ("MEMCACHED_SERVERS", server.address()),
        ("MEMCACHED_PREFIX", unique_prefix("env")),
    ];
    let config = jtc_cache::CacheConfig::from_lookup(|name| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    })
    .unwrap();
    let cache = config.build().await.unwrap();
    assert_eq!(cache.driver().name(), "memcached");
    cache.put("k", &1, MINUTE).await.unwrap();
    assert_eq!(cache.get::<i32>("k").await.unwrap(), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_counting_one_key_by_compare_and_set_stay_exact() {
    let server = shared_memcached();
    let prefix = unique_prefix("cas");
    let (a, b) = (
        connect(&server.address(), &prefix).await,
        connect(&server.address(), &prefix).await,
    );
    // A counter with a TTL and a negative one: `ma` cannot serve them, every step is a
    // compare-and-set, and the two drivers do not take turns with each other.
    a.put("timed", &0, MINUTE).await.unwrap();
    a.put("negative", &-1_000_000, MINUTE).await.unwrap();
    let tasks: Vec<_> = (0..400)
        .map(|i| {
            let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                cache.increment("timed", 1).await.unwrap();
                cache.decrement("negative", 1).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(a.get::<i64>("timed").await.unwrap(), Some(400));
    assert_eq!(b.get::<i64>("negative").await.unwrap(), Some(-1_000_400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_cancelled_mid_flight_never_leave_a_reply_for_the_next_call() {
    let server = shared_memcached();
    let cache = connect(&server.address(), &unique_prefix("cancel")).await;
    for i in 0..50 {
        cache.put(&format!("k{i}"), &i, MINUTE).await.unwrap();
    }
    let (mut cancelled, mut answered) = (0, 0);
    for round in 0..2_000u64 {
        let i = round % 50;
        // Every other call is aborted after 0 to 49 yields of this task: most are dropped
        // after their command went out and before its reply was read.
        let call = {
            let cache = cache.clone();
            tokio::spawn(async move { cache.get::<u64>(&format!("k{i}")).await })
        };
        if round % 2 == 0 {
            for _ in 0..round % 50 {
                tokio::task::yield_now().await;
            }
            call.abort();
        }
        match call.await {
            Ok(value) => {
                assert_eq!(value.unwrap(), Some(i));
                answered += 1;
            }
            Err(err) if err.is_cancelled() => cancelled += 1,
            Err(err) => panic!("{err}"),
        }
    }
    assert!(
        cancelled > 100 && answered >= 1_000,
        "{cancelled} cancelled, {answered} answered"
    );
    for i in 0..50u64 {
        assert_eq!(cache.get::<u64>(&format!("k{i}")).await.unwrap(), Some(i));
    }
}

#[tokio::test]
async fn windows_beyond_what_a_window_counter_holds_are_refused() {
    let cache = connect(&shared_memcached().address(), &unique_prefix("window")).await;
    let err = cache
        .hit("h", Duration::from_secs(60 * 24 * 3600))
        .await
        .unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Unsupported { .. }),
        "{err:?}"
    );
    assert_eq!(
        cache
            .hit("h", Duration::from_secs(86_400))
            .await
            .unwrap()
            .count,
        1
    );
}
