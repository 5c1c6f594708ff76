//! `jtc cache get <key>`: print a stored value.

use std::process::ExitCode;

use anyhow::Context;
use jtc_cache::CacheConfig;

pub(crate) async fn run(config: &CacheConfig, key: &str) -> anyhow::Result<ExitCode> {
    let cache = super::open(config).await?;
    let value: Option<serde_json::Value> =
        cache.get(key).await.context("failed to read the key")?;
    match value {
        Some(value) => {
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("Cache key '{key}' is not set");
            Ok(ExitCode::FAILURE)
        }
    }
}
