//! The conformance suite on `ObjectStoreDriver` — over S3 (moto's server, started by the
//! tests) and over the local filesystem (no conditional update there: the driver guards its
//! read-modify-writes with a create-if-absent object) — plus what only object storage can get
//! wrong: large values, a bucket shared by prefixes and other applications, and races.

#![cfg(feature = "object-store")]

mod conformance;

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use conformance::Subject;
use jtc_cache::{Cache, ManualClock, ObjectStoreDriver};
use jtc_test_support::{shared_moto, unique_prefix};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, aws::AmazonS3Builder, path::Path};

const MINUTE: Duration = Duration::from_secs(60);
const BUCKET: &str = "jtc-tests";

/// The shared moto server's test bucket, as an `object_store` store.
fn bucket() -> Arc<dyn ObjectStore> {
    static CREATED: OnceLock<()> = OnceLock::new();
    let server = shared_moto();
    CREATED.get_or_init(|| server.create_bucket(BUCKET));
    Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(server.endpoint())
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .build()
            .unwrap(),
    )
}

async fn s3() -> Subject {
    let clock = ManualClock::new(1_700_000_000_000);
    let driver =
        ObjectStoreDriver::new(bucket(), &unique_prefix("conformance")).with_clock(clock.clone());
    Subject {
        cache: Cache::new(driver),
        clock: Some(clock),
        guard: Box::new(()),
    }
}

async fn local() -> Subject {
    let clock = ManualClock::new(1_700_000_000_000);
    let dir = tempfile::tempdir().unwrap();
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
    let driver = ObjectStoreDriver::new(Arc::new(store), "cache").with_clock(clock.clone());
    Subject {
        cache: Cache::new(driver),
        clock: Some(clock),
        guard: Box::new(dir),
    }
}

/// The suite over S3.
mod on_s3 {
    use super::*;

    async fn subject() -> Subject {
        s3().await
    }

    conformance_tests!(subject);
}

/// The suite over the local filesystem.
mod on_local_files {
    use super::*;

    async fn subject() -> Subject {
        local().await
    }

    conformance_tests!(subject);
}

#[tokio::test]
async fn a_20_mb_value_round_trips() {
    let cache = Cache::new(ObjectStoreDriver::new(bucket(), &unique_prefix("large")));
    let value: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let driver = cache.driver();
    driver
        .put("report", Bytes::from(value.clone()), Some(MINUTE))
        .await
        .unwrap();
    assert_eq!(
        driver.get("report").await.unwrap().as_deref(),
        Some(&value[..])
    );
}

#[tokio::test]
async fn two_prefixes_share_a_bucket_and_flush_leaves_the_other_and_foreign_objects_alone() {
    let store = bucket();
    let (mine, theirs) = (unique_prefix("mine"), unique_prefix("theirs"));
    let foreign = Path::from(format!("{mine}-not-mine/report.pdf"));
    store
        .put(&foreign, PutPayload::from_static(b"someone else's"))
        .await
        .unwrap();
    let mine = Cache::new(ObjectStoreDriver::new(Arc::clone(&store), &mine));
    let theirs = Cache::new(ObjectStoreDriver::new(Arc::clone(&store), &theirs));
    for i in 0..30 {
        mine.put(&format!("k{i}"), &i, MINUTE).await.unwrap();
    }
    theirs.put("k0", &-1, MINUTE).await.unwrap();
    mine.flush().await.unwrap();
    assert_eq!(mine.get::<i32>("k0").await.unwrap(), None);
    assert_eq!(mine.get::<i32>("k29").await.unwrap(), None);
    assert_eq!(theirs.get::<i32>("k0").await.unwrap(), Some(-1));
    assert!(
        store.get(&foreign).await.is_ok(),
        "the foreign object is still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_100_concurrent_adds_and_locks_exactly_one_wins_across_handles() {
    let store = bucket();
    let prefix = unique_prefix("race");
    let won = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..100 {
        // A handle per caller: each its own process as far as the driver knows.
        let cache = Cache::new(ObjectStoreDriver::new(Arc::clone(&store), &prefix));
        let won = Arc::clone(&won);
        tasks.push(tokio::spawn(async move {
            if cache.add("once", &i, MINUTE).await.unwrap() {
                won.fetch_add(1, Ordering::SeqCst);
            }
            // Held until every task is done: none is released while others still try.
            cache.lock("job", MINUTE).try_acquire().await.unwrap()
        }));
    }
    let mut held = Vec::new();
    for task in tasks {
        held.extend(task.await.unwrap());
    }
    let locks = held.len();
    assert_eq!(won.load(Ordering::SeqCst), 1, "one add stored");
    assert_eq!(locks, 1, "one lock holder");
}

#[tokio::test]
async fn prune_removes_expired_objects_and_tombstones_only() {
    let clock = ManualClock::new(1_700_000_000_000);
    let driver =
        ObjectStoreDriver::new(bucket(), &unique_prefix("prune")).with_clock(clock.clone());
    let cache = Cache::new(driver);
    cache
        .put("short", &1, Duration::from_secs(1))
        .await
        .unwrap();
    cache.put("long", &1, MINUTE).await.unwrap();
    cache.forever("always", &1).await.unwrap();
    assert_eq!(cache.pull::<i32>("long").await.unwrap(), Some(1));
    cache.put("long", &2, MINUTE).await.unwrap();
    cache.put("pulled", &3, MINUTE).await.unwrap();
    assert_eq!(cache.pull::<i32>("pulled").await.unwrap(), Some(3));
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        cache.prune().await.unwrap(),
        2,
        "the expired entry and the tombstone"
    );
    assert_eq!(cache.get::<i32>("long").await.unwrap(), Some(2));
    assert_eq!(cache.get::<i32>("always").await.unwrap(), Some(1));
}
