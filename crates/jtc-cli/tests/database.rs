//! The `jtc` binary on the database driver: SQLite in a temporary folder, PostgreSQL on a
//! server the test starts.

mod common;

use common::{assert_one_line_failure, jtc, stderr, stdout};

#[test]
fn the_cli_tests_prunes_and_prints_the_table_of_a_sqlite_cache() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("CACHE_DRIVER", "database"),
        ("DB_URL", "sqlite://cache.db"),
        ("DB_CACHE_TABLE", "app_cache"),
    ];
    let output = jtc(dir.path(), &["cache", "test"], &vars);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("driver: database"),
        "{}",
        stdout(&output)
    );
    assert!(
        dir.path().join("cache.db").is_file(),
        "a relative path, from where jtc runs"
    );
    let prune = jtc(dir.path(), &["cache", "prune"], &vars);
    assert!(prune.status.success(), "{}", stderr(&prune));
    assert!(
        stdout(&prune).contains("Pruned 0 expired entries"),
        "{}",
        stdout(&prune)
    );

    let table = jtc(dir.path(), &["cache", "table"], &vars);
    assert!(table.status.success(), "{}", stderr(&table));
    let sql = stdout(&table);
    assert!(
        sql.contains("CREATE TABLE IF NOT EXISTS \"app_cache\""),
        "{sql}"
    );
    assert!(sql.contains("CREATE INDEX IF NOT EXISTS"), "{sql}");
}

#[test]
fn bad_database_settings_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ("CACHE_DRIVER", "database");
    let missing = jtc(dir.path(), &["cache", "test"], &[driver]);
    assert_one_line_failure(&missing, "DB_URL");
    let hostile = [
        driver,
        ("DB_URL", "sqlite://c.db"),
        ("DB_CACHE_TABLE", "t; DROP TABLE x"),
    ];
    assert_one_line_failure(
        &jtc(dir.path(), &["cache", "test"], &hostile),
        "DB_CACHE_TABLE",
    );
    let other = [driver, ("DB_URL", "mysql://u:hunter2@h/db")];
    let output = jtc(dir.path(), &["cache", "test"], &other);
    assert_one_line_failure(&output, "DB_URL");
    assert!(!stderr(&output).contains("hunter2"), "{}", stderr(&output));
    let elsewhere = jtc(
        dir.path(),
        &["cache", "table"],
        &[("CACHE_DRIVER", "array")],
    );
    assert_one_line_failure(&elsewhere, "CACHE_DRIVER=database");
}

#[test]
fn the_cli_works_on_postgres_and_masks_the_password() {
    let server = jtc_test_support::PostgresServer::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://jtc:hunter2@127.0.0.1:{}/postgres",
        server.port()
    );
    let vars = [
        ("CACHE_DRIVER", "database"),
        ("DATABASE_URL", url.as_str()),
        ("DB_CACHE_UNLOGGED", "true"),
    ];
    let output = jtc(dir.path(), &["cache", "test"], &vars);
    assert!(output.status.success(), "{}", stderr(&output));
    let config = jtc(dir.path(), &["cache", "config"], &vars);
    let out = stdout(&config);
    assert!(
        out.contains("postgres://jtc:********@127.0.0.1") && !out.contains("hunter2"),
        "{out}"
    );
    let persistence =
        server.psql("SELECT relpersistence FROM pg_class WHERE relname = 'jtc_cache'");
    assert_eq!(persistence, "u", "created UNLOGGED");
}
