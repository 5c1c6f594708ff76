//! Warming 10,000 entries into Redis with `Warmer` (`.concurrency(32)`) against a bare loop of
//! `Cache::put_many` in chunks of 500 over the same entries, in alternating rounds on one
//! redis-server the benchmark starts. Each round writes fresh keys (no flush in the timing);
//! the warmer checks each key first (skip what is present), as it does by default.
//!
//! `cargo bench -p jtc-cache --features redis,axum --bench warm` (`JTC_ROUNDS`, default 11).
//! The figure is the median of the per-round ratios bare time / warmer time (target ≥ 0.8);
//! docs/benchmarks.md records it.

mod rounds;
#[allow(
    dead_code,
    reason = "only `compare` is used: the warmer brings its own tasks"
)]
mod versus;

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use jtc_cache::{Cache, RedisDriver, warm::Warmer};
use jtc_test_support::RedisServer;
use serde::Serialize;
use versus::compare;

const ENTRIES: usize = 10_000;
const CHUNK: usize = 500;
const TTL: Duration = Duration::from_secs(3_600);

#[derive(Serialize)]
struct Profile {
    id: usize,
    name: String,
}

fn profile(id: usize) -> Profile {
    Profile {
        id,
        name: format!("User {id}"),
    }
}

fn main() {
    let (rounds, scale) = rounds::rounds(11);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    rt.block_on(async {
        let cache = Cache::new(RedisDriver::connect(&server.url(), "bench").await.unwrap());
        let entries = ENTRIES / scale;
        // Every call writes keys no call wrote before.
        let batch = Arc::new(AtomicUsize::new(0));
        let bare = |_| {
            let (cache, n) = (cache.clone(), batch.fetch_add(1, Ordering::Relaxed));
            async move {
                let keys: Vec<String> = (0..entries).map(|i| format!("b{n}:user:{i}")).collect();
                for chunk in keys.chunks(CHUNK).enumerate().map(|(c, keys)| {
                    keys.iter()
                        .enumerate()
                        .map(|(i, key)| (key.as_str(), profile(c * CHUNK + i)))
                        .collect::<Vec<_>>()
                }) {
                    cache.put_many(&chunk, TTL).await.unwrap();
                }
            }
        };
        let warmer = |_| {
            let (cache, n) = (cache.clone(), batch.fetch_add(1, Ordering::Relaxed));
            async move {
                let keys = (0..entries).map(move |i| format!("w{n}:user:{i}"));
                let report = Warmer::new(&cache)
                    .entries(keys, TTL, |key| async move {
                        let id = key.rsplit(':').next().unwrap().parse().unwrap();
                        Ok::<_, Infallible>(profile(id))
                    })
                    .concurrency(32)
                    .run()
                    .await;
                assert_eq!(report.loaded, entries);
            }
        };
        compare(
            "warm 10,000 entries into Redis (put_many in chunks / Warmer, 32 at once)",
            rounds,
            1,
            &bare,
            &warmer,
        )
        .await;
    });
}
