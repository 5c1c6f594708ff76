//! The conformance suite on a real 3-master Redis Cluster started by the tests.

#![cfg(feature = "redis")]

mod conformance;

use std::time::{Duration, Instant};

use conformance::Subject;
use jtc_cache::{Cache, ErrorKind, RedisConfig, RedisDriver};
use jtc_test_support::{RedisCluster, shared_cluster, unique_prefix};

async fn driver(prefix: &str) -> RedisDriver {
    let config = RedisConfig::cluster(shared_cluster().addresses()).prefix(prefix);
    RedisDriver::from_config(&config).await.unwrap()
}

async fn subject() -> Subject {
    Subject {
        cache: Cache::new(driver(&unique_prefix("conformance")).await),
        clock: None,
        guard: Box::new(()),
    }
}

conformance_tests!(subject);

#[tokio::test]
async fn keys_spread_over_every_master_and_flush_reaches_all_of_them() {
    let cluster = shared_cluster();
    let prefix = unique_prefix("spread");
    let driver = driver(&prefix).await;
    assert!(driver.is_cluster());
    let cache = Cache::new(driver);
    for i in 0..300 {
        cache
            .put(&format!("k{i}"), &i, Duration::from_secs(60))
            .await
            .unwrap();
    }
    for node in cluster.nodes() {
        let keys = node.cli(&["--scan", "--pattern", &format!("{prefix}*")]);
        assert!(keys.lines().count() > 30, "every master holds some keys");
        node.cli(&["SET", "{foreign}key", "kept"]);
    }
    cache.flush().await.unwrap();
    for node in cluster.nodes() {
        let keys = node.cli(&["--scan", "--pattern", &format!("{prefix}*")]);
        assert!(keys.is_empty(), "{keys}");
    }
    let foreign = cluster
        .nodes()
        .iter()
        .map(|n| n.cli(&["--scan", "--pattern", "{foreign}*"]))
        .collect::<String>();
    assert!(
        foreign.contains("{foreign}key"),
        "a foreign key survives: {foreign}"
    );
}

#[tokio::test]
async fn the_apps_own_cluster_connection_is_reused() {
    let nodes: Vec<String> = shared_cluster()
        .addresses()
        .iter()
        .map(|a| format!("redis://{a}"))
        .collect();
    let client = redis::cluster::ClusterClient::new(nodes).unwrap();
    let connection = client.get_async_connection().await.unwrap();
    let prefix = unique_prefix("reuse");
    let driver = RedisDriver::from_cluster_connection(connection, &prefix);
    assert!(driver.is_cluster());
    let cache = Cache::new(driver);
    for i in 0..50 {
        cache
            .put(&format!("k{i}"), &i, Duration::from_secs(60))
            .await
            .unwrap();
    }
    assert_eq!(cache.get::<i32>("k49").await.unwrap(), Some(49));
    cache.flush().await.unwrap();
    assert_eq!(cache.get::<i32>("k49").await.unwrap(), None);
}

/// A master that hangs (SIGSTOP) until the others flag it failed: a flush cannot reach its
/// keys, so it must fail rather than report success; once the master is back, a flush
/// removes everything. The other masters keep serving their slots meanwhile
/// (`cluster-require-full-coverage no`, as available clusters run), so a flush that skipped
/// the hung master would otherwise succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_that_cannot_reach_every_master_is_an_error() {
    let partial = ["--cluster-require-full-coverage", "no"];
    let cluster = RedisCluster::start_with(3, Duration::from_secs(2), &partial);
    let config = RedisConfig::cluster(cluster.addresses()).prefix("partial:");
    let cache = Cache::new(RedisDriver::from_config(&config).await.unwrap());
    for i in 0..300 {
        let ttl = Duration::from_secs(600);
        cache.put(&format!("k{i}"), &i, ttl).await.unwrap();
    }

    let (paused, watcher) = (&cluster.nodes()[2], &cluster.nodes()[0]);
    paused.pause();
    let deadline = Instant::now() + Duration::from_secs(30);
    let paused_line = |nodes: &str| {
        nodes
            .lines()
            .find(|l| l.contains(&paused.address()))
            .map(str::to_owned)
    };
    while !paused_line(&watcher.cli(&["CLUSTER", "NODES"])).is_some_and(|l| l.contains("fail")) {
        assert!(
            Instant::now() < deadline,
            "the paused master was never flagged"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let err = cache.flush().await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::IncompleteFlush { covered, .. } if *covered < 16_384)
            || matches!(
                err.kind(),
                ErrorKind::Timeout { .. } | ErrorKind::Redis { .. }
            ),
        "{err}"
    );
    if let ErrorKind::IncompleteFlush { unreached, .. } = err.kind() {
        assert!(unreached.contains(&paused.address()), "{unreached}");
    }

    paused.resume();
    cluster.wait_until_ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(err) = cache.flush().await {
        assert!(Instant::now() < deadline, "flush never recovered: {err}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..300 {
        let key = format!("k{i}");
        assert_eq!(
            cache.get::<i32>(&key).await.unwrap(),
            None,
            "{key} survived"
        );
    }
}
