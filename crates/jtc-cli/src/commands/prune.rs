//! `jtc cache prune`: sweep expired entries.

use std::process::ExitCode;

use anyhow::Context;
use jtc_cache::CacheConfig;

use crate::output::{self, Progress};

pub(crate) async fn run(config: &CacheConfig) -> anyhow::Result<ExitCode> {
    println!("Pruning expired cache entries...");
    let removed = if let Some(driver) = super::file_driver(config)? {
        let progress = Progress::new("Pruning");
        let removed = driver.prune_with_progress(progress.callback()).await;
        progress.finish();
        removed
    } else {
        super::open(config).await?.prune().await
    };
    let removed = removed.context("failed to prune the cache")?;
    output::ok(format!("Pruned {removed} expired entries"));
    Ok(ExitCode::SUCCESS)
}
