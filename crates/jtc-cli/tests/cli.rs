//! The built `jtc` binary, run as a user runs it.

mod common;

use std::fs;

use common::{assert_one_line_failure, jtc, seed_entries, stderr, stdout};

#[test]
fn cache_test_passes_on_the_default_file_driver_with_no_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let output = jtc(dir.path(), &["cache", "test"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    for step in [
        "✓ Put",
        "✓ Get",
        "✓ Increment",
        "✓ Forget",
        "✓ Cache is working correctly!",
    ] {
        assert!(out.contains(step), "{out}");
    }
    assert!(out.contains("driver: file"), "{out}");
    assert!(dir.path().join("storage/framework/cache").is_dir());
}

#[test]
fn cache_test_passes_on_the_array_driver() {
    let dir = tempfile::tempdir().unwrap();
    let output = jtc(dir.path(), &["cache", "test"], &[("CACHE_DRIVER", "array")]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("driver: array"));
    assert!(
        !dir.path().join("storage").exists(),
        "the array driver writes no files"
    );
}

#[test]
fn config_shows_the_driver_and_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let output = jtc(
        dir.path(),
        &["cache", "config"],
        &[("CACHE_FILE_PATH", "var/cache")],
    );
    assert!(output.status.success());
    let out = stdout(&output);
    assert!(out.contains("Driver") && out.contains("file"), "{out}");
    assert!(
        out.contains("File Path") && out.contains("var/cache"),
        "{out}"
    );
}

#[test]
fn settings_are_read_from_a_dotenv_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join(".env"),
        "CACHE_DRIVER=file\nCACHE_FILE_PATH=from-dotenv\n",
    )
    .unwrap();
    let output = jtc(dir.path(), &["cache", "test"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(dir.path().join("from-dotenv").is_dir());
}

#[test]
fn an_unknown_driver_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["cache", "test"][..],
        &["cache", "config"],
        &["cache", "clear"],
    ] {
        let output = jtc(dir.path(), args, &[("CACHE_DRIVER", "mongodb")]);
        assert_one_line_failure(&output, "CACHE_DRIVER=\"mongodb\"");
        assert!(stderr(&output).contains("file, array"));
    }
}

#[test]
fn an_unwritable_path_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a-file"), b"").unwrap();
    for args in [
        &["cache", "test"][..],
        &["cache", "prune"],
        &["cache", "clear"],
    ] {
        let output = jtc(dir.path(), args, &[("CACHE_FILE_PATH", "a-file/cache")]);
        assert_one_line_failure(&output, "a-file/cache");
    }
}

#[test]
fn a_malformed_dotenv_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(".env"), "CACHE_DRIVER='unterminated\n").unwrap();
    let output = jtc(dir.path(), &["cache", "test"], &[]);
    assert_one_line_failure(&output, ".env");
}

#[test]
fn get_and_prune_work_on_stored_entries() {
    let dir = tempfile::tempdir().unwrap();
    seed_entries(dir.path());

    let got = jtc(dir.path(), &["cache", "get", "user:1"], &[]);
    assert!(got.status.success(), "{}", stderr(&got));
    let value: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(value, serde_json::json!({"name": "Ana", "id": 1}));
    assert_eq!(
        stdout(&jtc(dir.path(), &["cache", "get", "hits"], &[])).trim(),
        "42"
    );

    let missing = jtc(dir.path(), &["cache", "get", "nope"], &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("'nope' is not set"));

    let pruned = jtc(dir.path(), &["cache", "prune"], &[]);
    assert!(
        stdout(&pruned).contains("Pruned 1 expired entries"),
        "{}",
        stdout(&pruned)
    );
}

#[test]
fn forget_and_clear_work_on_stored_entries_and_leave_foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = seed_entries(dir.path());

    let forgot = jtc(dir.path(), &["cache", "forget", "hits"], &[]);
    assert!(
        stdout(&forgot).contains("Cache key 'hits' removed"),
        "{}",
        stdout(&forgot)
    );
    let again = jtc(dir.path(), &["cache", "forget", "hits"], &[]);
    assert!(stdout(&again).contains("Cache key 'hits' was not set"));

    fs::write(root.join("keep.txt"), b"mine").unwrap();
    let cleared = jtc(dir.path(), &["cache", "clear"], &[]);
    assert!(
        stdout(&cleared).contains("✓ Cache cleared successfully! (2 entries removed)"),
        "{}",
        stdout(&cleared)
    );
    assert_eq!(
        jtc(dir.path(), &["cache", "get", "user:1"], &[])
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        fs::read(root.join("keep.txt")).unwrap(),
        b"mine",
        "foreign files survive"
    );
}

#[test]
fn cache_test_passes_on_redis_and_config_masks_the_password() {
    let server = jtc_test_support::RedisServer::start_with(&["--requirepass", "hunter2"]);
    let dir = tempfile::tempdir().unwrap();
    let port = server.port().to_string();
    let vars = [
        ("CACHE_DRIVER", "redis"),
        ("REDIS_PORT", port.as_str()),
        ("REDIS_PASSWORD", "hunter2"),
        ("REDIS_CACHE_PREFIX", "cli:"),
    ];
    let output = jtc(dir.path(), &["cache", "test"], &vars);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("driver: redis"));
    assert!(stdout(&output).contains("✓ Cache is working correctly!"));

    let config = jtc(dir.path(), &["cache", "config"], &vars);
    let out = stdout(&config);
    for expected in ["redis", "127.0.0.1", port.as_str(), "cli:", "********"] {
        assert!(out.contains(expected), "{expected}: {out}");
    }
    assert!(!out.contains("hunter2"), "{out}");

    let url = format!("redis://:hunter2@127.0.0.1:{port}/3");
    let config = jtc(
        dir.path(),
        &["cache", "config"],
        &[("CACHE_DRIVER", "redis"), ("REDIS_URL", &url)],
    );
    assert!(!stdout(&config).contains("hunter2"), "{}", stdout(&config));
    assert!(stdout(&config).contains("Database"));
}

#[test]
fn cache_test_on_an_unreachable_redis_is_one_line_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let port = jtc_test_support::free_port().to_string();
    let started = std::time::Instant::now();
    let output = jtc(
        dir.path(),
        &["cache", "test"],
        &[
            ("CACHE_DRIVER", "redis"),
            ("REDIS_PORT", &port),
            ("REDIS_PASSWORD", "hunter2"),
        ],
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_one_line_failure(&output, "redis");
    assert!(!stderr(&output).contains("hunter2"), "{}", stderr(&output));
}

#[test]
fn a_bad_redis_setting_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let output = jtc(
        dir.path(),
        &["cache", "test"],
        &[("CACHE_DRIVER", "redis"), ("REDIS_PORT", "port")],
    );
    assert_one_line_failure(&output, "REDIS_PORT");
}

#[test]
fn cache_test_passes_over_tls_and_refuses_an_untrusted_server() {
    let (server, ca) = jtc_test_support::RedisServer::start_tls();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("rediss://localhost:{}/0", server.port());
    let ca = ca.display().to_string();
    let trusted = jtc(
        dir.path(),
        &["cache", "test"],
        &[
            ("CACHE_DRIVER", "redis"),
            ("REDIS_URL", &url),
            ("SSL_CERT_FILE", &ca),
        ],
    );
    assert!(trusted.status.success(), "{}", stderr(&trusted));
    assert!(stdout(&trusted).contains("✓ Cache is working correctly!"));
    let config = jtc(
        dir.path(),
        &["cache", "config"],
        &[("CACHE_DRIVER", "redis"), ("REDIS_URL", &url)],
    );
    assert!(
        stdout(&config).contains("TLS") && stdout(&config).contains("yes"),
        "{}",
        stdout(&config)
    );

    // Without the CA the server's certificate is not trusted: a clear one-line refusal.
    let untrusted = jtc(
        dir.path(),
        &["cache", "test"],
        &[
            ("CACHE_DRIVER", "redis"),
            ("REDIS_URL", &url),
            ("SSL_CERT_FILE", "/dev/null"),
        ],
    );
    assert_one_line_failure(&untrusted, "certificate");
}

/// Serves `body` with `status` to every request on a real TCP port, like an app's stats
/// endpoint; returns the URL.
fn serve_once_per_request(status: &'static str, body: String) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    format!("http://{address}/_cache/stats")
}

#[test]
fn stats_prints_this_process_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let output = jtc(dir.path(), &["cache", "stats"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(
        out.contains("round trip of this command on the file cache"),
        "{out}"
    );
    assert!(out.contains("pass --url"), "says what it shows: {out}");
    for row in [
        "Hits      ┆ 1",
        "Misses    ┆ 1",
        "Writes    ┆ 1",
        "Deletes   ┆ 1",
        "Errors    ┆ 0",
        "50.0%",
    ] {
        assert!(out.contains(row), "{row} in {out}");
    }
}

#[test]
fn stats_reads_a_running_apps_endpoint() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let stats = runtime.block_on(async {
        let cache = jtc_cache::Cache::new(jtc_cache::ArrayDriver::new());
        for i in 0..3 {
            cache
                .put(&format!("k{i}"), &i, std::time::Duration::from_secs(60))
                .await
                .unwrap();
        }
        for key in ["k0", "k1", "k2", "nope"] {
            cache.get::<i32>(key).await.unwrap();
        }
        cache.stats()
    });
    let url = serve_once_per_request("200 OK", serde_json::to_string(&stats).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let output = jtc(dir.path(), &["cache", "stats", "--url", &url], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let out = stdout(&output);
    assert!(out.contains(&url), "{out}");
    for row in ["Hits      ┆ 3", "Misses    ┆ 1", "Writes    ┆ 3", "75.0%"] {
        assert!(out.contains(row), "{row} in {out}");
    }
}

#[test]
fn stats_from_a_wrong_endpoint_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let not_stats = serve_once_per_request("200 OK", r#"{"users":[]}"#.to_owned());
    let output = jtc(dir.path(), &["cache", "stats", "--url", &not_stats], &[]);
    assert_one_line_failure(&output, "did not return cache stats");
    let missing = serve_once_per_request("404 Not Found", String::new());
    let output = jtc(dir.path(), &["cache", "stats", "--url", &missing], &[]);
    assert_one_line_failure(&output, "answered 404 Not Found");
    let output = jtc(
        dir.path(),
        &["cache", "stats", "--url", "http://127.0.0.1:1/"],
        &[],
    );
    assert_one_line_failure(&output, "failed to reach");
}
