//! `jtc cache stats`: hits, misses, writes, deletes and errors, as a table.
//!
//! With `--url`, the counters of a running app, read from an endpoint that returns
//! `Cache::stats()` as JSON. Without it, this process's own counters after a short round trip
//! on the configured cache (a write, a hit, a miss, a delete): a live check that the driver
//! works and counts.

use std::{process::ExitCode, time::Duration};

use anyhow::{Context, ensure};
use bytes::Bytes;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use jtc_cache::{CacheConfig, CacheStats};

const KEY: &str = "jtc:cache-stats";
const TIMEOUT: Duration = Duration::from_secs(5);
/// Stats are a few numbers; anything much larger is not a stats endpoint.
const MAX_BODY: usize = 64 * 1024;

pub(crate) async fn run(
    config: &CacheConfig,
    url: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (source, stats) = match url {
        Some(url) => (jtc_cache::mask_url(url), fetch(url).await?),
        None => (
            format!("round trip of this command on the {} cache", config.driver),
            round_trip(config).await?,
        ),
    };
    if json {
        let mut object = serde_json::to_value(stats)?;
        object["source"] = source.into();
        object["hit_ratio"] = stats.hit_ratio().into();
        println!("{object}");
        return Ok(ExitCode::SUCCESS);
    }
    if url.is_none() {
        println!(
            "These are the counters of a round trip this command just made (put, get, forget, \
             get): a live check that the {} cache works and counts. An app's own counters live \
             in the app's process: pass --url with its stats endpoint to see them.",
            config.driver
        );
    }
    print(&source, &stats);
    Ok(ExitCode::SUCCESS)
}

async fn round_trip(config: &CacheConfig) -> anyhow::Result<CacheStats> {
    let cache = super::open(config).await?;
    cache
        .put(KEY, &"counted", Duration::from_secs(60))
        .await
        .context("put failed")?;
    let hit: Option<String> = cache.get(KEY).await.context("get failed")?;
    ensure!(hit.is_some(), "the value just stored was not found");
    cache.forget(KEY).await.context("forget failed")?;
    let miss: Option<String> = cache.get(KEY).await.context("get failed")?;
    ensure!(miss.is_none(), "the value survived forget");
    Ok(cache.stats())
}

async fn fetch(given: &str) -> anyhow::Result<CacheStats> {
    // Every message names the URL with its secrets masked (`http://user:********@...`).
    let url = jtc_cache::mask_url(given);
    let uri: http::Uri = given.parse().map_err(|_| {
        crate::output::Usage(format!(
            "--url {url:?} is not a URL (expected http://host:port/path)"
        ))
    })?;
    if uri.scheme_str() != Some("http") {
        return Err(crate::output::Usage(format!(
            "--url {url:?}: only http:// URLs are supported (put a local port in front of TLS)"
        ))
        .into());
    }
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = tokio::time::timeout(TIMEOUT, client.get(uri))
        .await
        .with_context(|| format!("{url} did not answer within {TIMEOUT:?}"))?
        .with_context(|| format!("failed to reach {url}"))?;
    let status = response.status();
    ensure!(status.is_success(), "{url} answered {status}");
    let body = tokio::time::timeout(
        TIMEOUT,
        Limited::new(response.into_body(), MAX_BODY).collect(),
    )
    .await
    .with_context(|| format!("{url} did not send its body within {TIMEOUT:?}"))?
    .map_err(|e| anyhow::anyhow!("failed to read the answer of {url}: {e}"))?
    .to_bytes();
    serde_json::from_slice(&body).with_context(|| {
        format!("{url} did not return cache stats (expected JSON with hits, misses, writes, deletes, errors)")
    })
}

fn print(source: &str, stats: &CacheStats) {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["Counter", "Value"]);
    for (name, value) in [
        ("Hits", stats.hits),
        ("Misses", stats.misses),
        ("Writes", stats.writes),
        ("Deletes", stats.deletes),
        ("Errors", stats.errors),
    ] {
        table.add_row([name.to_owned(), value.to_string()]);
    }
    let ratio = stats.hit_ratio().map_or_else(
        || "n/a (no reads yet)".to_owned(),
        |r| format!("{:.1}%", r * 100.0),
    );
    table.add_row(["Hit ratio".to_owned(), ratio]);
    println!("Cache Stats ({source})");
    println!("{table}");
}
