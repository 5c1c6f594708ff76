//! The conformance suite on `DatabaseDriver` over SQLite (a file in a temporary folder), plus
//! what only a database can get wrong: hostile table names, several processes on one file.

mod conformance;

use std::time::Duration;

use conformance::Subject;
use jtc_cache::{Cache, CacheDriver, DatabaseConfig, DatabaseDriver, ErrorKind, ManualClock};

const MINUTE: Duration = Duration::from_secs(60);

fn url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("cache.db").display())
}

async fn subject() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::starting_now();
    let config = DatabaseConfig::new(url(dir.path())).clock(clock.clone());
    let driver = DatabaseDriver::from_config(&config).await.unwrap();
    Subject {
        cache: Cache::new(driver),
        clock: Some(clock),
        guard: Box::new(dir),
    }
}

conformance_tests!(subject);

#[tokio::test]
async fn hostile_table_names_are_refused_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for hostile in [
        "x'; DROP TABLE users; --",
        "a\"b",
        "a.b.c",
        "",
        "1x",
        "tab le",
    ] {
        let config = DatabaseConfig::new(url(dir.path())).table(hostile);
        let err = DatabaseDriver::from_config(&config).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Config { .. }),
            "{hostile:?}: {err}"
        );
        assert!(err.to_string().contains("DB_CACHE_TABLE"), "{err}");
    }
    assert!(
        !dir.path().join("cache.db").exists(),
        "refused before connecting"
    );
}

#[tokio::test]
async fn two_prefixes_share_a_table_and_flush_only_their_own_rows() {
    let dir = tempfile::tempdir().unwrap();
    let connect = |prefix: &str| {
        let config = DatabaseConfig::new(url(dir.path())).prefix(prefix);
        async move { Cache::new(DatabaseDriver::from_config(&config).await.unwrap()) }
    };
    let (a, b) = (connect("a:").await, connect("b:").await);
    a.put("k", &1, MINUTE).await.unwrap();
    b.put("k", &2, MINUTE).await.unwrap();
    assert_eq!(a.get::<i32>("k").await.unwrap(), Some(1));
    a.flush().await.unwrap();
    assert_eq!(a.get::<i32>("k").await.unwrap(), None);
    assert_eq!(b.get::<i32>("k").await.unwrap(), Some(2));
}

#[tokio::test]
async fn the_ddl_names_the_table_and_creating_it_twice_is_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let config = DatabaseConfig::new(url(dir.path())).table("main.my_cache");
    let ddl = DatabaseDriver::ddl(&config).unwrap();
    assert!(
        ddl.contains("CREATE TABLE IF NOT EXISTS \"main\".\"my_cache\""),
        "{ddl}"
    );
    for _ in 0..2 {
        let driver = DatabaseDriver::from_config(&config).await.unwrap();
        driver
            .put("k", bytes::Bytes::from_static(b"v"), None)
            .await
            .unwrap();
    }
}

const WORKER_DIR: &str = "JTC_TEST_SQLITE_WORKER_DIR";
const WORKER_MODE: &str = "JTC_TEST_SQLITE_WORKER_MODE";
const WORKER_EACH: usize = 500;

/// A competing process when run by `processes_share_one_file_exactly` (the worker variables
/// set): waits for the start signal, then counts `WORKER_EACH` times. Run as a plain test it
/// does nothing.
#[test]
fn sqlite_worker() {
    let Some(dir) = std::env::var_os(WORKER_DIR) else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    let mode = std::env::var(WORKER_MODE).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let cache = Cache::new(DatabaseDriver::connect(&url(&dir)).await.unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !dir.join("go").exists() {
            assert!(std::time::Instant::now() < deadline, "no start signal");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        for _ in 0..WORKER_EACH {
            match mode.as_str() {
                "increment" => drop(cache.increment("n", 1).await.unwrap()),
                "hit" => drop(cache.hit("hits", MINUTE).await.unwrap()),
                other => panic!("unknown worker mode {other:?}"),
            }
        }
    });
}

/// 8 processes × 500 increments (and hits) on one SQLite file: exactly 4,000 each.
#[tokio::test]
async fn processes_share_one_file_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(DatabaseDriver::connect(&url(dir.path())).await.unwrap());
    for mode in ["increment", "hit"] {
        let _ = std::fs::remove_file(dir.path().join("go"));
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..8)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args(["sqlite_worker", "--exact", "--test-threads=1", "--quiet"])
                    .env(WORKER_DIR, dir.path())
                    .env(WORKER_MODE, mode)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::fs::write(dir.path().join("go"), b"").unwrap();
        for mut child in children {
            assert!(child.wait().unwrap().success(), "a {mode} worker failed");
        }
    }
    assert_eq!(
        cache.get::<i64>("n").await.unwrap(),
        Some(8 * WORKER_EACH as i64)
    );
    assert_eq!(
        cache.hit_by("hits", MINUTE, 0).await.unwrap().count,
        8 * WORKER_EACH as i64 + 1
    );
}
