//! The cost of the cache's extra features, each against the same operation without it in the
//! same run: counting stats on the hit path, LZ4 compression of a realistic value, tags.
//!
//! `cargo bench -p jtc-cache --bench features`. docs/benchmarks.md records the ratios.

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jtc_cache::{ArrayDriver, Cache, FileDriver};
use serde::{Deserialize, Serialize};

const KEYS: usize = 1_000;
const TTL: Duration = Duration::from_secs(3600);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("user:{i}:profile")).collect()
}

/// The hit path of `Cache::get` with the stats counters on and off, over the driver where the
/// counting is the largest share of the work (memory) and over the default driver (files).
fn stats(c: &mut Criterion) {
    let rt = runtime();
    let keys = keys();
    let dir = tempfile::tempdir().unwrap();
    let subjects = [
        ("array", Cache::new(ArrayDriver::new())),
        ("file", Cache::new(FileDriver::new(dir.path()).unwrap())),
    ];
    for (name, cache) in subjects {
        rt.block_on(async {
            for (i, key) in keys.iter().enumerate() {
                cache.put(key, &profile(1), TTL).await.unwrap();
                cache.put(&format!("{key}:n"), &i, TTL).await.unwrap();
            }
        });
        let counters: Vec<String> = keys.iter().map(|key| format!("{key}:n")).collect();
        let mut group = c.benchmark_group(format!("stats/{name}"));
        group.throughput(Throughput::Elements(1));
        for (label, cache) in [
            ("get-hit/stats-off", cache.clone().with_stats(false)),
            ("get-hit/stats-on", cache.clone().with_stats(true)),
        ] {
            let mut i = 0;
            group.bench_function(label, |b| {
                b.to_async(&rt).iter(|| {
                    i = (i + 1) % KEYS;
                    let (cache, key) = (&cache, &keys[i]);
                    async move { black_box(cache.get::<Profile>(key).await.unwrap()) }
                })
            });
            // The smallest hit: a counter, where decoding costs least and counting most.
            group.bench_function(label.replace("get-hit", "get-hit-int"), |b| {
                b.to_async(&rt).iter(|| {
                    i = (i + 1) % KEYS;
                    let (cache, key) = (&cache, &counters[i]);
                    async move { black_box(cache.get::<i64>(key).await.unwrap()) }
                })
            });
        }
        group.finish();
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Profile {
    id: u64,
    name: String,
    email: String,
    roles: Vec<String>,
    bio: String,
    active: bool,
}

fn profile(id: u64) -> Profile {
    Profile {
        id,
        name: format!("User Number {id}"),
        email: format!("user{id}@example.com"),
        roles: vec!["reader".into(), "commenter".into()],
        bio: format!(
            "Writes about Rust, caching and HTTP. Member since {}.",
            2000 + id % 25
        ),
        active: !id.is_multiple_of(3),
    }
}

/// A page of an API response: 100 profiles, about 17 kB as MessagePack — the kind of value
/// apps cache.
fn page() -> Vec<Profile> {
    (0..100).map(profile).collect()
}

/// Put and get of a realistic page with and without compression, over memory (codec cost
/// only) and files (codec plus the I/O it saves). Prints the stored sizes.
fn compression(c: &mut Criterion) {
    let rt = runtime();
    let value = page();
    let dir = tempfile::tempdir().unwrap();
    let drivers = [
        ("array", Cache::new(ArrayDriver::new())),
        ("file", Cache::new(FileDriver::new(dir.path()).unwrap())),
    ];
    for (name, cache) in drivers {
        let mut group = c.benchmark_group(format!("compression/{name}"));
        group.throughput(Throughput::Elements(1));
        for (label, cache) in [
            ("plain", cache.clone().without_compression()),
            ("lz4", cache.clone()),
        ] {
            let key = format!("page:{label}");
            rt.block_on(cache.put(&key, &value, TTL)).unwrap();
            let stored = rt.block_on(cache.driver().get(&key)).unwrap().unwrap();
            println!("compression/{name}/{label}: {} bytes stored", stored.len());
            group.bench_function(format!("put/{label}"), |b| {
                b.to_async(&rt)
                    .iter(|| async { cache.put(&key, &value, TTL).await.unwrap() })
            });
            group.bench_function(format!("get/{label}"), |b| {
                b.to_async(&rt)
                    .iter(|| async { black_box(cache.get::<Vec<Profile>>(&key).await.unwrap()) })
            });
        }
        group.finish();
    }
}

/// A tagged read costs one more backend read (the tags' versions) than a plain one.
fn tags(c: &mut Criterion) {
    let rt = runtime();
    let cache = Cache::new(ArrayDriver::new());
    let tagged = cache.tags(&["users", "profiles"]);
    rt.block_on(async {
        cache.put("k", &profile(1), TTL).await.unwrap();
        tagged.put("k", &profile(1), TTL).await.unwrap();
    });
    let mut group = c.benchmark_group("tags/array");
    group.throughput(Throughput::Elements(1));
    group.bench_function("get/plain", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(cache.get::<Profile>("k").await.unwrap()) })
    });
    group.bench_function("get/two-tags", |b| {
        b.to_async(&rt)
            .iter(|| async { black_box(tagged.get::<Profile>("k").await.unwrap()) })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = stats, compression, tags
}
criterion_main!(benches);
