//! `jtc cache get <key>`: print a stored value.

use std::process::ExitCode;

use anyhow::Context;
use jtc_cache::CacheConfig;

use crate::output;

/// Prints the value (pretty, or with `json` one compact line); exit 1 and nothing on stdout
/// when the key is not set.
pub(crate) async fn run(config: &CacheConfig, key: &str, json: bool) -> anyhow::Result<ExitCode> {
    let cache = super::open(config).await?;
    let value: Option<serde_json::Value> =
        cache.get(key).await.context("failed to read the key")?;
    match value {
        Some(value) if json => println!("{value}"),
        Some(value) => println!("{}", serde_json::to_string_pretty(&value)?),
        None => {
            eprintln!("Cache key '{key}' is not set");
            return Ok(ExitCode::from(output::NOT_FOUND));
        }
    }
    Ok(ExitCode::SUCCESS)
}
