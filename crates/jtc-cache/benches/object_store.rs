//! `ObjectStoreDriver` against a bare `object_store` `get` of the same object size on the same
//! store (moto's S3, started by the benchmark), in alternating rounds: a 10 MB value, the
//! large-value case the driver is for, and a small one.
//!
//! `cargo bench -p jtc-cache --features object-store --bench object_store` (`JTC_ROUNDS`,
//! default 11; needs `scripts/setup-moto`). The figure is the median of the per-round ratios
//! bare time / driver time (target ≥ 0.9); docs/benchmarks.md records it.

mod rounds;
#[allow(
    dead_code,
    reason = "the 32-task helpers: moto answers one request at a time, so only one task is measured"
)]
mod versus;

use std::{hint::black_box, sync::Arc, time::Duration};

use bytes::Bytes;
use jtc_cache::{CacheDriver, ObjectStoreDriver};
use jtc_test_support::MotoServer;
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
    rt.block_on(run(&server.endpoint(), rounds, scale));
}

async fn run(endpoint: &str, rounds: usize, scale: usize) {
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
    let driver = Arc::new(ObjectStoreDriver::new(Arc::clone(&store), "cache"));
    for (name, size, ops) in [("10 MB get", 10 << 20, 10), ("1 KB get", 1 << 10, 100)] {
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
}
