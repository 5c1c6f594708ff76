//! The Redis driver's near cache (`RedisConfig::near_cache`): the whole conformance suite
//! with it on (it changes nothing a `Cache` does), reads of held keys cost no command, and
//! writes by anyone — this process included — reach the next read. The tests that count
//! commands run their own `redis-server`, so the counts are theirs alone.

mod conformance;

use std::time::{Duration, Instant};

use conformance::Subject;
use jtc_cache::{Cache, RedisConfig, RedisDriver};
use jtc_test_support::{RedisCluster, RedisServer, shared_server, unique_prefix};

async fn subject() -> Subject {
    let config = RedisConfig::from_url(shared_server().url())
        .prefix(unique_prefix("near"))
        .near_cache(10_000);
    Subject {
        cache: Cache::new(RedisDriver::from_config(&config).await.unwrap()),
        clock: None,
        guard: Box::new(()),
    }
}

conformance_tests!(subject);

const MINUTE: Duration = Duration::from_secs(60);

/// `calls` of `command` in `INFO commandstats` output.
fn calls(stats: &str, command: &str) -> u64 {
    stats
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            (name == command).then_some(rest)
        })
        .filter_map(|rest| {
            rest.split(',')
                .next()?
                .strip_prefix("calls=")?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

async fn near(url: &str) -> (Cache, RedisDriver) {
    let config = RedisConfig::from_url(url).prefix("near:").near_cache(1_000);
    let driver = RedisDriver::from_config(&config).await.unwrap();
    (Cache::new(driver.clone()), driver)
}

/// Polls `read` until it gives `want`, for at most a second; returns how long it took.
async fn seen_within<F, Fut>(want: Option<i64>, read: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<i64>>,
{
    let started = Instant::now();
    loop {
        if read().await == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "never saw {want:?}"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_read_twice_costs_one_get() {
    let server = RedisServer::start();
    let (cache, driver) = near(&server.url()).await;
    cache.put("user:1", &7, MINUTE).await.unwrap();
    server.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..5 {
        assert_eq!(cache.get::<i64>("user:1").await.unwrap(), Some(7));
    }
    let stats = server.cli(&["INFO", "commandstats"]);
    assert_eq!(calls(&stats, "get"), 1, "{stats}");
    let near = driver.near_cache_stats().unwrap();
    assert_eq!((near.hits, near.misses), (4, 1), "{near:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_from_outside_and_our_own_writes_reach_the_next_read() {
    let server = RedisServer::start();
    let (cache, _) = near(&server.url()).await;
    // Another client, as another application would write.
    let client = redis::Client::open(server.url()).unwrap();
    let mut outside = client.get_multiplexed_async_connection().await.unwrap();
    let mut waits = Vec::new();
    for trial in 0..1_000i64 {
        cache.put("k", &trial, MINUTE).await.unwrap();
        assert_eq!(
            cache.get::<i64>("k").await.unwrap(),
            Some(trial),
            "our own write"
        );
        assert_eq!(cache.get::<i64>("k").await.unwrap(), Some(trial), "held");
        let _: () = redis::cmd("SET")
            .arg("near:k")
            .arg(trial + 1_000_000)
            .query_async(&mut outside)
            .await
            .unwrap();
        waits.push(
            seen_within(Some(trial + 1_000_000), || async {
                cache.get::<i64>("k").await.unwrap()
            })
            .await,
        );
    }
    server.cli(&["DEL", "near:k"]);
    seen_within(None, || async { cache.get::<i64>("k").await.unwrap() }).await;
    cache.put("k", &1, MINUTE).await.unwrap();
    assert_eq!(cache.get::<i64>("k").await.unwrap(), Some(1));
    server.cli(&["FLUSHDB"]);
    seen_within(None, || async { cache.get::<i64>("k").await.unwrap() }).await;
    waits.sort_unstable();
    let p99 = waits[waits.len() * 99 / 100];
    eprintln!(
        "outside write seen after (1,000 trials): median {:?}, p99 {p99:?}, max {:?}",
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );
    assert!(p99 <= Duration::from_millis(10), "p99 {p99:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_processes_flush_empties_the_near_cache() {
    let server = RedisServer::start();
    let (cache, _) = near(&server.url()).await;
    cache.put("a", &1, MINUTE).await.unwrap();
    assert_eq!(cache.get::<i64>("a").await.unwrap(), Some(1));
    // `jtc cache clear` from another process: its own driver, no near cache.
    let other = Cache::new(RedisDriver::connect(&server.url(), "near:").await.unwrap());
    other.flush().await.unwrap();
    seen_within(None, || async { cache.get::<i64>("a").await.unwrap() }).await;
    // Our own flush empties it at once.
    cache.put("b", &2, MINUTE).await.unwrap();
    assert_eq!(cache.get::<i64>("b").await.unwrap(), Some(2));
    cache.flush().await.unwrap();
    assert_eq!(cache.get::<i64>("b").await.unwrap(), None);
}

/// Two instances on one key, 10,000 steps in a random order (a fixed seed), each a write or a
/// read by one of them. The guarantee checked: an instance reads its own writes; its reads
/// never go back to a value older than one it has already read; and a value written by the
/// other is read once its invalidation has arrived: within 10 ms at the 99th percentile (a
/// loaded machine can hold a single one back longer; every one within a second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_interleavings_of_two_instances_never_read_backwards() {
    let server = RedisServer::start();
    let (a, _) = near(&server.url()).await;
    let (b, _) = near(&server.url()).await;
    let caches = [a, b];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut written = 0i64;
    let mut last_read = [0i64; 2];
    let mut waits = Vec::new();
    for _ in 0..10_000 {
        let who = (random() % 2) as usize;
        if random() % 3 == 0 {
            written += 1;
            caches[who].put("k", &written, MINUTE).await.unwrap();
            let own = caches[who].get::<i64>("k").await.unwrap().unwrap();
            assert_eq!(own, written, "instance {who} reads its own write");
            last_read[who] = own;
            let other = 1 - who;
            let waited = seen_within(Some(written), || async {
                caches[other].get::<i64>("k").await.unwrap()
            })
            .await;
            waits.push(waited);
            last_read[other] = written;
        } else {
            let read = caches[who].get::<i64>("k").await.unwrap().unwrap_or(0);
            assert!(
                read >= last_read[who] && read <= written,
                "instance {who} read {read} after {} (latest {written})",
                last_read[who]
            );
            last_read[who] = read;
        }
    }
    waits.sort_unstable();
    let p99 = waits[waits.len() * 99 / 100];
    assert!(
        p99 <= Duration::from_millis(10),
        "p99 {p99:?} of {}",
        waits.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_keys_through_ten_thousand_entries_stay_within_the_bound() {
    let server = RedisServer::start_with(&["--enable-debug-command", "yes"]);
    // One million keys `near:key:<n>` holding `value:<n>`, made by the server itself.
    assert_eq!(
        server.cli(&["DEBUG", "POPULATE", "1000000", "near:key"]),
        "OK"
    );
    let config = RedisConfig::from_url(server.url())
        .prefix("near:")
        .near_cache(10_000);
    let driver = RedisDriver::from_config(&config).await.unwrap();
    let tasks: Vec<_> = (0..32u64)
        .map(|task| {
            let driver = driver.clone();
            tokio::spawn(async move {
                let mut peak = 0;
                for n in (task..1_000_000).step_by(32) {
                    let value = jtc_cache::CacheDriver::get(&driver, &format!("key:{n}"))
                        .await
                        .unwrap();
                    assert_eq!(value.as_deref(), Some(format!("value:{n}").as_bytes()));
                    if n % 1_000 < 32 {
                        peak = peak.max(driver.near_cache_stats().unwrap().entries);
                    }
                }
                peak
            })
        })
        .collect();
    let mut peak = 0;
    for task in tasks {
        peak = peak.max(task.await.unwrap());
    }
    let stats = driver.near_cache_stats().unwrap();
    assert!(
        peak <= 10_000 && stats.entries <= 10_000,
        "{peak} {stats:?}"
    );
    assert!(stats.entries > 5_000, "the near cache was used: {stats:?}");
    assert_eq!(stats.misses, 1_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_see_each_others_writes() {
    let server = RedisServer::start();
    let (first, _) = near(&server.url()).await;
    let (second, _) = near(&server.url()).await;
    for n in 0..100i64 {
        first.put("shared", &n, MINUTE).await.unwrap();
        seen_within(Some(n), || async {
            second.get::<i64>("shared").await.unwrap()
        })
        .await;
        second.put("shared", &-n, MINUTE).await.unwrap();
        seen_within(Some(-n), || async {
            first.get::<i64>("shared").await.unwrap()
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_connection_leaves_no_stale_copy() {
    let server = RedisServer::start();
    let (cache, driver) = near(&server.url()).await;
    cache.put("k", &1, MINUTE).await.unwrap();
    assert_eq!(cache.get::<i64>("k").await.unwrap(), Some(1));
    server.cli(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    server.cli(&["SET", "near:k", "2"]);
    let waited = seen_within(Some(2), || async {
        cache.get::<i64>("k").await.unwrap_or(None)
    })
    .await;
    eprintln!("after the kill, the new value after {waited:?}");
    for _ in 0..100 {
        assert_eq!(cache.get::<i64>("k").await.unwrap(), Some(2));
    }
    // Tracking is on again: reads are answered in process, and invalidated.
    let before = driver.near_cache_stats().unwrap().hits;
    for _ in 0..10 {
        cache.get::<i64>("k").await.unwrap();
    }
    assert!(driver.near_cache_stats().unwrap().hits >= before + 9);
    server.cli(&["SET", "near:k", "3"]);
    seen_within(Some(3), || async { cache.get::<i64>("k").await.unwrap() }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_near_cache_works_on_a_cluster() {
    let cluster = RedisCluster::start(3);
    let config = RedisConfig::cluster(cluster.addresses())
        .prefix("near:")
        .near_cache(100);
    let cache = Cache::new(RedisDriver::from_config(&config).await.unwrap());
    cache.put("user:1", &7, MINUTE).await.unwrap();
    for node in cluster.nodes() {
        node.cli(&["CONFIG", "RESETSTAT"]);
    }
    for _ in 0..5 {
        assert_eq!(cache.get::<i64>("user:1").await.unwrap(), Some(7));
    }
    let gets: u64 = cluster
        .nodes()
        .iter()
        .map(|n| calls(&n.cli(&["INFO", "commandstats"]), "get"))
        .sum();
    assert_eq!(gets, 1);
    let owner = cluster
        .nodes()
        .iter()
        .find(|n| n.cli(&["EXISTS", "near:user:1"]) == "1")
        .expect("a node holds the key");
    owner.cli(&["SET", "near:user:1", "8"]);
    seen_within(Some(8), || async {
        cache.get::<i64>("user:1").await.unwrap()
    })
    .await;
}

#[tokio::test]
async fn the_near_cache_is_refused_through_sentinel_naming_its_variable() {
    let mut config = RedisConfig::default().near_cache(10);
    config.sentinel_nodes = vec!["127.0.0.1:1".to_owned()];
    let err = RedisDriver::from_config(&config).await.unwrap_err();
    assert!(err.to_string().contains("REDIS_NEAR_CACHE"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_stats_show_the_near_cache_hits_invalidations_and_evictions() {
    let server = RedisServer::start();
    let config = RedisConfig::from_url(server.url())
        .prefix("near:")
        .near_cache(64);
    let cache = Cache::new(RedisDriver::from_config(&config).await.unwrap());
    for i in 0..200 {
        cache.put(&format!("k{i}"), &i, MINUTE).await.unwrap();
    }
    for _ in 0..2 {
        for i in 0..200 {
            assert_eq!(cache.get::<i32>(&format!("k{i}")).await.unwrap(), Some(i));
        }
    }
    cache.get::<i32>("k199").await.unwrap();
    server.cli(&["SET", "near:k199", "-1"]);
    seen_within(Some(-1), || async {
        cache.get::<i64>("k199").await.unwrap()
    })
    .await;
    let stats = cache.stats();
    let near = stats.near_cache.expect("the near cache's counters");
    assert!(near.entries <= 64, "{near:?}");
    assert!(near.hits >= 1, "{near:?}");
    assert!(near.invalidations >= 1, "{near:?}");
    // 400 reads of 200 keys through 64 entries: most were stored and then evicted.
    assert!(near.evictions >= 200, "{near:?}");
    assert!(
        near.hits + near.misses >= 402,
        "every read looked: {near:?}"
    );
    let plain = Cache::new(jtc_cache::ArrayDriver::new());
    assert_eq!(plain.stats().near_cache, None);
}

/// `get_bytes_now` answers from the near cache's copy, and without one says it must wait —
/// having sent nothing to the server and counted nothing (a driver with no near cache never
/// answers at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_are_read_at_once_only_from_a_held_copy() {
    let server = RedisServer::start();
    let (cache, _driver) = near(&server.url()).await;
    cache.put_bytes("page", b"<html>", MINUTE).await.unwrap();
    server.cli(&["CONFIG", "RESETSTAT"]);
    let before = cache.stats();
    assert!(cache.get_bytes_now("page").is_none(), "not held yet");
    assert_eq!(calls(&server.cli(&["INFO", "commandstats"]), "get"), 0);
    assert_eq!(
        (cache.stats().hits, cache.stats().misses),
        (before.hits, before.misses)
    );
    assert_eq!(
        cache.get_bytes("page").await.unwrap().unwrap(),
        &b"<html>"[..]
    );
    let held = cache.get_bytes_now("page").expect("held after a read");
    assert_eq!(held.unwrap().unwrap(), &b"<html>"[..]);
    assert_eq!(cache.stats().hits, before.hits + 2);
    assert_eq!(calls(&server.cli(&["INFO", "commandstats"]), "get"), 1);

    let plain = RedisDriver::connect(&server.url(), "plain:").await.unwrap();
    let plain = Cache::new(plain);
    plain.put_bytes("page", b"<html>", MINUTE).await.unwrap();
    plain.get_bytes("page").await.unwrap();
    assert!(plain.get_bytes_now("page").is_none());
}
