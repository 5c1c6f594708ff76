//! `jtc cache test`: a put, get, increment and forget round trip (and a large value's, when
//! `CACHE_LARGE_VALUES_URL` sends large values to an object store).

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, ensure};
use jtc_cache::CacheConfig;

use crate::output;

const KEY: &str = "jtc:cache-test";
const COUNTER: &str = "jtc:cache-test:counter";
const LARGE: &str = "jtc:cache-test:large";

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

    if config.large_values_url.is_some() {
        // Just above the threshold once encoded, and incompressible: it goes to the store.
        let len = config.large_value_threshold / 8 + 16;
        let large: Vec<u64> = (1..=len as u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        cache
            .put(LARGE, &large, ttl)
            .await
            .context("large value put failed")?;
        let read: Option<Vec<u64>> = cache.get(LARGE).await.context("large value get failed")?;
        ensure!(
            read.as_ref() == Some(&large),
            "the large value read back differs"
        );
        ensure!(
            cache.forget(LARGE).await.context("forget failed")?,
            "forget found no large value"
        );
        output::ok("Large value: Stored in and read back from the object store");
    }

    output::ok("Cache is working correctly!");
    Ok(ExitCode::SUCCESS)
}
