//! Redis driver throughput with 32 concurrent tasks against `redis-benchmark -c 32` on the
//! same server in the same run, plus a deadpool-redis pool as the road not taken.
//!
//! `cargo bench -p jtc-cache --bench redis_throughput` (needs `redis-server` and
//! `redis-benchmark` on PATH). The server, the reference and the driver share this machine;
//! each figure is requests per second, and the ratio is driver ÷ redis-benchmark.

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use jtc_cache::{CacheDriver, RedisDriver};
use jtc_test_support::RedisServer;

const TASKS: usize = 32;
const REQUESTS: usize = 200_000;
const VALUE: &[u8] = &[b'x'; 3]; // redis-benchmark's default payload is 3 bytes
const ROUNDS: usize = 3;

#[derive(Clone, Copy, Debug)]
enum Op {
    Get,
    Set,
    Incr,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Set => "SET",
            Op::Incr => "INCR",
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there are no unit tests here
    }
    let server = RedisServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let driver = runtime
        .block_on(RedisDriver::connect(&server.url(), "bench:"))
        .unwrap();
    let pool = deadpool_redis::Config::from_url(server.url())
        .builder()
        .unwrap()
        .max_size(TASKS)
        .runtime(deadpool_redis::Runtime::Tokio1)
        .build()
        .unwrap();
    runtime.block_on(async {
        driver
            .put("key:__rand_int__", Bytes::from_static(VALUE), None)
            .await
            .unwrap();
    });

    println!(
        "| op   | redis-benchmark -c 32 | jtc RedisDriver, 32 tasks | ratio | deadpool-redis pool of 32 | ratio |"
    );
    println!(
        "|------|----------------------:|--------------------------:|------:|--------------------------:|------:|"
    );
    for op in [Op::Get, Op::Set, Op::Incr] {
        let mut reference = Vec::new();
        let mut ours = Vec::new();
        let mut pooled = Vec::new();
        for _ in 0..ROUNDS {
            reference.push(redis_benchmark(&server, op));
            ours.push(runtime.block_on(driver_rps(&driver, op)));
            pooled.push(runtime.block_on(deadpool_rps(&pool, op)));
        }
        let (reference, ours, pooled) = (median(reference), median(ours), median(pooled));
        println!(
            "| {:<4} | {reference:>21.0} | {ours:>25.0} | {:>5.2} | {pooled:>25.0} | {:>5.2} |",
            op.name(),
            ours / reference,
            pooled / reference
        );
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Requests per second `redis-benchmark` reaches with 32 connections, no pipelining.
fn redis_benchmark(server: &RedisServer, op: Op) -> f64 {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .args(["-c", &TASKS.to_string(), "-n", &REQUESTS.to_string()])
        .args(["-t", &op.name().to_lowercase(), "--csv"])
        .output()
        .expect("redis-benchmark runs (apt-get install redis-server brings it)");
    let csv = String::from_utf8_lossy(&output.stdout);
    // "test","rps",...  then  "GET","123456.79",...
    let line = csv
        .lines()
        .find(|l| l.starts_with(&format!("\"{}\"", op.name())))
        .unwrap_or_else(|| panic!("no {} line in redis-benchmark output:\n{csv}", op.name()));
    line.split(',')
        .nth(1)
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap()
}

async fn driver_rps(driver: &RedisDriver, op: Op) -> f64 {
    let driver = Arc::new(driver.clone());
    timed(|task| {
        let driver = Arc::clone(&driver);
        async move {
            for i in 0..REQUESTS / TASKS {
                let key = format!("key:{}", (task * 7919 + i) % 1000);
                match op {
                    Op::Get => drop(driver.get(&key).await.unwrap()),
                    Op::Set => driver
                        .put(&key, Bytes::from_static(VALUE), None)
                        .await
                        .unwrap(),
                    Op::Incr => drop(driver.increment("counter", 1).await.unwrap()),
                }
            }
        }
    })
    .await
}

async fn deadpool_rps(pool: &deadpool_redis::Pool, op: Op) -> f64 {
    let pool = pool.clone();
    timed(|task| {
        let pool = pool.clone();
        async move {
            let mut connection = pool.get().await.unwrap();
            for i in 0..REQUESTS / TASKS {
                let key = format!("bench:key:{}", (task * 7919 + i) % 1000);
                let mut cmd = match op {
                    Op::Get => redis::cmd("GET"),
                    Op::Set => redis::cmd("SET"),
                    Op::Incr => redis::cmd("INCR"),
                };
                match op {
                    Op::Get => cmd.arg(&key),
                    Op::Set => cmd.arg(&key).arg(VALUE),
                    Op::Incr => cmd.arg("bench:counter"),
                };
                let _: redis::Value = cmd.query_async(&mut connection).await.unwrap();
            }
        }
    })
    .await
}

/// Runs `TASKS` copies of `work` at once and returns requests per second over all of them.
async fn timed<F, Fut>(work: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS).map(|task| tokio::spawn(work(task))).collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().max(Duration::from_micros(1));
    (REQUESTS / TASKS * TASKS) as f64 / elapsed.as_secs_f64()
}
