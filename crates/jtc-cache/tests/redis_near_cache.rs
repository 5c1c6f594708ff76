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
    let mut waits = Vec::new();
    for trial in 0..200i64 {
        cache.put("k", &trial, MINUTE).await.unwrap();
        assert_eq!(
            cache.get::<i64>("k").await.unwrap(),
            Some(trial),
            "our own write"
        );
        // Held now; another client changes it.
        server.cli(&["SET", "near:k", &(trial + 1_000).to_string()]);
        waits.push(
            seen_within(Some(trial + 1_000), || async {
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
        "outside write seen after: median {:?}, p99 {p99:?}, max {:?}",
        waits[waits.len() / 2],
        waits[waits.len() - 1]
    );
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
    let (cache, _) = near(&server.url()).await;
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
