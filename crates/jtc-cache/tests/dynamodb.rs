//! The conformance suite on DynamoDB (moto's server, started by the tests), plus what only
//! DynamoDB can get wrong: a table shared by prefixes and other applications, flush by
//! generation seen by another process, the item size limit, exact counters under concurrency,
//! and a server that dies and comes back.

#![cfg(feature = "dynamodb")]

mod conformance;

use std::time::Duration;

use bytes::Bytes;
use conformance::Subject;
use jtc_cache::{Cache, CacheDriver, DynamoDbConfig, DynamoDbDriver, ErrorKind, ManualClock};
use jtc_test_support::{MotoServer, shared_moto, unique_prefix};

const MINUTE: Duration = Duration::from_secs(60);
const TABLE: &str = "jtc_tests";

/// `endpoint`'s test table, under a prefix of its own.
fn config(endpoint: &str, prefix: &str) -> DynamoDbConfig {
    DynamoDbConfig::new(TABLE)
        .endpoint(endpoint)
        .region("us-east-1")
        .credentials("test", "test")
        .prefix(prefix)
        // moto answers ~250 requests a second, one at a time: under the concurrency cases a
        // request may wait its turn for seconds.
        .timeout(Duration::from_secs(120))
}

async fn connect(config: &DynamoDbConfig) -> DynamoDbDriver {
    DynamoDbDriver::create_table(config).await.unwrap();
    DynamoDbDriver::from_config(config).await.unwrap()
}

async fn subject() -> Subject {
    let clock = ManualClock::new(1_700_000_000_000);
    let config =
        config(&shared_moto().endpoint(), &unique_prefix("conformance")).clock(clock.clone());
    Subject {
        cache: Cache::new(connect(&config).await),
        clock: Some(clock),
        guard: Box::new(()),
    }
}

conformance_tests!(subject);

#[tokio::test]
async fn two_prefixes_share_a_table_and_flush_leaves_the_other_and_foreign_items_alone() {
    let endpoint = shared_moto().endpoint();
    let (mine, theirs) = (unique_prefix("mine"), unique_prefix("theirs"));
    let mine = Cache::new(connect(&config(&endpoint, &mine)).await);
    let theirs = Cache::new(connect(&config(&endpoint, &theirs)).await);
    // Another application's item in the same table.
    let driver = connect(&config(&endpoint, "x")).await;
    driver
        .client()
        .put_item()
        .table_name(TABLE)
        .item(
            "key",
            aws_sdk_dynamodb::types::AttributeValue::S("foreign".into()),
        )
        .send()
        .await
        .unwrap();
    mine.put("k", &1, MINUTE).await.unwrap();
    theirs.put("k", &2, MINUTE).await.unwrap();
    mine.flush().await.unwrap();
    assert_eq!(mine.get::<i32>("k").await.unwrap(), None);
    assert_eq!(theirs.get::<i32>("k").await.unwrap(), Some(2));
    let foreign = driver
        .client()
        .get_item()
        .table_name(TABLE)
        .key(
            "key",
            aws_sdk_dynamodb::types::AttributeValue::S("foreign".into()),
        )
        .send()
        .await
        .unwrap();
    assert!(
        foreign.item().is_some(),
        "the other application's item is still there"
    );
}

#[tokio::test]
async fn another_instance_sees_a_flush_within_its_generation_check() {
    let config = config(&shared_moto().endpoint(), &unique_prefix("flush"));
    let (a, b) = (
        Cache::new(connect(&config).await),
        Cache::new(connect(&config).await),
    );
    a.put("k", &1, MINUTE).await.unwrap();
    assert_eq!(b.get::<i32>("k").await.unwrap(), Some(1));
    a.flush().await.unwrap();
    assert_eq!(
        a.get::<i32>("k").await.unwrap(),
        None,
        "its own flush at once"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        b.get::<i32>("k").await.unwrap(),
        None,
        "the other's within 1 s"
    );
    // With a check of zero, at once.
    let at_once = config.clone().generation_check(Duration::ZERO);
    let (c, d) = (
        Cache::new(connect(&at_once).await),
        Cache::new(connect(&at_once).await),
    );
    c.put("k", &2, MINUTE).await.unwrap();
    assert_eq!(d.get::<i32>("k").await.unwrap(), Some(2));
    c.flush().await.unwrap();
    assert_eq!(d.get::<i32>("k").await.unwrap(), None);
}

#[tokio::test]
async fn prune_removes_old_generations_and_expired_items_of_its_prefix_only() {
    let endpoint = shared_moto().endpoint();
    let clock = ManualClock::new(1_700_000_000_000);
    let prefix = unique_prefix("prune");
    let mine = connect(&config(&endpoint, &prefix).clock(clock.clone())).await;
    // A longer prefix that starts with this one is someone else's.
    let longer = Cache::new(connect(&config(&endpoint, &format!("{prefix}eu:"))).await);
    longer.put("k", &1, MINUTE).await.unwrap();
    let mine = Cache::new(mine);
    for i in 0..30 {
        mine.put(&format!("old{i}"), &i, MINUTE).await.unwrap();
    }
    mine.flush().await.unwrap();
    mine.put("live", &1, MINUTE).await.unwrap();
    mine.put("short", &1, Duration::from_secs(1)).await.unwrap();
    clock.advance(Duration::from_secs(2));
    assert_eq!(mine.prune().await.unwrap(), 31);
    assert_eq!(mine.get::<i32>("live").await.unwrap(), Some(1));
    assert_eq!(longer.get::<i32>("k").await.unwrap(), Some(1));
    assert_eq!(mine.prune().await.unwrap(), 0);
}

#[tokio::test]
async fn values_over_the_item_limit_are_refused_before_sending() {
    let config = config(&shared_moto().endpoint(), &unique_prefix("large"));
    let driver = connect(&config).await;
    let big = Bytes::from(vec![7u8; 410 * 1024]);
    let err = driver.put("big", big, Some(MINUTE)).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::ValueTooLarge { .. }),
        "{err}"
    );
    assert!(!err.is_backend());
    let fits = Bytes::from(vec![7u8; 390 * 1024]);
    driver
        .put("fits", fits.clone(), Some(MINUTE))
        .await
        .unwrap();
    assert_eq!(driver.get("fits").await.unwrap(), Some(fits));
    // Through a `Cache`, the value is compressed first: what counts is its stored size.
    let cache = Cache::new(driver);
    cache
        .put("zeros", &vec![0u8; 600 * 1024], MINUTE)
        .await
        .unwrap();
}

#[tokio::test]
async fn huge_and_unicode_keys_are_stored_safely() {
    let config = config(&shared_moto().endpoint(), &unique_prefix("keys"));
    let cache = Cache::new(connect(&config).await);
    let huge = "k".repeat(60_000);
    for key in [huge.as_str(), "../../etc/passwd", "ключ 🔑", "a b\tc"] {
        cache.put(key, &key.len(), MINUTE).await.unwrap();
        assert_eq!(cache.get::<usize>(key).await.unwrap(), Some(key.len()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_increments_and_hits_are_exact() {
    let config = config(&shared_moto().endpoint(), &unique_prefix("exact"));
    let cache = Cache::new(connect(&config).await);
    let mut tasks = Vec::new();
    for _ in 0..1_000 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            let n = cache.increment("n", 1).await.unwrap();
            let hit = cache.hit("h", MINUTE).await.unwrap();
            (n, hit.count)
        }));
    }
    let (mut ns, mut hits) = (Vec::new(), Vec::new());
    for task in tasks {
        let (n, hit) = task.await.unwrap();
        ns.push(n);
        hits.push(hit);
    }
    ns.sort_unstable();
    hits.sort_unstable();
    let expected: Vec<i64> = (1..=1_000).collect();
    assert_eq!(ns, expected, "every increment saw its own count");
    assert_eq!(hits, expected, "every hit saw its own count");
}

#[tokio::test]
async fn increments_refuse_text_and_overflow_and_keep_the_value() {
    let clock = ManualClock::new(1_700_000_000_000);
    let config = config(&shared_moto().endpoint(), &unique_prefix("refuse")).clock(clock.clone());
    let cache = Cache::new(connect(&config).await);
    cache.put("text", &"hello", MINUTE).await.unwrap();
    let err = cache.increment("text", 1).await.unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::NotAnInteger { .. }),
        "{err}"
    );
    assert_eq!(
        cache.get::<String>("text").await.unwrap().as_deref(),
        Some("hello")
    );
    cache.increment("big", i64::MAX - 1).await.unwrap();
    let err = cache.increment("big", 2).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Overflow { .. }), "{err}");
    assert_eq!(cache.get::<i64>("big").await.unwrap(), Some(i64::MAX - 1));
    // A stored integer becomes a counter, keeping its TTL.
    cache.put("visits", &41, MINUTE).await.unwrap();
    assert_eq!(cache.increment("visits", 1).await.unwrap(), 42);
    assert_eq!(cache.increment("visits", 1).await.unwrap(), 43);
    clock.advance(MINUTE);
    assert_eq!(cache.get::<i64>("visits").await.unwrap(), None);
}

#[tokio::test]
async fn a_dead_server_fails_calls_within_the_timeout_and_the_cache_works_after_a_restart() {
    let mut server = MotoServer::start();
    // A fresh moto takes a while over its first requests (it loads its DynamoDB backend
    // lazily): the table is made, and the server warmed, under a long timeout; the cache then
    // runs on a short one.
    let patient = config(&server.endpoint(), "restart:");
    let config = patient.clone().timeout(Duration::from_millis(500));
    DynamoDbDriver::create_table(&patient).await.unwrap();
    DynamoDbDriver::from_config(&patient).await.unwrap();
    let cache = Cache::new(DynamoDbDriver::from_config(&config).await.unwrap());
    cache.put("k", &1, MINUTE).await.unwrap();
    server.stop();
    let started = std::time::Instant::now();
    let err = cache.get::<i32>("k").await.unwrap_err();
    assert!(err.is_backend(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    server.restart();
    // The restarted server is empty: the table comes back, then the same handle works.
    DynamoDbDriver::create_table(&patient).await.unwrap();
    cache.put("k", &2, MINUTE).await.unwrap();
    assert_eq!(cache.get::<i32>("k").await.unwrap(), Some(2));
}

#[tokio::test]
async fn a_missing_table_is_a_clear_error_at_connect() {
    let config = DynamoDbConfig::new("no_such_table")
        .endpoint(shared_moto().endpoint())
        .region("us-east-1")
        .credentials("test", "test");
    let err = DynamoDbDriver::from_config(&config).await.unwrap_err();
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(text.contains("jtc cache table"), "{text}");
    assert!(!text.contains("test"), "no credentials in errors: {text}");
}

#[tokio::test]
async fn batches_of_any_size_read_and_write_every_key() {
    let config = config(&shared_moto().endpoint(), &unique_prefix("batch"));
    let cache = Cache::new(connect(&config).await);
    let names: Vec<String> = (0..260).map(|i| format!("k{i}")).collect();
    let entries: Vec<(&str, i32)> = names
        .iter()
        .zip(0..)
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    cache.put_many(&entries, MINUTE).await.unwrap();
    let mut keys: Vec<&str> = names.iter().map(String::as_str).collect();
    keys.push("missing");
    keys.push("k0");
    let values = cache.many::<i32>(&keys).await.unwrap();
    assert_eq!(values.len(), 262);
    assert_eq!(values[0], Some(0));
    assert_eq!(values[259], Some(259));
    assert_eq!(values[260], None);
    assert_eq!(values[261], Some(0));
}
