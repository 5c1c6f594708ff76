//! Property tests: each limiting algorithm, in memory and over a cache, against a plain
//! reference model, over random request timings from several clients.

mod common;

use std::{collections::HashMap, time::Duration};

use axum::{Router, routing::get};
use common::{header, request, send};
use http::StatusCode;
use jtc_cache::{ArrayDriver, Cache, ManualClock};
use jtc_throttle::{Algorithm, Limit, ThrottleLayer};
use proptest::prelude::*;

const T0: u64 = 1_700_000_000_000;
const CLIENTS: [&str; 3] = ["203.0.113.1:1", "203.0.113.2:1", "[2001:db8::1]:1"];

/// One request: after `wait_ms`, from client `client`.
#[derive(Debug, Clone)]
struct Step {
    wait_ms: u64,
    client: usize,
}

fn steps(window_ms: u64) -> impl Strategy<Value = Vec<Step>> {
    // Mostly bursts, sometimes a pause across one or two windows; most waits on a 250 ms
    // grid, so that requests land exactly on window boundaries often.
    let wait = prop_oneof![
        4 => (0..=4u64).prop_map(|n| n * 250),
        3 => 0..=window_ms / 20,
        2 => 0..=window_ms,
        1 => window_ms..=3 * window_ms,
    ];
    prop::collection::vec(
        (wait, 0..CLIENTS.len()).prop_map(|(wait_ms, client)| Step { wait_ms, client }),
        1..120,
    )
}

/// What the model says about one request.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    allowed: bool,
    remaining: u64,
    /// Seconds, on rejections only.
    retry_after: Option<u64>,
}

/// Fixed window: a client's window opens at its first request after the last one closed;
/// every request counts, allowed while the count is within the limit.
#[derive(Default)]
struct FixedModel {
    windows: HashMap<usize, (u64, u64)>, // client → (start, count)
}

impl FixedModel {
    fn hit(&mut self, client: usize, now: u64, limit: u64, window: u64) -> Verdict {
        let (start, count) = self.windows.entry(client).or_insert((now, 0));
        if now >= *start + window {
            (*start, *count) = (now, 0);
        }
        *count += 1;
        let allowed = *count <= limit;
        Verdict {
            allowed,
            remaining: limit.saturating_sub(*count),
            retry_after: (!allowed).then(|| (*start + window - now).div_ceil(1000).max(1)),
        }
    }
}

/// Sliding window: windows aligned to multiples of the window; only allowed requests count;
/// the previous window's count weighs by the share of it still inside the sliding span.
/// `Retry-After` is checked exactly: the model looks for the first millisecond that admits.
#[derive(Default)]
struct SlidingModel {
    counts: HashMap<(usize, u64), u64>, // (client, window index) → allowed requests
}

impl SlidingModel {
    fn hit(&mut self, client: usize, now: u64, limit: u64, window: u64) -> Verdict {
        let index = now / window;
        let estimate = self.estimate(client, now, window);
        let allowed = estimate < limit;
        if allowed {
            *self.counts.entry((client, index)).or_insert(0) += 1;
        }
        // Rejected: the first millisecond at which the estimate lets one in, found by looking.
        let retry_after = (!allowed).then(|| {
            let wait = (1..=2 * window)
                .find(|wait| self.estimate(client, now + wait, window) < limit)
                .expect("within two windows");
            wait.div_ceil(1000).max(1)
        });
        Verdict {
            allowed,
            remaining: if allowed { limit - estimate - 1 } else { 0 },
            retry_after,
        }
    }

    fn estimate(&self, client: usize, now: u64, window: u64) -> u64 {
        let index = now / window;
        let count = |i: u64| self.counts.get(&(client, i)).copied().unwrap_or(0);
        let previous = index.checked_sub(1).map_or(0, count);
        let left = window - now % window;
        previous * left / window + count(index)
    }
}

/// Token bucket, counted upwards: each client's bucket holds up to `burst` tokens, refills
/// one token every `window / limit` (whole microseconds), and a request takes one or is
/// rejected. Kept in microseconds of token time, so the model needs no fractions.
#[derive(Default)]
struct BucketModel {
    buckets: HashMap<usize, (u64, u64)>, // client → (token time held, as of ms)
}

impl BucketModel {
    fn hit(&mut self, client: usize, now: u64, limit: u64, window: u64, burst: u64) -> Verdict {
        let interval = window * 1_000 / limit;
        let full = interval * burst;
        let (held, at) = self.buckets.entry(client).or_insert((full, now));
        *held = (*held + (now - *at) * 1_000).min(full);
        *at = now;
        if *held >= interval {
            *held -= interval;
            return Verdict {
                allowed: true,
                remaining: *held / interval,
                retry_after: None,
            };
        }
        let wait_ms = (interval - *held).div_ceil(1_000);
        Verdict {
            allowed: false,
            remaining: 0,
            retry_after: Some(wait_ms.div_ceil(1_000).max(1)),
        }
    }
}

fn run(steps: &[Step], limit: u64, window_s: u64, algorithm: Algorithm, in_cache: bool) {
    run_with(steps, limit, window_s, algorithm, in_cache, limit);
}

fn run_with(
    steps: &[Step],
    limit: u64,
    window_s: u64,
    algorithm: Algorithm,
    in_cache: bool,
    burst: u64,
) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let clock = ManualClock::new(T0);
        let mut base = Limit::new(limit, Duration::from_secs(window_s)).algorithm(algorithm);
        if algorithm == Algorithm::TokenBucket {
            base = base.burst(burst);
        }
        let mut layer = ThrottleLayer::with_limits(base).clock(clock.clone());
        if in_cache {
            let driver = ArrayDriver::builder().clock(clock.clone()).build();
            layer = layer.with_cache(Cache::new(driver));
        }
        let app = Router::new()
            .route("/", get(|| async { "ok" }))
            .layer(layer);
        let window = window_s * 1000;
        let (mut fixed, mut sliding) = (FixedModel::default(), SlidingModel::default());
        let mut bucket = BucketModel::default();
        let mut now = T0;
        for (i, step) in steps.iter().enumerate() {
            clock.advance(Duration::from_millis(step.wait_ms));
            now += step.wait_ms;
            let expected = match algorithm {
                Algorithm::FixedWindow => fixed.hit(step.client, now, limit, window),
                Algorithm::TokenBucket => bucket.hit(step.client, now, limit, window, burst),
                _ => sliding.hit(step.client, now, limit, window),
            };
            let response = send(&app, request("/", CLIENTS[step.client], &[])).await;
            let retry_after = header(&response, "retry-after").map(|v| v.parse::<u64>().unwrap());
            let remaining: u64 = header(&response, "x-ratelimit-remaining")
                .unwrap()
                .parse()
                .unwrap();
            let actual = Verdict {
                allowed: response.status() == StatusCode::OK,
                remaining,
                retry_after,
            };
            assert_eq!(actual, expected, "step {i} at +{} ms: {step:?}", now - T0);
            if !actual.allowed {
                assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
                let retry_after = retry_after.expect("a 429 says when to retry");
                // A sliding window full at its end admits one tick after it: a little more
                // than a window, which rounds up to one more second.
                assert!(
                    (1..=window_s + 1).contains(&retry_after),
                    "Retry-After {retry_after}"
                );
            }
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fixed_window_in_memory_matches_the_model(limit in 1u64..6, steps in steps(2_000)) {
        run(&steps, limit, 2, Algorithm::FixedWindow, false);
    }

    #[test]
    fn fixed_window_in_a_cache_matches_the_model(limit in 1u64..6, steps in steps(2_000)) {
        run(&steps, limit, 2, Algorithm::FixedWindow, true);
    }

    #[test]
    fn sliding_window_in_memory_matches_the_model(limit in 1u64..6, steps in steps(2_000)) {
        run(&steps, limit, 2, Algorithm::SlidingWindow, false);
    }

    #[test]
    fn token_bucket_in_memory_matches_the_model(
        limit in 1u64..6, burst in 1u64..8, steps in steps(2_000),
    ) {
        run_with(&steps, limit, 2, Algorithm::TokenBucket, false, burst);
    }

    #[test]
    fn token_bucket_in_a_cache_matches_the_model(
        limit in 1u64..6, burst in 1u64..8, steps in steps(2_000),
    ) {
        run_with(&steps, limit, 2, Algorithm::TokenBucket, true, burst);
    }

    #[test]
    fn sliding_window_in_a_cache_matches_the_model(limit in 1u64..6, steps in steps(2_000)) {
        run(&steps, limit, 2, Algorithm::SlidingWindow, true);
    }
}
