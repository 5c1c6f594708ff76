//! `ObjectStoreDriver` and the large-value tier against their baselines, in alternating rounds
//! on the same servers (moto's S3 and a redis-server, started by the benchmark):
//!
//! - a 10 MB and a 1 KB `get` through the driver, and a 10 MB `get` through a tier over Redis,
//!   each against a bare `object_store` `get` of an object of the same size (target ≥ 0.9);
//! - a small `get` through the tier against the same `get` on its Redis primary alone (target:
//!   within 5 %, a ratio ≥ 0.95).
//!
//! `cargo bench -p jtc-cache --features object-store,redis --bench object_store`
//! (`JTC_ROUNDS`, default 11; needs `scripts/setup-moto`). Each figure is the median of the
//! per-round ratios baseline time / measured time; docs/benchmarks.md records them.

mod rounds;
#[allow(
    dead_code,
    reason = "the 32-task helpers: moto answers one request at a time, so only one task is measured"
)]
mod versus;

use std::{hint::black_box, sync::Arc, time::Duration};

use bytes::Bytes;
use jtc_cache::{CacheDriver, LargeValueTier, ObjectStoreDriver, RedisDriver};
use jtc_test_support::{MotoServer, RedisServer};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, aws::AmazonS3Builder, path::Path};
use versus::compare;

const TTL: Duration = Duration::from_secs(3_600);

fn main() {
    let (rounds, scale) = rounds::rounds(11);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = MotoServer::start();
    server.create_bucket("bench");
    let redis = RedisServer::start();
    rt.block_on(run(&server.endpoint(), &redis.url(), rounds, scale));
}

async fn run(endpoint: &str, redis: &str, rounds: usize, scale: usize) {
    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name("bench")
            .with_endpoint(endpoint)
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("bench")
            .with_secret_access_key("bench")
            .build()
            .unwrap(),
    );
    let objects = ObjectStoreDriver::new(Arc::clone(&store), "tier");
    let primary: Arc<dyn CacheDriver> =
        Arc::new(RedisDriver::connect(redis, "bench").await.unwrap());
    let tier: Arc<dyn CacheDriver> = Arc::new(LargeValueTier::new(Arc::clone(&primary), objects));
    let driver: Arc<dyn CacheDriver> =
        Arc::new(ObjectStoreDriver::new(Arc::clone(&store), "cache"));
    for (name, through, size, ops) in [
        ("10 MB get, driver", &driver, 10 << 20, 10),
        ("1 KB get, driver", &driver, 1 << 10, 100),
        ("10 MB get, tier over Redis", &tier, 10 << 20, 10),
    ] {
        let driver = Arc::clone(through);
        let value = Bytes::from(vec![7u8; size]);
        driver.put("value", value.clone(), Some(TTL)).await.unwrap();
        let bare_path = Path::from("bare/value");
        store
            .put(&bare_path, PutPayload::from(value.clone()))
            .await
            .unwrap();
        let bare_op = |_| {
            let (store, path) = (Arc::clone(&store), bare_path.clone());
            async move {
                let bytes = store.get(&path).await.unwrap().bytes().await.unwrap();
                black_box(bytes);
            }
        };
        let driver_op = |_| {
            let driver = Arc::clone(&driver);
            async move {
                black_box(driver.get("value").await.unwrap());
            }
        };
        compare(name, rounds, (ops / scale).max(1), &bare_op, &driver_op).await;
    }

    // A small value through the tier against the same read on its primary alone.
    primary
        .put("small", Bytes::from(vec![7u8; 1 << 10]), Some(TTL))
        .await
        .unwrap();
    let on = |driver: &Arc<dyn CacheDriver>| {
        let driver = Arc::clone(driver);
        move |_| {
            let driver = Arc::clone(&driver);
            async move {
                black_box(driver.get("small").await.unwrap());
            }
        }
    };
    compare(
        "1 KB get, tier vs its Redis primary",
        rounds,
        (5_000 / scale).max(1),
        &on(&primary),
        &on(&tier),
    )
    .await;
}
