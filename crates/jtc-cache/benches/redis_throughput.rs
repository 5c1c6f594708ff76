//! Redis driver throughput with 32 concurrent tasks against `redis-benchmark -c 32` on the
//! same server in the same run, plus a deadpool-redis pool as the road not taken; then the
//! driver at 32, 256 and 1,024 tasks against Redis's pipelined ceiling, `redis-benchmark -c 32
//! -P 16`, with the driver's p99 latency at 32 tasks.
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
/// The window of the `HIT` rows' counter.
const WINDOW: Duration = Duration::from_secs(60);
const VALUE: &[u8] = &[b'x'; 3]; // redis-benchmark's default payload is 3 bytes
const ROUNDS: usize = 3;
/// Rounds of the pipelined-ceiling table unless `JTC_ROUNDS` says otherwise.
const PIPELINED_ROUNDS: usize = 7;

#[derive(Clone, Copy, Debug)]
enum Op {
    Get,
    Set,
    Incr,
    /// The limiter's counter: `Cache::hit`, one script call (EVALSHA) per hit.
    Hit,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "GET",
            Op::Set => "SET",
            Op::Incr => "INCR",
            Op::Hit => "HIT",
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
            reference.push(redis_benchmark(&server, op, 1, ""));
            ours.push(runtime.block_on(driver_rps(&driver, op, TASKS)));
            pooled.push(runtime.block_on(deadpool_rps(&pool, op)));
        }
        let ours: Vec<f64> = ours.into_iter().map(|(rps, _)| rps).collect();
        let (reference, ours, pooled) = (median(reference), median(ours), median(pooled));
        println!(
            "| {:<4} | {reference:>21.0} | {ours:>25.0} | {:>5.2} | {pooled:>25.0} | {:>5.2} |",
            op.name(),
            ours / reference,
            pooled / reference
        );
    }

    println!();
    let rounds = std::env::var("JTC_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(PIPELINED_ROUNDS);
    println!(
        "{rounds} rounds; each round measures the ceiling, then the driver at 32, 256 and 1,024 tasks; \
         ratios are medians of per-round ratios (min–max)"
    );
    println!(
        "| op   | redis-benchmark -c 32 -P 16 | driver, 32 tasks | 256 tasks | 1,024 tasks | 1,024 / ceiling | p99 at 32 tasks | bare redis-rs, 1,024 tasks / ceiling |"
    );
    println!(
        "|------|----------------------------:|-----------------:|----------:|------------:|----------------:|----------------:|-------------------------------------:|"
    );
    let bare = runtime.block_on(async {
        let client = redis::Client::open(server.url()).unwrap();
        client.get_multiplexed_async_connection().await.unwrap()
    });
    let hit_sha = runtime.block_on(load_hit_script(&bare));
    for op in [Op::Get, Op::Set, Op::Incr, Op::Hit] {
        let (mut ceilings, mut ratios, mut p99s) = (Vec::new(), Vec::new(), Vec::new());
        let mut floors = Vec::new();
        let mut rates: [Vec<f64>; 3] = Default::default();
        for _ in 0..rounds {
            let ceiling = redis_benchmark(&server, op, 16, &hit_sha);
            floors.push(runtime.block_on(bare_rps(&bare, op, 1_024, &hit_sha)) / ceiling);
            for (i, tasks) in [32, 256, 1_024].into_iter().enumerate() {
                let (rps, p99) = runtime.block_on(driver_rps(&driver, op, tasks));
                rates[i].push(rps);
                if tasks == 32 {
                    p99s.push(p99.as_secs_f64());
                }
                if tasks == 1_024 {
                    ratios.push(rps / ceiling);
                }
            }
            ceilings.push(ceiling);
        }
        let spread = format!(
            "{:.2}–{:.2}",
            ratios.iter().copied().fold(f64::MAX, f64::min),
            ratios.iter().copied().fold(0.0, f64::max)
        );
        let [r32, r256, r1024] = rates.map(median);
        println!(
            "| {:<4} | {:>27.0} | {r32:>16.0} | {r256:>9.0} | {r1024:>11.0} | {:>4.2} ({spread}) | {:>12.0} µs | {:>36.2} |",
            op.name(),
            median(ceilings),
            median(ratios),
            median(p99s) * 1e6,
            median(floors)
        );
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Requests per second `redis-benchmark` reaches with 32 connections, `pipeline` commands in
/// flight on each (1: no pipelining).
fn redis_benchmark(server: &RedisServer, op: Op, pipeline: usize, hit_sha: &str) -> f64 {
    let mut command = Command::new("redis-benchmark");
    command
        .args(["-h", "127.0.0.1", "-p", &server.port().to_string()])
        .args(["-c", &TASKS.to_string()])
        .args(["-n", &(REQUESTS * pipeline.min(5)).to_string()])
        .args(["-P", &pipeline.to_string(), "--csv"]);
    match op {
        // The same script call the driver makes, on the same key.
        Op::Hit => command.args(["EVALSHA", hit_sha, "1", "bench:hit", "60000", "1"]),
        _ => command.args(["-t", &op.name().to_lowercase()]),
    };
    let output = command
        .output()
        .expect("redis-benchmark runs (apt-get install redis-server brings it)");
    let csv = String::from_utf8_lossy(&output.stdout);
    // "test","rps",...  then  "GET","123456.79",...  (a custom command's line starts with
    // its own text)
    let line = csv
        .lines()
        .find(|l| match op {
            Op::Hit => l.starts_with("\"EVALSHA"),
            _ => l.starts_with(&format!("\"{}\"", op.name())),
        })
        .unwrap_or_else(|| panic!("no {} line in redis-benchmark output:\n{csv}", op.name()));
    line.split(',')
        .nth(1)
        .unwrap()
        .trim_matches('"')
        .parse()
        .unwrap()
}

/// Requests per second of `tasks` tasks on the driver, and the p99 of their latencies.
async fn driver_rps(driver: &RedisDriver, op: Op, tasks: usize) -> (f64, Duration) {
    let driver = Arc::new(driver.clone());
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(REQUESTS)));
    let rps = timed(tasks, |task| {
        let (driver, latencies) = (Arc::clone(&driver), Arc::clone(&latencies));
        async move {
            let mut mine = Vec::with_capacity(REQUESTS / tasks);
            for i in 0..REQUESTS / tasks {
                let key = format!("key:{}", (task * 7919 + i) % 1000);
                let started = Instant::now();
                match op {
                    Op::Get => drop(driver.get(&key).await.unwrap()),
                    Op::Set => driver
                        .put(&key, Bytes::from_static(VALUE), None)
                        .await
                        .unwrap(),
                    Op::Incr => drop(driver.increment("counter", 1).await.unwrap()),
                    Op::Hit => drop(driver.hit_by("hit", WINDOW, 1).await.unwrap()),
                }
                mine.push(started.elapsed());
            }
            latencies.lock().unwrap().extend(mine);
        }
    })
    .await;
    let mut all = std::mem::take(&mut *latencies.lock().unwrap());
    all.sort_unstable();
    (rps, all[all.len() * 99 / 100])
}

/// The `hit` script's SHA, loaded on the server so that `redis-benchmark` can call it.
async fn load_hit_script(connection: &redis::aio::MultiplexedConnection) -> String {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(include_str!("../src/drivers/redis/hit.lua"))
        .query_async(&mut connection.clone())
        .await
        .unwrap()
}

/// Requests per second of `tasks` tasks on a bare redis-rs multiplexed connection — no
/// timeouts, no reconnection, no key prefix — the floor of any driver built on it.
async fn bare_rps(
    connection: &redis::aio::MultiplexedConnection,
    op: Op,
    tasks: usize,
    hit_sha: &str,
) -> f64 {
    let (connection, hit_sha) = (connection.clone(), Arc::new(hit_sha.to_owned()));
    timed(tasks, |task| {
        let (mut connection, hit_sha) = (connection.clone(), Arc::clone(&hit_sha));
        async move {
            for i in 0..REQUESTS / tasks {
                let key = format!("bench:key:{}", (task * 7919 + i) % 1000);
                let cmd = command(op, &key, &hit_sha);
                let _: redis::Value = cmd.query_async(&mut connection).await.unwrap();
            }
        }
    })
    .await
}

async fn deadpool_rps(pool: &deadpool_redis::Pool, op: Op) -> f64 {
    let pool = pool.clone();
    timed(TASKS, |task| {
        let pool = pool.clone();
        async move {
            let mut connection = pool.get().await.unwrap();
            for i in 0..REQUESTS / TASKS {
                let key = format!("bench:key:{}", (task * 7919 + i) % 1000);
                let cmd = command(op, &key, "");
                let _: redis::Value = cmd.query_async(&mut connection).await.unwrap();
            }
        }
    })
    .await
}

/// The command a bare client sends for `op` on `key`.
fn command(op: Op, key: &str, hit_sha: &str) -> redis::Cmd {
    let mut cmd = redis::cmd(match op {
        Op::Get => "GET",
        Op::Set => "SET",
        Op::Incr => "INCR",
        Op::Hit => "EVALSHA",
    });
    match op {
        Op::Get => cmd.arg(key),
        Op::Set => cmd.arg(key).arg(VALUE),
        Op::Incr => cmd.arg("bench:counter"),
        Op::Hit => cmd.arg(hit_sha).arg(1).arg("bench:hit").arg(60_000).arg(1),
    };
    cmd
}

/// Runs `tasks` copies of `work` at once and returns requests per second over all of them.
async fn timed<F, Fut>(tasks: usize, work: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let running: Vec<_> = (0..tasks).map(|task| tokio::spawn(work(task))).collect();
    for task in running {
        task.await.unwrap();
    }
    let elapsed = started.elapsed().max(Duration::from_micros(1));
    (REQUESTS / tasks * tasks) as f64 / elapsed.as_secs_f64()
}
