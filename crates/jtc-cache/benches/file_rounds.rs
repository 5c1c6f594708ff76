//! The file driver's put and get against their bare baselines, in alternating rounds.
//!
//! `cargo bench -p jtc-cache --bench file_rounds` (`JTC_ROUNDS`, default 15). A shared VM's
//! disk can change speed by a factor of two within minutes, and criterion measures a baseline
//! and then its driver, minutes apart, so their ratio moves with the disk. Here every round
//! times both, in alternating order, and gives one ratio; the figure is the median round.
//! docs/benchmarks.md records it.

use std::{
    fs,
    hint::black_box,
    time::{Duration, Instant},
};

use bytes::Bytes;
use jtc_cache::CacheDriver;

mod common;

use common::{FileSetup, KEYS, TTL, VALUE, file_setup, raw_write};

/// Operations per side per round.
const OPS: usize = 1_000;

fn main() {
    let rounds = rounds();
    let setup = file_setup();
    let puts = time_puts(&setup, rounds);
    let gets = time_gets(&setup, rounds);
    report("file put: write temp file + rename", &puts);
    report("file get: fs::read", &gets);
}

/// `JTC_ROUNDS` (default 15); one round when `cargo test --benches` runs this without
/// `--bench`, to keep that quick.
fn rounds() -> usize {
    let rounds = std::env::var("JTC_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    if std::env::args().any(|a| a == "--bench") {
        rounds
    } else {
        1
    }
}

/// Writes: a bare write-temp-then-rename against the driver's `put`.
fn time_puts(setup: &FileSetup, rounds: usize) -> Vec<(Duration, Duration)> {
    let FileSetup {
        rt,
        keys,
        raw_dir,
        names,
        driver,
        stored,
        ..
    } = setup;
    let mut serial = 0u64;
    let mut raw_put = || {
        let start = Instant::now();
        for i in 0..OPS {
            serial += 1;
            raw_write(raw_dir, &names[i % KEYS], serial, stored);
        }
        start.elapsed()
    };
    let driver_put = || {
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..OPS {
                let value = Bytes::copy_from_slice(VALUE);
                driver.put(&keys[i % KEYS], value, TTL).await.unwrap();
            }
            start.elapsed()
        })
    };
    alternate(rounds, &mut raw_put, driver_put)
}

/// Reads: a bare `fs::read` against the driver's `get`.
fn time_gets(setup: &FileSetup, rounds: usize) -> Vec<(Duration, Duration)> {
    let FileSetup {
        rt,
        keys,
        raw_dir,
        names,
        driver,
        ..
    } = setup;
    let raw_get = || {
        let start = Instant::now();
        for i in 0..OPS {
            black_box(fs::read(raw_dir.join(&names[i % KEYS])).unwrap());
        }
        start.elapsed()
    };
    let driver_get = || {
        rt.block_on(async {
            let start = Instant::now();
            for i in 0..OPS {
                black_box(driver.get(&keys[i % KEYS]).await.unwrap());
            }
            start.elapsed()
        })
    };
    alternate(rounds, raw_get, driver_get)
}

/// Per round: (baseline, driver) times per operation, the side that goes first alternating.
fn alternate(
    rounds: usize,
    mut baseline: impl FnMut() -> Duration,
    mut driver: impl FnMut() -> Duration,
) -> Vec<(Duration, Duration)> {
    // One unmeasured round of each warms the page cache and the allocator.
    baseline();
    driver();
    (0..rounds)
        .map(|round| {
            let (b, d) = if round % 2 == 0 {
                let b = baseline();
                (b, driver())
            } else {
                let d = driver();
                (baseline(), d)
            };
            (b / OPS as u32, d / OPS as u32)
        })
        .collect()
}

fn report(what: &str, rounds: &[(Duration, Duration)]) {
    let mut ratios: Vec<f64> = rounds
        .iter()
        .map(|(b, d)| b.as_secs_f64() / d.as_secs_f64())
        .collect();
    println!("{what} — baseline ÷ driver per round (above 1.0: the driver is faster)");
    for (i, ((b, d), r)) in rounds.iter().zip(&ratios).enumerate() {
        println!("  round {i:>2}: baseline {b:>10.2?}  driver {d:>10.2?}  ratio {r:.3}");
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let (low, high) = (ratios[0], ratios[ratios.len() - 1]);
    println!(
        "  median {median:.3} over {} rounds (range {low:.3}–{high:.3})\n",
        ratios.len()
    );
}
