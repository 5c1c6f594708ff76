//! Driver throughput against raw baselines measured in the same run.
//!
//! `cargo bench -p jtc-cache --bench drivers`. Each group pairs a driver operation with the
//! bare data-structure or file-system work it wraps; docs/benchmarks.md records the ratios.

use std::{
    fs,
    hint::black_box,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dashmap::DashMap;
use jtc_cache::{ArrayDriver, CacheDriver};

mod common;

use common::{FileSetup, KEYS, TTL, VALUE, file_setup, keys, raw_write};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn array(c: &mut Criterion) {
    let rt = runtime();
    let keys = keys();
    let raw: DashMap<String, Vec<u8>> = DashMap::new();
    let driver = ArrayDriver::new();
    for key in &keys {
        raw.insert(key.clone(), VALUE.to_vec());
        rt.block_on(driver.put(key, Bytes::copy_from_slice(VALUE), TTL))
            .unwrap();
    }
    let mut group = c.benchmark_group("array");
    group.throughput(Throughput::Elements(1));

    let mut i = 0;
    group.bench_function("get/raw-dashmap", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % KEYS;
            let (raw, key) = (&raw, &keys[i]);
            async move { black_box(raw.get(key).map(|v| v.clone())) }
        })
    });
    group.bench_function("get/driver", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % KEYS;
            let key = &keys[i];
            let driver = &driver;
            async move { black_box(driver.get(key).await.unwrap()) }
        })
    });

    group.bench_function("put/raw-dashmap", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % KEYS;
            let (raw, key) = (&raw, &keys[i]);
            async move { black_box(raw.insert(key.clone(), VALUE.to_vec())) }
        })
    });
    group.bench_function("put/driver", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % KEYS;
            let key = &keys[i];
            let driver = &driver;
            async move {
                driver
                    .put(key, Bytes::copy_from_slice(VALUE), TTL)
                    .await
                    .unwrap()
            }
        })
    });

    group.finish();
    array_new_keys(c, &rt);
    array_increment(c, &rt, &driver, &keys);
}

/// Puts of keys the map does not hold yet (a `remember` after a miss): each batch writes
/// fresh keys, prepared outside the timing, into an empty map.
fn array_new_keys(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let mut group = c.benchmark_group("array");
    group.throughput(Throughput::Elements(1));
    let fresh =
        |iters: u64| -> Vec<String> { (0..iters).map(|i| format!("new:{i}:profile")).collect() };
    group.bench_function("put-new/raw-dashmap", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let keys = fresh(iters);
            async move {
                let raw: DashMap<String, Vec<u8>> = DashMap::new();
                let start = std::time::Instant::now();
                for key in &keys {
                    black_box(raw.insert(key.clone(), VALUE.to_vec()));
                }
                start.elapsed()
            }
        })
    });
    group.bench_function("put-new/driver", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let keys = fresh(iters);
            async move {
                let driver = ArrayDriver::builder().sweep_interval(None).build();
                let start = std::time::Instant::now();
                for key in &keys {
                    driver
                        .put(key, Bytes::copy_from_slice(VALUE), TTL)
                        .await
                        .unwrap();
                }
                start.elapsed()
            }
        })
    });

    group.finish();
}

/// Counters: the bare map parses and formats the decimal text the driver keeps as a number.
fn array_increment(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    driver: &ArrayDriver,
    keys: &[String],
) {
    let mut group = c.benchmark_group("array");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    let counters: DashMap<String, Vec<u8>> = DashMap::new();
    let counter_keys: Vec<String> = keys.iter().map(|k| format!("{k}:visits")).collect();
    group.bench_function("increment/raw-dashmap", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 1) % KEYS;
            let (counters, key) = (&counters, &counter_keys[i]);
            async move {
                let mut entry = match counters.get_mut(key.as_str()) {
                    Some(entry) => entry,
                    None => counters.entry(key.clone()).or_insert_with(|| b"0".to_vec()),
                };
                let n: i64 = std::str::from_utf8(&entry).unwrap().parse().unwrap();
                *entry = (n + 1).to_string().into_bytes();
                black_box(n + 1)
            }
        })
    });
    group.bench_function("increment/driver", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 1) % KEYS;
            let key = &counter_keys[i];
            async move { black_box(driver.increment(key, 1).await.unwrap()) }
        })
    });
    group.finish();
}

fn file(c: &mut Criterion) {
    let FileSetup {
        rt,
        keys,
        _tmp,
        raw_dir,
        names,
        driver,
        stored,
    } = file_setup();
    let counter = AtomicU64::new(0);
    let mut group = c.benchmark_group("file");
    group.throughput(Throughput::Elements(1));

    let mut i = 0;
    group.bench_function("put/raw-write-rename", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            raw_write(
                &raw_dir,
                &names[i],
                counter.fetch_add(1, Ordering::Relaxed),
                &stored,
            )
        })
    });
    group.bench_function("put/raw-write-rename-spawn-blocking", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % KEYS;
            let (dir, name, bytes) = (raw_dir.clone(), names[i].clone(), stored.clone());
            let n = counter.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::task::spawn_blocking(move || raw_write(&dir, &name, n, &bytes))
                    .await
                    .unwrap()
            }
        })
    });
    group.bench_function("put/driver", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % KEYS;
            let key = &keys[i];
            let driver = &driver;
            async move {
                driver
                    .put(key, Bytes::copy_from_slice(VALUE), TTL)
                    .await
                    .unwrap()
            }
        })
    });

    group.finish();
    file_gets(c, &rt, &keys, &raw_dir, &names, &driver);
}

/// Reads of entries in the page cache: the bare `fs::read`, inline and on the blocking pool,
/// against the driver's `get`.
fn file_gets(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    keys: &[String],
    raw_dir: &std::path::Path,
    names: &[String],
    driver: &jtc_cache::FileDriver,
) {
    let mut group = c.benchmark_group("file");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("get/raw-read", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(fs::read(raw_dir.join(&names[i])).unwrap())
        })
    });
    group.bench_function("get/raw-read-spawn-blocking", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 1) % KEYS;
            let path = raw_dir.join(&names[i]);
            async move {
                black_box(
                    tokio::task::spawn_blocking(move || fs::read(path).unwrap())
                        .await
                        .unwrap(),
                )
            }
        })
    });
    group.bench_function("get/driver", |b| {
        b.to_async(rt).iter(|| {
            i = (i + 1) % KEYS;
            let key = &keys[i];
            async move { black_box(driver.get(key).await.unwrap()) }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = array, file
}
criterion_main!(benches);
