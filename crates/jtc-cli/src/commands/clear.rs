//! `jtc cache clear`: flush this cache's entries.

use std::process::ExitCode;

use anyhow::Context;
use jtc_cache::CacheConfig;

use crate::output::{self, Progress};

pub(crate) async fn run(config: &CacheConfig) -> anyhow::Result<ExitCode> {
    println!("Clearing cache...");
    if let Some(driver) = super::file_driver(config)? {
        let progress = Progress::new("Clearing");
        let removed = driver.flush_with_progress(progress.callback()).await;
        progress.finish();
        let removed = removed.context("failed to clear the cache")?;
        output::ok(format!(
            "Cache cleared successfully! ({removed} entries removed)"
        ));
    } else {
        let cache = super::open(config).await?;
        cache.flush().await.context("failed to clear the cache")?;
        output::ok("Cache cleared successfully!");
    }
    Ok(ExitCode::SUCCESS)
}
