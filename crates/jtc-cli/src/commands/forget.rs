//! `jtc cache forget <key>`: remove one key.

use std::process::ExitCode;

use anyhow::Context;
use jtc_cache::CacheConfig;

use crate::output;

pub(crate) async fn run(config: &CacheConfig, key: &str) -> anyhow::Result<ExitCode> {
    println!("Removing cache key: {key}");
    let cache = super::open(config).await?;
    if cache
        .forget(key)
        .await
        .context("failed to remove the key")?
    {
        output::ok(format!("Cache key '{key}' removed"));
        Ok(ExitCode::SUCCESS)
    } else {
        println!("Cache key '{key}' was not set");
        Ok(ExitCode::from(output::NOT_FOUND))
    }
}
