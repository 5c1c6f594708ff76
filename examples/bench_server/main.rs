//! A hello-world server for the HTTP load benchmark (`scripts/bench-http`), in one of four
//! modes: `plain` (no limiter), `governor` (tower_governor with its headers on), `memory`
//! (`ThrottleLayer` in process memory) or `redis` (`ThrottleLayer` over `REDIS_URL`).
//!
//! `cargo run --release --example bench_server -- MODE 127.0.0.1:8080`
//!
//! Every limiter gets the same quota, 8,000,000 requests a minute per client: far above
//! what one run sends, so each limiter does its full work on every request and none rejects,
//! with header values of a realistic width.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use axum::{Router, routing::get};
use jtc_cache::{Cache, RedisDriver};
use jtc_throttle::ThrottleLayer;

/// Requests per minute per client for every limiter.
const QUOTA: u64 = 8_000_000;

fn main() -> anyhow::Result<()> {
    // The runtime is the same in every mode: two workers, as many as the benchmark machine
    // has cores (wrk and, in redis mode, redis-server share them).
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "plain".to_owned());
    let address = args.next().unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(&mode, &address))
}

async fn serve(mode: &str, address: &str) -> anyhow::Result<()> {
    let app = Router::new().route("/", get(|| async { "Hello, World!" }));
    let app = match mode {
        "plain" => app,
        "governor" => {
            let config = tower_governor::governor::GovernorConfigBuilder::default()
                .per_nanosecond(600)
                .burst_size(QUOTA as u32)
                .use_headers()
                .finish()
                .context("governor config")?;
            app.layer(tower_governor::GovernorLayer::new(config))
        }
        "memory" => app.layer(ThrottleLayer::new(QUOTA, 60)),
        "redis" => {
            let url = std::env::var("REDIS_URL").context("REDIS_URL is needed in redis mode")?;
            let cache = Cache::new(RedisDriver::connect(&url, "bench:").await?);
            app.layer(ThrottleLayer::new(QUOTA, 60).with_cache(cache))
        }
        other => bail!("unknown mode {other:?}; expected plain, governor, memory or redis"),
    };
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("listening on http://{} ({mode})", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
