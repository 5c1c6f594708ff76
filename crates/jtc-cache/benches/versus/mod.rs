//! Side-by-side timing of a driver and a bare baseline in alternating rounds, shared by the
//! benchmarks that compare against another crate (database, memcached, DynamoDB).

use std::{future::Future, time::Instant};

/// Concurrent tasks of the throughput cases.
pub(crate) const TASKS: usize = 32;

/// One "operation" that runs `each` calls of `op` on each of 32 concurrent tasks.
pub(crate) fn tasks<F, Fut>(
    each: usize,
    op: F,
) -> impl Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = ()>>>
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    move |_| {
        let handles: Vec<_> = (0..TASKS)
            .map(|task| {
                let op = op.clone();
                tokio::spawn(async move {
                    for i in 0..each {
                        op(task * each + i).await;
                    }
                })
            })
            .collect();
        Box::pin(async move {
            for handle in handles {
                handle.await.unwrap();
            }
        })
    }
}

/// Alternating rounds of `ops` calls of each side; prints the median of bare / driver.
pub(crate) async fn compare<B, BF, D, DF>(
    label: &str,
    rounds: usize,
    ops: usize,
    bare: &B,
    driver: &D,
) where
    B: Fn(usize) -> BF,
    BF: Future<Output = ()>,
    D: Fn(usize) -> DF,
    DF: Future<Output = ()>,
{
    async fn time<F: Future<Output = ()>>(ops: usize, op: impl Fn(usize) -> F) -> f64 {
        let started = Instant::now();
        for i in 0..ops {
            op(i).await;
        }
        started.elapsed().as_secs_f64()
    }
    time(ops, bare).await;
    time(ops, driver).await;
    let mut ratios = Vec::new();
    let mut times = Vec::new();
    for round in 0..rounds {
        let (b, d) = if round % 2 == 0 {
            let b = time(ops, bare).await;
            (b, time(ops, driver).await)
        } else {
            let d = time(ops, driver).await;
            (time(ops, bare).await, d)
        };
        ratios.push(b / d);
        times.push((b, d));
    }
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let (b, d) = times[ratios.iter().position(|r| *r == median).unwrap()];
    println!(
        "{label}: bare {:.1} ms, driver {:.1} ms per round; bare/driver {median:.3} \
         (rounds {:.3}–{:.3}, median of {})",
        b * 1e3,
        d * 1e3,
        sorted[0],
        sorted[sorted.len() - 1],
        sorted.len()
    );
}
