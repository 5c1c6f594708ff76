//! The conformance suite on a real 3-master Redis Cluster started by the tests.

#![cfg(feature = "redis")]

mod conformance;

use std::time::Duration;

use conformance::Subject;
use jtc_cache::{Cache, RedisConfig, RedisDriver};
use jtc_test_support::{shared_cluster, unique_prefix};

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
