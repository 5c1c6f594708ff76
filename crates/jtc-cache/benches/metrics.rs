//! The cost of metrics on the hit path, in alternating rounds: `Cache::get` on the array
//! driver (where a hit is shortest, so counting weighs most), the same cache with
//! `.with_metrics(false)` and `.with_metrics(true)`, stats on in both, a Prometheus recorder
//! installed and its upkeep running as in an app.
//!
//! `cargo bench -p jtc-cache --features metrics --bench metrics` (`JTC_ROUNDS`, default 11;
//! pin it to a core with `taskset -c 1`). Every round times both sides, in alternating order,
//! and gives one ratio; the figure is the median round (target: on within 5 % of off).
//! docs/benchmarks.md records it.

mod rounds;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use jtc_cache::{ArrayDriver, Cache};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

const KEYS: usize = 1_000;
const TTL: Duration = Duration::from_secs(3600);

fn main() {
    let (rounds, scale) = rounds::rounds(11);
    let ops = 2_000_000 / scale;
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
    let absent: Vec<String> = (0..KEYS).map(|i| format!("user:{i}:absent")).collect();
    rt.block_on(async {
        for (i, key) in keys.iter().enumerate() {
            cache.put(key, &i, TTL).await.unwrap();
        }
    });
    let off = cache.clone().with_metrics(false);
    let on = cache.with_metrics(true);
    for (label, keys) in [("get hit (i64)", &keys), ("get miss", &absent)] {
        let time = |cache: &Cache| -> f64 {
            rt.block_on(async {
                let started = Instant::now();
                for i in 0..ops {
                    black_box(cache.get::<i64>(&keys[i % KEYS]).await.unwrap());
                }
                started.elapsed().as_nanos() as f64 / ops as f64
            })
        };
        time(&off);
        time(&on);
        let mut rounds: Vec<(f64, f64)> = (0..rounds)
            .map(|round| {
                if round % 2 == 0 {
                    let off = time(&off);
                    (off, time(&on))
                } else {
                    let on = time(&on);
                    (time(&off), on)
                }
            })
            .collect();
        rounds.sort_by(|a, b| (a.1 / a.0).total_cmp(&(b.1 / b.0)));
        let (low, high) = (rounds[0], rounds[rounds.len() - 1]);
        let (off, on) = rounds[rounds.len() / 2];
        println!(
            "array {label}: metrics off {off:.1} ns, on {on:.1} ns, on/off {:.3} \
             (rounds {:.3}–{:.3}, median of {})",
            on / off,
            low.1 / low.0,
            high.1 / high.0,
            rounds.len()
        );
    }
    jtc_cache::metrics::publish();
    assert!(handle.render().contains("jtc_cache_gets_total"));
}
