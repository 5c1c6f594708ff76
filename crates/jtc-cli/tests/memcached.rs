//! The `jtc` binary on the memcached driver, against a server the test starts.

mod common;

use common::{assert_one_line_failure, jtc, stderr, stdout};
use jtc_test_support::MemcachedServer;

#[test]
fn the_cli_tests_shows_and_clears_a_memcached_cache_without_flush_all() {
    let server = MemcachedServer::start();
    assert!(
        server
            .command("set foreign 0 0 3\r\nabc")
            .starts_with("STORED")
    );
    let dir = tempfile::tempdir().unwrap();
    let address = server.address();
    let vars = [
        ("CACHE_DRIVER", "memcached"),
        ("MEMCACHED_SERVERS", address.as_str()),
        ("MEMCACHED_PREFIX", "cli:"),
    ];
    let test = jtc(dir.path(), &["cache", "test"], &vars);
    assert!(test.status.success(), "{}", stderr(&test));
    assert!(
        stdout(&test).contains("driver: memcached"),
        "{}",
        stdout(&test)
    );
    let config = jtc(dir.path(), &["cache", "config"], &vars);
    assert!(stdout(&config).contains(&address), "{}", stdout(&config));
    let clear = jtc(dir.path(), &["cache", "clear", "--force"], &vars);
    assert!(clear.status.success(), "{}", stderr(&clear));
    assert!(
        server.command("get foreign").contains("abc"),
        "the foreign key survived"
    );
    assert_eq!(server.stat("cmd_flush"), 0, "flush_all was never sent");
}

#[test]
fn bad_memcached_settings_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let driver = ("CACHE_DRIVER", "memcached");
    let bad = [driver, ("MEMCACHED_SERVERS", "host:port")];
    assert_one_line_failure(
        &jtc(dir.path(), &["cache", "test"], &bad),
        "MEMCACHED_SERVERS",
    );
    let port = jtc_test_support::free_port().to_string();
    let down = [driver, ("MEMCACHED_SERVERS", &*format!("127.0.0.1:{port}"))];
    assert_one_line_failure(&jtc(dir.path(), &["cache", "test"], &down), &port);
}
