//! `jtc cache clear`: flush this cache's entries, or those of some tags.

use std::{
    io::{BufRead, IsTerminal, Write},
    process::ExitCode,
};

use anyhow::Context;
use jtc_cache::{CacheConfig, DriverKind};

use crate::output::{self, Progress};

pub(crate) async fn run(
    config: &CacheConfig,
    tags: &[String],
    force: bool,
) -> anyhow::Result<ExitCode> {
    if config.driver == DriverKind::Array {
        println!(
            "The array driver keeps entries in each process's own memory: this new process has \
             nothing to clear. Restart the app, or call Cache::flush inside it."
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !force && !confirmed(config, tags)? {
        println!("Nothing was cleared.");
        return Ok(ExitCode::from(output::NOT_FOUND));
    }
    if !tags.is_empty() {
        let cache = super::open(config).await?;
        cache
            .tags(tags)
            .flush()
            .await
            .context("failed to flush the tags")?;
        output::ok(format!("Tags flushed: {}", tags.join(", ")));
        return Ok(ExitCode::SUCCESS);
    }
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

/// Asks on a terminal whether to go on; a script (stdin not a terminal) is never asked.
fn confirmed(config: &CacheConfig, tags: &[String]) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(true);
    }
    let what = if tags.is_empty() {
        format!("every entry of the {} cache", config.driver)
    } else {
        format!("the entries tagged {}", tags.join(", "))
    };
    print!("Remove {what}? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes" | "YES"))
}
