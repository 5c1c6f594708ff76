//! Running the built `jtc` binary, and entries an app wrote, for the CLI's tests.

#![allow(
    dead_code,
    reason = "each test binary uses its own part of these helpers"
)]

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// Runs `jtc` in `dir` with a clean cache environment plus `vars`.
pub(crate) fn jtc(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jtc"));
    command.current_dir(dir).args(args);
    for name in [
        "CACHE_DRIVER",
        "CACHE_FILE_PATH",
        "REDIS_URL",
        "REDIS_PASSWORD",
    ] {
        command.env_remove(name);
    }
    command.envs(vars.iter().copied());
    command.output().expect("the jtc binary runs")
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// An error is one line on stderr, no panic, no backtrace, and a non-zero exit.
pub(crate) fn assert_one_line_failure(output: &Output, expected: &str) {
    let err = stderr(output);
    assert!(!output.status.success(), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(expected), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

/// Entries an application wrote into the default folder under `dir`: a JSON value, a
/// counter, and an entry that has just expired. Returns the cache folder.
pub(crate) fn seed_entries(dir: &Path) -> PathBuf {
    let root = dir.join("storage/framework/cache");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let cache = jtc_cache::Cache::new(jtc_cache::FileDriver::new(&root).unwrap());
        let user = serde_json::json!({"name": "Ana", "id": 1});
        let minute = std::time::Duration::from_secs(60);
        cache.put("user:1", &user, minute).await.unwrap();
        cache.increment("hits", 42).await.unwrap();
        let instant = std::time::Duration::from_millis(1);
        cache.put("short", &1, instant).await.unwrap();
    });
    std::thread::sleep(std::time::Duration::from_millis(5));
    root
}
