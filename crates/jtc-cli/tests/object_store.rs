//! The `jtc` binary on the object-store driver (`CACHE_DRIVER=s3`), against moto's S3 started by
//! the test, configured as a deployment is: `CACHE_OBJECT_STORE_URL` and the `AWS_*` variables.

mod common;

use common::{assert_one_line_failure, jtc, stderr, stdout};
use jtc_test_support::MotoServer;

const SECRET: &str = "wJalrXUtnFEMIK7MDENGbPxRfiCYS3SECRET";

/// `cache` plus the `AWS_*` variables of a deployment whose S3 is at `endpoint`.
fn aws<'a, const N: usize>(
    endpoint: &'a str,
    cache: [(&'a str, &'a str); N],
) -> Vec<(&'a str, &'a str)> {
    let mut vars = cache.to_vec();
    vars.extend([
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_ALLOW_HTTP", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDCLI"),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ]);
    vars
}

#[test]
fn the_cli_tests_shows_prunes_and_clears_an_s3_cache() {
    let server = MotoServer::start();
    server.create_bucket("cli-bucket");
    let dir = tempfile::tempdir().unwrap();
    let endpoint = server.endpoint();
    let vars = aws(
        &endpoint,
        [
            ("CACHE_DRIVER", "s3"),
            ("CACHE_OBJECT_STORE_URL", "s3://cli-bucket/cache"),
        ],
    );
    let test = jtc(dir.path(), &["cache", "test"], &vars);
    assert!(test.status.success(), "{}", stderr(&test));
    assert!(stdout(&test).contains("driver: s3"), "{}", stdout(&test));
    let shown = jtc(dir.path(), &["cache", "config"], &vars);
    assert!(
        stdout(&shown).contains("s3://cli-bucket/cache"),
        "{}",
        stdout(&shown)
    );
    let prune = jtc(dir.path(), &["cache", "prune"], &vars);
    assert!(prune.status.success(), "{}", stderr(&prune));
    let clear = jtc(dir.path(), &["cache", "clear", "--force"], &vars);
    assert!(clear.status.success(), "{}", stderr(&clear));
    for output in [&test, &shown, &prune, &clear] {
        let all = format!("{}{}", stdout(output), stderr(output));
        assert!(!all.contains(SECRET), "a secret was printed: {all}");
    }
}

#[test]
fn large_values_of_a_file_cache_go_to_s3_and_the_cli_tests_shows_prunes_and_clears_them() {
    let server = MotoServer::start();
    server.create_bucket("cli-large");
    let dir = tempfile::tempdir().unwrap();
    let endpoint = server.endpoint();
    let vars = aws(
        &endpoint,
        [
            ("CACHE_DRIVER", "file"),
            ("CACHE_LARGE_VALUES_URL", "s3://cli-large/big"),
            ("CACHE_LARGE_VALUE_THRESHOLD", "2000"),
        ],
    );
    let test = jtc(dir.path(), &["cache", "test"], &vars);
    assert!(test.status.success(), "{}", stderr(&test));
    assert!(
        stdout(&test).contains("Large value: Stored in and read back from the object store"),
        "{}",
        stdout(&test)
    );
    let shown = jtc(dir.path(), &["cache", "config"], &vars);
    assert!(
        stdout(&shown).contains("s3://cli-large/big above 2000 bytes"),
        "{}",
        stdout(&shown)
    );
    let prune = jtc(dir.path(), &["cache", "prune"], &vars);
    assert!(prune.status.success(), "{}", stderr(&prune));
    let clear = jtc(dir.path(), &["cache", "clear", "--force"], &vars);
    assert!(clear.status.success(), "{}", stderr(&clear));
    // The store unreachable: the large step fails as a backend error (exit 3), in one line.
    let down = aws("http://127.0.0.1:9", [vars[0], vars[1], vars[2]]);
    let failed = jtc(dir.path(), &["cache", "test"], &down);
    assert_eq!(failed.status.code(), Some(3), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains("large value put failed"),
        "{}",
        stderr(&failed)
    );
    for output in [&test, &shown, &prune, &clear, &failed] {
        let all = format!("{}{}", stdout(output), stderr(output));
        assert!(!all.contains(SECRET), "a secret was printed: {all}");
    }
}

#[test]
fn a_missing_or_unknown_store_url_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ("CACHE_DRIVER", "s3");
    assert_one_line_failure(
        &jtc(dir.path(), &["cache", "test"], &[driver]),
        "CACHE_OBJECT_STORE_URL",
    );
    assert_one_line_failure(
        &jtc(
            dir.path(),
            &["cache", "test"],
            &[driver, ("CACHE_OBJECT_STORE_URL", "ftp://host/cache")],
        ),
        "CACHE_OBJECT_STORE_URL",
    );
}
