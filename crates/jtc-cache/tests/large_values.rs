//! The large-value tier (`LargeValueTier`, `Cache::large_values`) over file, Redis and
//! DynamoDB primaries, with its objects on S3 (moto's server, started by the tests): where the
//! threshold puts a value, on both sides; overwrites racing reads; forget, flush, expiry and
//! prune; a missing object; the store down while the primary is up. And the conformance suite
//! on a tier whose threshold sends nearly every value to the store.

#![cfg(all(feature = "object-store", feature = "redis", feature = "dynamodb"))]

mod conformance;

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use conformance::Subject;
use futures::TryStreamExt;
use jtc_cache::{
    ArrayDriver, Cache, CacheDriver, DynamoDbConfig, DynamoDbDriver, FileDriver, LargeValueTier,
    ManualClock, ObjectStoreDriver, RedisDriver,
};
use jtc_test_support::{free_port, shared_moto, shared_server, unique_prefix};
use object_store::{
    ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, aws::AmazonS3Builder, path::Path,
};

const MINUTE: Duration = Duration::from_secs(60);
const BUCKET: &str = "jtc-large";
const THRESHOLD: usize = 4096;

/// An S3 store at `endpoint` that gives up after one retry (the dead store's requests fail
/// in milliseconds, not after object_store's default three minutes of retries).
fn s3_at(endpoint: &str) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_retry(RetryConfig {
                max_retries: 1,
                retry_timeout: Duration::from_secs(5),
                ..RetryConfig::default()
            })
            .build()
            .unwrap(),
    )
}

/// The shared moto server's bucket for these tests.
fn bucket() -> Arc<dyn ObjectStore> {
    static CREATED: OnceLock<()> = OnceLock::new();
    let server = shared_moto();
    CREATED.get_or_init(|| server.create_bucket(BUCKET));
    s3_at(&server.endpoint())
}

/// A primary under test: the driver, its clock when time can be moved, what must outlive it.
struct Primary {
    driver: Arc<dyn CacheDriver>,
    clock: Option<ManualClock>,
    guard: Box<dyn std::any::Any + Send>,
}

impl Primary {
    async fn advance(&self, by: Duration) {
        match &self.clock {
            Some(clock) => clock.advance(by),
            None => tokio::time::sleep(by).await,
        }
    }
}

async fn file() -> Primary {
    let clock = ManualClock::new(1_700_000_000_000);
    let dir = tempfile::tempdir().unwrap();
    let driver = FileDriver::builder(dir.path())
        .clock(clock.clone())
        .build()
        .unwrap();
    Primary {
        driver: Arc::new(driver),
        clock: Some(clock),
        guard: Box::new(dir),
    }
}

async fn redis() -> Primary {
    let driver = RedisDriver::connect(&shared_server().url(), &unique_prefix("large"))
        .await
        .unwrap();
    Primary {
        driver: Arc::new(driver),
        clock: None,
        guard: Box::new(()),
    }
}

async fn dynamodb() -> Primary {
    let clock = ManualClock::new(1_700_000_000_000);
    let config = DynamoDbConfig::new("jtc_large_tests")
        .endpoint(shared_moto().endpoint())
        .region("us-east-1")
        .credentials("test", "test")
        .prefix(unique_prefix("large"))
        .timeout(Duration::from_secs(120))
        .clock(clock.clone());
    DynamoDbDriver::create_table(&config).await.unwrap();
    Primary {
        driver: Arc::new(DynamoDbDriver::from_config(&config).await.unwrap()),
        clock: Some(clock),
        guard: Box::new(()),
    }
}

/// A tier over `primary` on the test bucket, under a fresh prefix; and that prefix's store.
fn tier(primary: &Primary, grace: Duration) -> (LargeValueTier, ObjectStoreDriver) {
    let prefix = unique_prefix("tier");
    let store = ObjectStoreDriver::new(bucket(), &prefix);
    let tier = LargeValueTier::new(
        Arc::clone(&primary.driver),
        ObjectStoreDriver::new(bucket(), &prefix),
    )
    .threshold(THRESHOLD)
    .orphan_grace(grace);
    (tier, store)
}

/// The tier's objects under `store`'s prefix.
async fn objects(store: &ObjectStoreDriver) -> Vec<Path> {
    let root = Path::from(format!("{}/large", store.prefix()));
    store
        .store()
        .list(Some(&root))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await
        .unwrap()
}

fn bytes_of(len: usize, seed: u8) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect::<Vec<_>>(),
    )
}

/// A 1 MB text that says which write it is in every one of its 9-byte cells.
fn stamped(write: usize) -> String {
    format!("{write:08}|").repeat(1024 * 1024 / 9)
}

/// Which write a value read back is, panicking if its cells disagree (a torn value).
fn stamp_of(value: &str) -> usize {
    assert_eq!(value.len(), 1024 * 1024 / 9 * 9, "a whole value");
    let first = &value[..9];
    assert!(
        value
            .as_bytes()
            .chunks(9)
            .all(|cell| cell == first.as_bytes()),
        "a torn value"
    );
    first[..8].parse().unwrap()
}

macro_rules! tier_cases {
    ($primary:ident) => {
        #[tokio::test]
        async fn the_threshold_keeps_a_value_at_or_below_it_in_the_primary_and_sends_one_above() {
            let primary = $primary().await;
            let (tier, store) = tier(&primary, MINUTE);
            for (key, len) in [
                ("below", THRESHOLD - 1),
                ("at", THRESHOLD),
                ("above", THRESHOLD + 1),
            ] {
                tier.put(key, bytes_of(len, 1), Some(MINUTE)).await.unwrap();
                let in_primary = primary.driver.get(key).await.unwrap().unwrap();
                if len <= THRESHOLD {
                    assert_eq!(in_primary, bytes_of(len, 1), "{key}: kept in the primary");
                } else {
                    assert_eq!(in_primary.len(), 44, "{key}: a pointer in the primary");
                    assert!(in_primary.starts_with(b"jtc\x40"));
                }
                assert_eq!(
                    tier.get(key).await.unwrap(),
                    Some(bytes_of(len, 1)),
                    "{key}"
                );
            }
            assert_eq!(
                objects(&store).await.len(),
                1,
                "one object: the value above"
            );

            // The same through the typed API, with `add`, `pull` and `many`.
            let cache = Cache::new(tier).without_compression();
            let big = "x".repeat(THRESHOLD * 2);
            assert!(cache.add("added", &big, MINUTE).await.unwrap());
            assert!(!cache.add("added", &"other", MINUTE).await.unwrap());
            assert_eq!(
                cache.many::<String>(&["added", "none"]).await.unwrap(),
                vec![Some(big.clone()), None]
            );
            assert_eq!(cache.pull::<String>("added").await.unwrap(), Some(big));
            assert_eq!(cache.get::<String>("added").await.unwrap(), None);
            assert_eq!(objects(&store).await.len(), 1, "pull deleted its object");
            // Counters stay in the primary, whatever the threshold.
            assert_eq!(cache.increment("hits", 3).await.unwrap(), 3);
            assert_eq!(
                primary.driver.get("hits").await.unwrap().as_deref(),
                Some(&b"3"[..])
            );
            drop(primary.guard);
        }

        #[tokio::test]
        async fn concurrent_overwrites_and_reads_of_a_1_mb_value_never_tear_or_mismatch() {
            let primary = $primary().await;
            let (tier, store) = tier(&primary, Duration::ZERO);
            let cache = Cache::new(tier).without_compression();
            cache.put("report", &stamped(0), MINUTE).await.unwrap();
            let written = Arc::new(AtomicUsize::new(0));
            let done = Arc::new(AtomicBool::new(false));
            let writers = (0..4).map(|w| {
                let (cache, written) = (cache.clone(), Arc::clone(&written));
                tokio::spawn(async move {
                    for round in 0..50 {
                        let write = 1 + w * 50 + round;
                        cache.put("report", &stamped(write), MINUTE).await.unwrap();
                        written.fetch_add(1, Ordering::SeqCst);
                    }
                })
            });
            let readers: Vec<_> = (0..4)
                .map(|_| {
                    let (cache, done) = (cache.clone(), Arc::clone(&done));
                    tokio::spawn(async move {
                        let mut reads = 0;
                        while !done.load(Ordering::SeqCst) {
                            // A miss is allowed only if an object vanished between a
                            // pointer read and its GET three times in a row; a value is
                            // always whole and one write's.
                            if let Some(value) = cache.get::<String>("report").await.unwrap() {
                                assert!(stamp_of(&value) <= 200);
                            }
                            reads += 1;
                        }
                        reads
                    })
                })
                .collect();
            for writer in writers.collect::<Vec<_>>() {
                writer.await.unwrap();
            }
            done.store(true, Ordering::SeqCst);
            let mut reads = 0;
            for reader in readers {
                reads += reader.await.unwrap();
            }
            assert_eq!(written.load(Ordering::SeqCst), 200);
            assert!(reads > 0);
            let last = cache.get::<String>("report").await.unwrap().unwrap();
            stamp_of(&last);
            // Racing writers may each leave the object the other replaced; prune takes them.
            cache.prune().await.unwrap();
            assert_eq!(
                objects(&store).await.len(),
                1,
                "only the live object is left"
            );
            assert_eq!(cache.get::<String>("report").await.unwrap(), Some(last));
        }

        #[tokio::test]
        async fn forget_flush_and_expiry_make_a_large_value_unreachable_at_once() {
            let primary = $primary().await;
            let (tier, store) = tier(&primary, Duration::ZERO);
            let cache = Cache::new(tier).without_compression();
            let big = "y".repeat(THRESHOLD * 3);

            cache.put("a", &big, MINUTE).await.unwrap();
            assert!(cache.forget("a").await.unwrap());
            assert_eq!(cache.get::<String>("a").await.unwrap(), None);
            assert!(
                objects(&store).await.is_empty(),
                "forget deletes the object at once"
            );

            // Flush: every entry and object of the tier; a foreign object beside it stays.
            let foreign = Path::from(format!("{}-other/keep.bin", store.prefix()));
            store
                .store()
                .put(&foreign, PutPayload::from_static(b"not ours"))
                .await
                .unwrap();
            cache.put("b", &big, MINUTE).await.unwrap();
            cache.put("c", &big, MINUTE).await.unwrap();
            cache.put("small", &1, MINUTE).await.unwrap();
            cache.flush().await.unwrap();
            for key in ["b", "c"] {
                assert_eq!(cache.get::<String>(key).await.unwrap(), None);
            }
            assert_eq!(cache.get::<i32>("small").await.unwrap(), None);
            assert!(objects(&store).await.is_empty());
            assert!(
                store.store().head(&foreign).await.is_ok(),
                "a foreign object stays"
            );

            // Expiry: the pointer's TTL is the entry's; the object goes at the next prune.
            cache.put("e", &big, Duration::from_secs(2)).await.unwrap();
            assert_eq!(cache.get::<String>("e").await.unwrap(), Some(big.clone()));
            primary.advance(Duration::from_millis(2_100)).await;
            assert_eq!(cache.get::<String>("e").await.unwrap(), None);
            assert_eq!(objects(&store).await.len(), 1, "kept until prune");
            assert!(cache.prune().await.unwrap() >= 1);
            assert!(objects(&store).await.is_empty());
        }

        #[tokio::test]
        async fn prune_removes_orphans_leaves_young_and_live_objects_and_a_lost_object_is_a_miss() {
            let primary = $primary().await;
            let prefix = unique_prefix("tier");
            let store = ObjectStoreDriver::new(bucket(), &prefix);
            let at = || ObjectStoreDriver::new(bucket(), &prefix);
            let patient =
                LargeValueTier::new(Arc::clone(&primary.driver), at()).threshold(THRESHOLD);
            let eager = LargeValueTier::new(Arc::clone(&primary.driver), at())
                .threshold(THRESHOLD)
                .orphan_grace(Duration::ZERO);
            let live = bytes_of(THRESHOLD + 100, 7);
            patient
                .put("live", live.clone(), Some(MINUTE))
                .await
                .unwrap();
            patient
                .put("shrunk", bytes_of(THRESHOLD + 1, 8), Some(MINUTE))
                .await
                .unwrap();
            patient
                .put("shrunk", Bytes::from_static(b"small now"), Some(MINUTE))
                .await
                .unwrap();
            patient
                .put("dropped", bytes_of(THRESHOLD + 1, 9), Some(MINUTE))
                .await
                .unwrap();
            primary.driver.forget("dropped").await.unwrap();
            assert_eq!(objects(&store).await.len(), 3);
            assert_eq!(
                patient.prune().await.unwrap(),
                0,
                "young orphans are left alone"
            );
            assert_eq!(eager.prune().await.unwrap(), 2, "the two orphans");
            assert_eq!(objects(&store).await.len(), 1);
            assert_eq!(eager.get("live").await.unwrap(), Some(live));
            assert_eq!(
                eager.get("shrunk").await.unwrap().as_deref(),
                Some(&b"small now"[..])
            );

            // An object deleted behind the tier's back: a miss, and the pointer goes too.
            for path in objects(&store).await {
                store.store().delete(&path).await.unwrap();
            }
            assert_eq!(eager.get("live").await.unwrap(), None);
            assert_eq!(
                primary.driver.get("live").await.unwrap(),
                None,
                "pointer removed"
            );
        }

        #[tokio::test]
        async fn with_the_store_down_large_values_fail_as_backend_errors_and_small_ones_work() {
            let primary = $primary().await;
            let (up, store) = tier(&primary, MINUTE);
            up.put("large", bytes_of(THRESHOLD + 1, 3), Some(MINUTE))
                .await
                .unwrap();
            // The same entries, the same object names, and a store nobody answers for.
            let dead = ObjectStoreDriver::new(
                s3_at(&format!("http://127.0.0.1:{}", free_port())),
                store.prefix(),
            );
            let down = Cache::new(
                LargeValueTier::new(Arc::clone(&primary.driver), dead).threshold(THRESHOLD),
            )
            .without_compression();
            let read = down.get::<Vec<u8>>("large").await.unwrap_err();
            assert!(read.is_backend(), "{read:?}");
            let write = down
                .put("other", &"z".repeat(THRESHOLD * 2), MINUTE)
                .await
                .unwrap_err();
            assert!(write.is_backend(), "{write:?}");
            assert_eq!(
                down.get::<String>("other").await.unwrap(),
                None,
                "nothing half-written"
            );
            down.put("small", &"fine", MINUTE).await.unwrap();
            assert_eq!(
                down.get::<String>("small").await.unwrap().as_deref(),
                Some("fine")
            );
            assert_eq!(down.increment("count", 1).await.unwrap(), 1);
            // The entry is intact for a tier whose store is up.
            assert_eq!(
                up.get("large").await.unwrap(),
                Some(bytes_of(THRESHOLD + 1, 3))
            );
        }
    };
}

mod over_file {
    use super::*;
    tier_cases!(file);
}

mod over_redis {
    use super::*;
    tier_cases!(redis);
}

mod over_dynamodb {
    use super::*;
    tier_cases!(dynamodb);
}

/// The conformance suite on a tier that sends every value over 16 bytes to the store (local
/// files), so that locks, tags, `flexible` and the rest run over pointers too.
mod conformance_over_the_tier {
    use super::*;

    async fn subject() -> Subject {
        let clock = ManualClock::new(1_700_000_000_000);
        let dir = tempfile::tempdir().unwrap();
        let files = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let store = ObjectStoreDriver::new(Arc::new(files), "cache");
        let primary = Arc::new(ArrayDriver::builder().clock(clock.clone()).build());
        let tier = LargeValueTier::new(primary, store).threshold(16);
        Subject {
            cache: Cache::new(tier),
            clock: Some(clock),
            guard: Box::new(dir),
        }
    }

    conformance_tests!(subject);
}

/// Someone else writing under the tier's prefix (a shared bucket, a compromised account): an
/// object of 64 GB (sparse) put where a pointer's object was is a miss without its body being
/// read, and the pointer goes; an object whose head claims a 4 GB key is left alone by `prune`
/// without that key being read. Reading either would exhaust the machine's memory, so a
/// regression cannot pass quietly.
#[tokio::test]
async fn a_hostile_bucket_cannot_make_the_tier_read_what_no_pointer_promises() {
    const HUGE: u64 = 64 << 30;
    let dir = tempfile::tempdir().unwrap();
    let files = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    let primary: Arc<dyn CacheDriver> = Arc::new(ArrayDriver::new());
    let tier = LargeValueTier::new(
        Arc::clone(&primary),
        ObjectStoreDriver::new(Arc::new(files), "hostile"),
    )
    .threshold(THRESHOLD)
    .orphan_grace(Duration::ZERO);
    tier.put("report", bytes_of(THRESHOLD * 4, 1), Some(MINUTE))
        .await
        .unwrap();
    let large = dir.path().join("hostile").join("large");
    let written: Vec<_> = std::fs::read_dir(&large)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");

    // The object swapped for a huge one of the same name.
    std::fs::File::create(&written[0])
        .unwrap()
        .set_len(HUGE)
        .unwrap();
    assert_eq!(tier.get("report").await.unwrap(), None);
    assert_eq!(
        primary.get("report").await.unwrap(),
        None,
        "the pointer to what is not its object is removed"
    );

    // A head that claims a key longer than any the cache allows.
    let claim = large.join("0123456789abcdef0123456789abcdef");
    let mut head = b"jtcL".to_vec();
    head.extend_from_slice(&u32::MAX.to_be_bytes());
    std::fs::write(&claim, &head).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&claim)
        .unwrap()
        .set_len(HUGE)
        .unwrap();
    tier.prune().await.unwrap();
    assert!(
        claim.exists(),
        "an object that is not the tier's is left alone"
    );
}
