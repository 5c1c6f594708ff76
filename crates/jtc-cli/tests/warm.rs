//! `jtc cache warm`: entries from a file and from stdin on the file, Redis and database
//! drivers; a malformed line reported with its number while the others load; the `--json`
//! report; values an app reads as `serde_json::Value` and as its own types; four processes
//! warming one file cache at once with `--once-per`, each entry written once.

mod common;

use std::{
    io::Write,
    path::Path,
    process::{Command, Output, Stdio},
};

use common::{jtc, stderr, stdout};
use jtc_test_support::{shared_server, unique_prefix};
use serde::Deserialize;

const ENTRIES: &str = r#"{"key": "config:app", "value": {"theme": "dark", "max_upload_mb": 25}, "ttl": 3600}
{"key": "user:1", "value": {"id": 1, "name": "Ana"}, "ttl": null}

{"key": "broken", "value": 
{"key": "visits", "value": 41, "ttl": 60}
{"key": "odd", "value": 1, "ttl": "soon"}
{"key": "motd", "value": "hello", "ttl": 60}
"#;

#[derive(Debug, PartialEq, Deserialize)]
struct Config {
    theme: String,
    max_upload_mb: u32,
}

#[derive(Debug, PartialEq, Deserialize)]
struct User {
    id: u64,
    name: String,
}

fn report(output: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(output).trim()).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {}{}",
            stdout(output),
            stderr(output)
        )
    })
}

/// Runs `jtc` with `input` on its standard input.
fn jtc_stdin(dir: &Path, args: &[&str], vars: &[(&str, &str)], input: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jtc"));
    command
        .current_dir(dir)
        .args(args)
        .env_remove("CACHE_DRIVER")
        .envs(vars.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("the jtc binary runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Warms `ENTRIES` from a file, checks the report, warms again from stdin (all skipped, then
/// all rewritten with --overwrite), and returns the cache as the app sees it.
fn warm_and_check(dir: &Path, vars: &[(&str, &str)]) {
    std::fs::write(dir.join("entries.jsonl"), ENTRIES).unwrap();
    let first = jtc(
        dir,
        &["cache", "warm", "--file", "entries.jsonl", "--json"],
        vars,
    );
    assert_eq!(
        first.status.code(),
        Some(1),
        "some lines failed: {}",
        stderr(&first)
    );
    let json = report(&first);
    assert_eq!(json["loaded"], 4, "{json}");
    assert_eq!(json["skipped"], 0);
    let failed = json["failed"].as_array().unwrap();
    let lines: Vec<_> = failed.iter().map(|f| f["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, [4, 6], "{json}");
    assert!(
        failed[1]["error"].as_str().unwrap().contains("ttl"),
        "{json}"
    );

    let again = jtc_stdin(dir, &["cache", "warm", "--file", "-"], vars, ENTRIES);
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("0 loaded, 4 skipped, 2 failed"),
        "{}",
        stdout(&again)
    );
    assert!(stderr(&again).contains("line 4:"), "{}", stderr(&again));
    let good: String = ENTRIES
        .lines()
        .filter(|l| !l.contains("broken") && !l.contains("soon"))
        .map(|l| format!("{l}\n"))
        .collect();
    let overwrite = jtc_stdin(
        dir,
        &["cache", "warm", "--file", "-", "--overwrite", "--json"],
        vars,
        &good,
    );
    assert!(overwrite.status.success(), "{}", stderr(&overwrite));
    let json = report(&overwrite);
    assert_eq!(
        (json["loaded"].as_u64(), json["skipped"].as_u64()),
        (Some(4), Some(0))
    );
}

async fn app_reads(cache: &jtc_cache::Cache) {
    let config: Option<Config> = cache.get("config:app").await.unwrap();
    assert_eq!(
        config,
        Some(Config {
            theme: "dark".into(),
            max_upload_mb: 25
        })
    );
    let as_json: Option<serde_json::Value> = cache.get("user:1").await.unwrap();
    assert_eq!(as_json, Some(serde_json::json!({"id": 1, "name": "Ana"})));
    let user: Option<User> = cache.get("user:1").await.unwrap();
    assert_eq!(user.map(|u| (u.id, u.name)), Some((1, "Ana".to_owned())));
    assert_eq!(
        cache.increment("visits", 1).await.unwrap(),
        42,
        "an integer is a counter"
    );
    assert_eq!(
        cache.get::<String>("motd").await.unwrap().as_deref(),
        Some("hello")
    );
    assert!(!cache.has("broken").await.unwrap());
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn warm_fills_a_file_cache_that_the_app_reads_typed_and_as_json() {
    let dir = tempfile::tempdir().unwrap();
    warm_and_check(dir.path(), &[("CACHE_DRIVER", "file")]);
    let root = dir.path().join("storage/framework/cache");
    runtime().block_on(async {
        app_reads(&jtc_cache::Cache::new(
            jtc_cache::FileDriver::new(&root).unwrap(),
        ))
        .await;
    });
}

#[test]
fn warm_fills_a_redis_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (url, prefix) = (shared_server().url(), unique_prefix("warm"));
    warm_and_check(
        dir.path(),
        &[
            ("CACHE_DRIVER", "redis"),
            ("REDIS_URL", &url),
            ("REDIS_CACHE_PREFIX", &prefix),
        ],
    );
    runtime().block_on(async {
        let driver = jtc_cache::RedisDriver::connect(&url, &prefix)
            .await
            .unwrap();
        app_reads(&jtc_cache::Cache::new(driver)).await;
    });
}

#[test]
fn warm_fills_a_database_cache() {
    let dir = tempfile::tempdir().unwrap();
    warm_and_check(
        dir.path(),
        &[
            ("CACHE_DRIVER", "database"),
            ("DB_URL", "sqlite://cache.db"),
        ],
    );
    let url = format!("sqlite://{}", dir.path().join("cache.db").display());
    runtime().block_on(async {
        let config = jtc_cache::DatabaseConfig::new(&url);
        let driver = jtc_cache::DatabaseDriver::from_config(&config)
            .await
            .unwrap();
        app_reads(&jtc_cache::Cache::new(driver)).await;
    });
}

#[test]
fn four_processes_warming_one_file_cache_with_once_per_write_each_entry_once() {
    let dir = tempfile::tempdir().unwrap();
    let entries: String = (0..500)
        .map(|i| format!("{{\"key\": \"item:{i}\", \"value\": {{\"n\": {i}}}, \"ttl\": 600}}\n"))
        .collect();
    std::fs::write(dir.path().join("big.jsonl"), entries).unwrap();
    let runs: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_jtc"))
                .current_dir(dir.path())
                .args([
                    "cache",
                    "warm",
                    "--file",
                    "big.jsonl",
                    "--once-per",
                    "60",
                    "--json",
                    "--concurrency",
                    "16",
                ])
                .env("CACHE_DRIVER", "file")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let (mut loaded, mut skipped) = (0, 0);
    for run in runs {
        let output = run.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let json = report(&output);
        loaded += json["loaded"].as_u64().unwrap();
        skipped += json["skipped"].as_u64().unwrap();
    }
    assert_eq!(
        (loaded, skipped),
        (500, 1500),
        "each entry written once in all"
    );
    // A fifth run within the period writes nothing, even with --overwrite.
    let late = jtc(
        dir.path(),
        &[
            "cache",
            "warm",
            "--file",
            "big.jsonl",
            "--once-per",
            "60",
            "--overwrite",
            "--json",
        ],
        &[("CACHE_DRIVER", "file")],
    );
    assert_eq!(report(&late)["loaded"], 0);
}

#[test]
fn a_missing_file_is_a_usage_error_and_an_unreachable_backend_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let missing = jtc(
        dir.path(),
        &["cache", "warm", "--file", "nope.jsonl"],
        &[("CACHE_DRIVER", "file")],
    );
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("nope.jsonl"),
        "{}",
        stderr(&missing)
    );
    std::fs::write(dir.path().join("e.jsonl"), ENTRIES).unwrap();
    let down = jtc(
        dir.path(),
        &["cache", "warm", "--file", "e.jsonl"],
        &[
            ("CACHE_DRIVER", "redis"),
            ("REDIS_URL", "redis://127.0.0.1:9"),
        ],
    );
    assert_eq!(down.status.code(), Some(3), "{}", stderr(&down));
}
