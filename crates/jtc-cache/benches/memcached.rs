//! `MemcachedDriver` against a bare loop over `async-memcached` (the most used async memcached
//! crate; no cache layer) on the same server, in alternating rounds: `get`, `set` and `incr`
//! from one task (round-trip bound) and from 32 concurrent tasks (throughput). The bare side
//! gives each task its own connection, as that crate is meant to be used; the driver keeps a
//! pool of up to 32 per server.
//!
//! `taskset -c 1 cargo bench -p jtc-cache --features memcached --bench memcached`
//! (`JTC_ROUNDS`, default 15). The server is one the benchmark starts (`memcached -t 1`, on
//! PATH) and moves to core 0, so the clients (both sides, one runtime thread) and the server
//! do not take turns on one core. The figure is the median of the per-round ratios bare time
//! / driver time (target ≥ 0.9); docs/benchmarks.md records it.

mod rounds;
mod versus;

use std::{hint::black_box, sync::Arc, time::Duration};

use async_memcached::{AsciiProtocol, Client};
use bytes::Bytes;
use jtc_cache::{CacheDriver, MemcachedDriver};
use jtc_test_support::MemcachedServer;
use tokio::sync::Mutex;
use versus::{TASKS, compare, tasks};

const KEYS: usize = 1_000;
const TTL: Duration = Duration::from_secs(3_600);
const VALUE: &[u8] = b"a cached value of a few dozen bytes, as a small profile";

fn main() {
    let (rounds, scale) = rounds::rounds(15);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = MemcachedServer::start_with(&["-t", "1"]);
    let pinned = std::process::Command::new("taskset")
        .args(["-p", "-c", "0", &server.pid().to_string()])
        .output()
        .is_ok_and(|o| o.status.success());
    println!(
        "memcached {} core 0",
        if pinned { "pinned to" } else { "not pinned to" }
    );
    rt.block_on(run(&server.address(), rounds, scale));
}

/// The bare side: one `async-memcached` client per task, keys as the driver would send them
/// (the prefix and a namespace-sized tag).
#[derive(Clone)]
struct Bare {
    clients: Arc<Vec<Mutex<Client>>>,
    keys: Arc<Vec<String>>,
}

impl Bare {
    async fn connect(address: &str) -> Self {
        let mut clients = Vec::new();
        for _ in 0..TASKS {
            clients.push(Mutex::new(
                Client::new(format!("tcp://{address}")).await.unwrap(),
            ));
        }
        let keys = (0..KEYS)
            .map(|i| format!("bare:0123456789ab:user:{i}:profile"))
            .collect();
        Self {
            clients: Arc::new(clients),
            keys: Arc::new(keys),
        }
    }

    async fn get(&self, task: usize, i: usize) {
        let mut client = self.clients[task].lock().await;
        black_box(client.get(&self.keys[i % KEYS]).await.unwrap());
    }

    async fn set(&self, task: usize, i: usize) {
        let mut client = self.clients[task].lock().await;
        let ttl = Some(TTL.as_secs() as i64);
        client
            .set(&self.keys[i % KEYS], VALUE, ttl, None)
            .await
            .unwrap();
    }

    async fn incr(&self, task: usize, i: usize) {
        let mut client = self.clients[task].lock().await;
        let key = format!("{}:n", self.keys[i % KEYS]);
        black_box(client.increment(&key, 1).await.unwrap());
    }
}

async fn run(address: &str, rounds: usize, scale: usize) {
    let driver = Arc::new(MemcachedDriver::connect(address, "bench:").await.unwrap());
    let bare = Bare::connect(address).await;
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("user:{i}:profile")).collect());
    for i in 0..KEYS {
        driver
            .put(&keys[i], Bytes::from_static(VALUE), Some(TTL))
            .await
            .unwrap();
        bare.set(0, i).await;
        driver
            .increment(&format!("{}:n", keys[i]), 1)
            .await
            .unwrap();
        let mut client = bare.clients[0].lock().await;
        let n = format!("{}:n", bare.keys[i]);
        client.set(&n, &b"0"[..], None, None).await.unwrap();
    }
    let ops = 20_000 / scale;

    // One task: every call waits for its round trip.
    for (name, op) in [("get", 0), ("set", 1), ("incr", 2)] {
        let bare_op = |i: usize| {
            let bare = bare.clone();
            async move {
                match op {
                    0 => bare.get(0, i).await,
                    1 => bare.set(0, i).await,
                    _ => bare.incr(0, i).await,
                }
            }
        };
        let driver_op = |i: usize| {
            let (driver, keys) = (Arc::clone(&driver), Arc::clone(&keys));
            async move { driver_call(&driver, &keys[i % KEYS], op).await }
        };
        compare(
            &format!("{name} (1 task)"),
            rounds,
            ops / 4,
            &bare_op,
            &driver_op,
        )
        .await;
    }

    // 32 tasks at once: throughput.
    let each = ops / TASKS;
    for (name, op) in [("get", 0), ("set", 1), ("incr", 2)] {
        let bare_op = tasks(each, {
            let bare = bare.clone();
            move |i| {
                let bare = bare.clone();
                async move {
                    let task = i / each.max(1) % TASKS;
                    match op {
                        0 => bare.get(task, i).await,
                        1 => bare.set(task, i).await,
                        _ => bare.incr(task, i).await,
                    }
                }
            }
        });
        let driver_op = tasks(each, {
            let (driver, keys) = (Arc::clone(&driver), Arc::clone(&keys));
            move |i| {
                let (driver, keys) = (Arc::clone(&driver), Arc::clone(&keys));
                async move { driver_call(&driver, &keys[i % KEYS], op).await }
            }
        });
        let label = format!("{name} ({TASKS} tasks)");
        compare(&label, rounds, 1, &bare_op, &driver_op).await;
    }
}

async fn driver_call(driver: &MemcachedDriver, key: &str, op: u8) {
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
