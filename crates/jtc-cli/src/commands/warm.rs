//! `jtc cache warm --file entries.jsonl`: fill the cache from a file of JSON lines.

use std::{
    convert::Infallible,
    io::{BufRead, BufReader, Read},
    process::ExitCode,
    sync::Mutex,
    time::Duration,
};

use anyhow::Context;
use jtc_cache::{CacheConfig, MAX_KEY_BYTES, warm::Warmer};
use serde::Deserialize;

use crate::output::{self, Progress, Usage};

pub(crate) struct Options {
    pub(crate) concurrency: usize,
    pub(crate) overwrite: bool,
    pub(crate) once_per: Option<Duration>,
    pub(crate) json: bool,
}

/// One line of the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    key: String,
    value: serde_json::Value,
    /// Seconds, or `null` for no expiry. Required: a forgotten TTL must not mean "forever".
    ttl: serde_json::Value,
}

impl Line {
    fn ttl(&self) -> Result<Option<Duration>, String> {
        match &self.ttl {
            serde_json::Value::Null => Ok(None),
            seconds => seconds
                .as_u64()
                .map(|s| Some(Duration::from_secs(s)))
                .ok_or_else(|| format!("ttl is {seconds}; expected whole seconds or null")),
        }
    }
}

/// A line that could not be used, and why.
struct Bad {
    line: usize,
    error: String,
}

pub(crate) async fn run(
    config: &CacheConfig,
    file: &str,
    options: &Options,
) -> anyhow::Result<ExitCode> {
    let input: Box<dyn Read> = if file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(
            std::fs::File::open(file)
                .map_err(|e| Usage(format!("cannot read the entries file {file}: {e}")))?,
        )
    };
    let (entries, mut bad) = parse(BufReader::new(input))?;
    let cache = super::open(config).await?;
    if !options.json {
        println!(
            "Warming {} entries (driver: {})...",
            entries.len(),
            config.driver
        );
    }
    let mut warmer = Warmer::new(&cache)
        .concurrency(options.concurrency)
        .overwrite(options.overwrite);
    if let Some(period) = options.once_per {
        warmer = warmer.once_per(period);
    }
    let mut lines = std::collections::HashMap::with_capacity(entries.len());
    for (number, entry, ttl) in entries {
        lines.entry(entry.key.clone()).or_insert(number);
        let value = entry.value;
        warmer = warmer.entry(entry.key, ttl, move || {
            let value = value.clone();
            async move { Ok::<_, Infallible>(value) }
        });
    }
    let progress = Progress::of("Warming", "entries");
    let report = {
        let callback = Mutex::new(progress.callback());
        warmer
            .on_progress(move |p| {
                if let Ok(mut callback) = callback.lock() {
                    callback(p.done, p.total);
                }
            })
            .run()
            .await
    };
    progress.finish();
    let backend = report.failed.iter().any(|(_, e)| e.is_backend());
    for (key, error) in &report.failed {
        let line = lines.get(key).copied().unwrap_or(0);
        bad.push(Bad {
            line,
            error: format!("{key}: {}", chain(error)),
        });
    }
    bad.sort_by_key(|b| b.line);
    if options.json {
        let failed: Vec<_> = bad
            .iter()
            .map(|b| serde_json::json!({ "line": b.line, "error": b.error }))
            .collect();
        let out = serde_json::json!({
            "loaded": report.loaded,
            "skipped": report.skipped,
            "failed": failed,
            "took_ms": u64::try_from(report.took.as_millis()).unwrap_or(u64::MAX),
        });
        println!("{out}");
    } else {
        for b in &bad {
            eprintln!("✗ line {}: {}", b.line, b.error.replace(['\n', '\r'], " "));
        }
        output::ok(format!(
            "Warmed: {} loaded, {} skipped, {} failed in {:.1} s",
            report.loaded,
            report.skipped,
            bad.len(),
            report.took.as_secs_f64()
        ));
    }
    Ok(ExitCode::from(match (bad.is_empty(), backend) {
        (true, _) => 0,
        (false, false) => output::NOT_FOUND,
        (false, true) => 3,
    }))
}

/// The usable entries, each with its line number and TTL.
type Numbered = Vec<(usize, Line, Option<Duration>)>;

/// The usable entries with their line numbers, and the lines that are not.
fn parse(input: impl BufRead) -> anyhow::Result<(Numbered, Vec<Bad>)> {
    let (mut entries, mut bad) = (Vec::new(), Vec::new());
    for (index, text) in input.lines().enumerate() {
        let line = index + 1;
        let text = text.with_context(|| format!("failed to read line {line}"))?;
        if text.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Line>(&text) {
            Ok(entry) if entry.key.len() > MAX_KEY_BYTES => bad.push(Bad {
                line,
                error: format!("the key is longer than {MAX_KEY_BYTES} bytes"),
            }),
            Ok(entry) => match entry.ttl() {
                Ok(ttl) => entries.push((line, entry, ttl)),
                Err(error) => bad.push(Bad { line, error }),
            },
            Err(error) => bad.push(Bad {
                line,
                error: format!(
                    "not an entry ({error}); expected {{\"key\": ..., \"value\": ..., \"ttl\": seconds or null}}"
                ),
            }),
        }
    }
    Ok((entries, bad))
}

/// An error and its causes on one line.
fn chain(error: &jtc_cache::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
