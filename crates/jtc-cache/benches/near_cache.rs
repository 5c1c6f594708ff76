//! The Redis near cache, in rounds on one `redis-server` the benchmark starts: a hot key read
//! through the near cache against a plain `RedisDriver` and against an `ArrayDriver`, and cold
//! keys (a miss every time) with and without the near cache. Each round times every case; the
//! figures are medians of the per-round ratios.
//!
//! `cargo bench -p jtc-cache --bench near_cache` (`JTC_ROUNDS`, default 9). Targets: hot ≥ 20×
//! plain and ≥ 0.7× array; cold ≤ 1.1× plain. docs/benchmarks.md records the figures.
//!
//! Where Redis runs matters for the network cases. `taskset -c 1 cargo bench …` puts the
//! benchmark and the Redis it starts on one core (every server cycle adds to a read);
//! `JTC_REDIS_CORE=0 taskset -c 1 cargo bench …` moves Redis to core 0 (as a Redis on its own
//! host: the round trip dominates).
//!
//! The array driver's value is on the heap, as every value `Cache::put` stores (serialised
//! bytes), so both sides pay the same reference count per read; a `Bytes::from_static` value
//! (no count) is timed too, as a second baseline.

mod rounds;

use std::{future::Future, hint::black_box, time::Instant};

use bytes::Bytes;
use jtc_cache::{ArrayDriver, CacheDriver, RedisConfig, RedisDriver};
use jtc_test_support::RedisServer;

fn main() {
    let (rounds, scale) = rounds::rounds(9);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = RedisServer::start();
    if let Ok(core) = std::env::var("JTC_REDIS_CORE") {
        let pinned = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &core, &server.pid().to_string()])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            pinned,
            "could not pin redis-server to core {core} (taskset, from util-linux)"
        );
        println!("redis-server pinned to core {core}");
    }
    rt.block_on(run(&server.url(), rounds, scale));
}

async fn run(url: &str, rounds: usize, scale: usize) {
    let config = RedisConfig::from_url(url).prefix("bench:");
    let plain = RedisDriver::from_config(&config).await.unwrap();
    let near = RedisDriver::from_config(&config.clone().near_cache(10_000))
        .await
        .unwrap();
    let array = ArrayDriver::new();
    // As `Cache::put` stores it: bytes on the heap, shared by reference count on every read.
    let value = Bytes::from(b"a cached value of a few dozen bytes, as a small profile".to_vec());
    plain.put("hot", value.clone(), None).await.unwrap();
    array.put("hot", value.clone(), None).await.unwrap();
    array
        .put("static", Bytes::from_static(b"a static value"), None)
        .await
        .unwrap();
    let (local_ops, network_ops) = (200_000 / scale, 10_000 / scale);
    let (mut vs_plain, mut vs_array, mut cold_ratio) = (Vec::new(), Vec::new(), Vec::new());
    let mut vs_static = Vec::new();
    let mut last = [0.0; 5];
    for cold in 0..=rounds {
        let plain_hot = time(network_ops, |_| plain.get("hot")).await;
        let near_hot = time(local_ops, |_| near.get("hot")).await;
        let array_hot = time(local_ops, |_| array.get("hot")).await;
        let array_static = time(local_ops, |_| array.get("static")).await;
        let plain_cold = time(network_ops, |i| {
            let key = format!("cold:{cold}:plain:{i}");
            let plain = &plain;
            async move { plain.get(&key).await }
        })
        .await;
        let near_cold = time(network_ops, |i| {
            let key = format!("cold:{cold}:near:{i}");
            let near = &near;
            async move { near.get(&key).await }
        })
        .await;
        vs_plain.push(plain_hot / near_hot);
        vs_array.push(array_hot / near_hot);
        vs_static.push(array_static / near_hot);
        cold_ratio.push(near_cold / plain_cold);
        last = [plain_hot, near_hot, array_hot, plain_cold, near_cold];
    }
    let median = |mut v: Vec<f64>| {
        v.remove(0); // the warm-up round
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let [plain_hot, near_hot, array_hot, plain_cold, near_cold] = last;
    println!(
        "last round: hot get plain {plain_hot:.0} ns, near {near_hot:.0} ns, array \
         {array_hot:.0} ns; cold get plain {plain_cold:.0} ns, near {near_cold:.0} ns"
    );
    let (a, lo, hi) = median(vs_plain);
    println!("hot: near is {a:.1}x a plain Redis get ({lo:.1}–{hi:.1})");
    let (a, lo, hi) = median(vs_array);
    println!("hot: near is {a:.2}x an array get ({lo:.2}–{hi:.2})");
    let (a, lo, hi) = median(vs_static);
    println!("hot: near is {a:.2}x an array get of a static value ({lo:.2}–{hi:.2})");
    let (a, lo, hi) = median(cold_ratio);
    println!("cold: near / plain {a:.3} ({lo:.3}–{hi:.3})");
}

/// Nanoseconds per call of `ops` calls of `op`.
async fn time<F, Fut, T>(ops: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = jtc_cache::Result<T>>,
{
    let started = Instant::now();
    for i in 0..ops {
        black_box(op(i).await.unwrap());
    }
    started.elapsed().as_nanos() as f64 / ops as f64
}
