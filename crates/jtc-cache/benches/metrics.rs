//! The cost of metrics on the hit path: `Cache::get` on the array driver (where a hit is
//! shortest, so counting weighs most) with `.with_metrics(false)` and `.with_metrics(true)`,
//! stats on in both, a Prometheus recorder installed and its upkeep running as in an app.
//!
//! `cargo bench -p jtc-cache --features metrics --bench metrics`. docs/benchmarks.md records
//! the ratios (target: on within 5 % of off).

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jtc_cache::{ArrayDriver, Cache};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

const KEYS: usize = 1_000;
const TTL: Duration = Duration::from_secs(3600);

fn hit_path(c: &mut Criterion) {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(jtc_cache::metrics::DURATION.to_owned()),
            jtc_cache::metrics::DURATION_BUCKETS,
        )
        .unwrap()
        .install_recorder()
        .unwrap();
    let upkeep = handle.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            upkeep.run_upkeep();
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cache = Cache::new(ArrayDriver::new());
    let keys: Vec<String> = (0..KEYS).map(|i| format!("user:{i}:visits")).collect();
    rt.block_on(async {
        for (i, key) in keys.iter().enumerate() {
            cache.put(key, &i, TTL).await.unwrap();
        }
    });
    let mut group = c.benchmark_group("metrics/array");
    group.throughput(Throughput::Elements(1));
    for (label, cache) in [
        ("get-hit-int/metrics-off", cache.clone().with_metrics(false)),
        ("get-hit-int/metrics-on", cache.clone().with_metrics(true)),
        ("get-miss/metrics-off", cache.clone().with_metrics(false)),
        ("get-miss/metrics-on", cache.with_metrics(true)),
    ] {
        let miss = label.starts_with("get-miss");
        let mut i = 0;
        group.bench_function(label, |b| {
            b.to_async(&rt).iter(|| {
                i = (i + 1) % KEYS;
                let (cache, key) = (&cache, &keys[i]);
                async move {
                    let key = if miss { "absent" } else { key.as_str() };
                    black_box(cache.get::<i64>(key).await.unwrap())
                }
            })
        });
    }
    group.finish();
    jtc_cache::metrics::publish();
    assert!(handle.render().contains("jtc_cache_gets_total"));
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3));
    targets = hit_path
}
criterion_main!(benches);
