//! `DynamoDbDriver` against bare `aws-sdk-dynamodb` calls — the same requests a hand-written
//! cache would send (a consistent `GetItem`, a `PutItem` with an expiry, an `UpdateItem`
//! with `ADD`), over the same client — on moto's server started by the benchmark, in
//! alternating rounds. moto answers one request at a time, so one task is measured: the
//! figure is the driver's own cost on top of a round trip.
//!
//! The bare side sends the requests the driver sends (for `increment`, the same conditions),
//! so the ratio is the driver's own cost; one more line compares `increment` with a plain
//! `ADD`, which is what the conditions cost on the server.
//!
//! `cargo bench -p jtc-cache --features dynamodb --bench dynamodb` (`JTC_ROUNDS`, default 11;
//! needs `scripts/setup-moto`). The figure is the median of the per-round ratios bare time /
//! driver time (target ≥ 0.9); docs/benchmarks.md records it.

mod rounds;
#[allow(
    dead_code,
    reason = "the 32-task helpers: moto answers one request at a time, so only one task is measured"
)]
mod versus;

use std::{hint::black_box, sync::Arc, time::Duration};

use aws_sdk_dynamodb::{Client, primitives::Blob, types::AttributeValue};
use bytes::Bytes;
use jtc_cache::{CacheDriver, DynamoDbConfig, DynamoDbDriver};
use jtc_test_support::MotoServer;
use versus::compare;

const KEYS: usize = 100;
const TTL: Duration = Duration::from_secs(3_600);
const VALUE: &[u8] = b"a cached value of a few dozen bytes, as a small profile";
const TABLE: &str = "bench";

fn main() {
    let (rounds, scale) = rounds::rounds(11);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = MotoServer::start();
    rt.block_on(run(&server.endpoint(), rounds, scale));
}

/// The bare side: the driver's own client, keys shaped as the driver's.
#[derive(Clone)]
struct Bare {
    client: Client,
    keys: Arc<Vec<String>>,
}

impl Bare {
    async fn get(&self, i: usize) {
        let read = self
            .client
            .get_item()
            .table_name(TABLE)
            .consistent_read(true)
            .key("key", AttributeValue::S(self.keys[i % KEYS].clone()))
            .send()
            .await
            .unwrap();
        black_box(read.item().and_then(|item| item.get("v")).cloned());
    }

    async fn put(&self, i: usize) {
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            + TTL;
        self.client
            .put_item()
            .table_name(TABLE)
            .item("key", AttributeValue::S(self.keys[i % KEYS].clone()))
            .item("v", AttributeValue::B(Blob::new(VALUE)))
            .item("xms", AttributeValue::N(expires.as_millis().to_string()))
            .item("ttl", AttributeValue::N(expires.as_secs().to_string()))
            .send()
            .await
            .unwrap();
    }

    /// The request the driver sends for a live counter: `ADD` under the conditions that keep
    /// an expired counter from counting on and refuse to pass `i64::MAX`.
    async fn increment(&self, i: usize) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let updated = self
            .client
            .update_item()
            .table_name(TABLE)
            .key(
                "key",
                AttributeValue::S(format!("{}:n", self.keys[i % KEYS])),
            )
            .update_expression("ADD #n :by")
            .condition_expression(
                "attribute_exists(#k) AND (attribute_not_exists(#x) OR #x > :now) \
                 AND attribute_exists(#n) AND #n <= :bound",
            )
            .expression_attribute_names("#k", "key")
            .expression_attribute_names("#x", "xms")
            .expression_attribute_names("#n", "n")
            .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
            .expression_attribute_values(":by", AttributeValue::N("1".into()))
            .expression_attribute_values(":bound", AttributeValue::N((i64::MAX - 1).to_string()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .unwrap();
        black_box(updated.attributes().cloned());
    }

    /// A plain `ADD` with no condition: what the conditions cost on the server.
    async fn plain_add(&self, i: usize) {
        let updated = self
            .client
            .update_item()
            .table_name(TABLE)
            .key(
                "key",
                AttributeValue::S(format!("{}:n", self.keys[i % KEYS])),
            )
            .update_expression("ADD n :one")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::UpdatedNew)
            .send()
            .await
            .unwrap();
        black_box(updated.attributes().cloned());
    }
}

async fn run(endpoint: &str, rounds: usize, scale: usize) {
    let config = DynamoDbConfig::new(TABLE)
        .endpoint(endpoint)
        .region("us-east-1")
        .credentials("bench", "bench")
        .prefix("bench:")
        .timeout(Duration::from_secs(30));
    DynamoDbDriver::create_table(&config).await.unwrap();
    let driver = Arc::new(DynamoDbDriver::from_config(&config).await.unwrap());
    let bare = Bare {
        client: driver.client().clone(),
        keys: Arc::new(
            (0..KEYS)
                .map(|i| format!("bare:0123456789ab/user:{i}:profile"))
                .collect(),
        ),
    };
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("user:{i}:profile")).collect());
    for i in 0..KEYS {
        driver
            .put(&keys[i], Bytes::from_static(VALUE), Some(TTL))
            .await
            .unwrap();
        driver
            .increment(&format!("{}:n", keys[i]), 1)
            .await
            .unwrap();
        bare.put(i).await;
        bare.plain_add(i).await;
    }
    let ops = 200 / scale.max(1);
    for (name, op) in [
        ("get", 0),
        ("put", 1),
        ("increment", 2),
        ("increment vs a plain ADD", 3),
    ] {
        let bare_op = |i: usize| {
            let bare = bare.clone();
            async move {
                match op {
                    0 => bare.get(i).await,
                    1 => bare.put(i).await,
                    2 => bare.increment(i).await,
                    _ => bare.plain_add(i).await,
                }
            }
        };
        let driver_op = |i: usize| {
            let (driver, keys) = (Arc::clone(&driver), Arc::clone(&keys));
            async move {
                let key = &keys[i % KEYS];
                match op {
                    0 => drop(black_box(driver.get(key).await.unwrap())),
                    1 => driver
                        .put(key, Bytes::from_static(VALUE), Some(TTL))
                        .await
                        .unwrap(),
                    _ => drop(black_box(
                        driver.increment(&format!("{key}:n"), 1).await.unwrap(),
                    )),
                }
            }
        };
        compare(
            &format!("{name} (1 task)"),
            rounds,
            ops,
            &bare_op,
            &driver_op,
        )
        .await;
    }
}
