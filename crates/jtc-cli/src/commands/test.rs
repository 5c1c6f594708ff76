//! `jtc cache test`: a put, get, increment and forget round trip.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, ensure};
use jtc_cache::CacheConfig;

use crate::output;

const KEY: &str = "jtc:cache-test";
const COUNTER: &str = "jtc:cache-test:counter";

pub(crate) async fn run(config: &CacheConfig) -> anyhow::Result<ExitCode> {
    println!("Testing cache operations (driver: {})...", config.driver);
    let cache = super::open(config).await?;
    let value = format!("checked by jtc {}", std::process::id());
    let ttl = Duration::from_secs(60);

    cache.put(KEY, &value, ttl).await.context("put failed")?;
    output::ok("Put: Stored test value");

    let read: Option<String> = cache.get(KEY).await.context("get failed")?;
    ensure!(
        read.as_deref() == Some(value.as_str()),
        "get returned {read:?}, expected {value:?}"
    );
    output::ok("Get: Retrieved test value");

    cache.forget(COUNTER).await.context("forget failed")?;
    let one = cache
        .increment(COUNTER, 1)
        .await
        .context("increment failed")?;
    let three = cache
        .increment(COUNTER, 2)
        .await
        .context("increment failed")?;
    ensure!(
        (one, three) == (1, 3),
        "increment counted {one}, {three}; expected 1, 3"
    );
    cache.forget(COUNTER).await.context("forget failed")?;
    output::ok("Increment: Counter works");

    ensure!(
        cache.forget(KEY).await.context("forget failed")?,
        "forget found no test value"
    );
    ensure!(
        !cache.has(KEY).await.context("get failed")?,
        "the test value survived forget"
    );
    output::ok("Forget: Removed test value");

    output::ok("Cache is working correctly!");
    Ok(ExitCode::SUCCESS)
}
