//! No password, token or secret query value of a connection string is ever printed: every
//! shape of URL the drivers and `stats --url` take, run through every command that can print
//! it (text and JSON), against servers that are not there (so the errors print too).

mod common;

use std::{sync::mpsc, thread};

use common::{jtc, stderr, stdout};

const SECRET: &str = "S3cr3tPassw0rd";

/// (what is set, in which variables). The servers are on port 1 of 127.0.0.1: nobody listens.
fn shapes() -> Vec<(&'static str, Vec<(&'static str, String)>)> {
    let redis = |url: String| vec![("CACHE_DRIVER", "redis".to_owned()), ("REDIS_URL", url)];
    let database = |variable: &'static str, url: String| {
        vec![("CACHE_DRIVER", "database".to_owned()), (variable, url)]
    };
    vec![
        (
            "redis password",
            redis(format!("redis://:{SECRET}@127.0.0.1:1/0")),
        ),
        (
            "redis user and password",
            redis(format!("redis://app:{SECRET}@127.0.0.1:1")),
        ),
        (
            "rediss password",
            redis(format!("rediss://app:{SECRET}@127.0.0.1:1")),
        ),
        (
            "redis unix socket ?pass=",
            redis(format!(
                "redis+unix:///nonexistent/redis.sock?pass={SECRET}"
            )),
        ),
        (
            "redis unix socket ?password=",
            redis(format!(
                "unix:///nonexistent/redis.sock?db=0&password={SECRET}"
            )),
        ),
        (
            "redis cluster nodes",
            vec![
                ("CACHE_DRIVER", "redis".to_owned()),
                (
                    "REDIS_CLUSTER_NODES",
                    format!("redis://:{SECRET}@127.0.0.1:1,redis://:{SECRET}@127.0.0.1:2"),
                ),
            ],
        ),
        (
            "postgres user and password",
            database(
                "DB_URL",
                format!("postgres://app:{SECRET}@127.0.0.1:1/cache"),
            ),
        ),
        (
            "postgres ?password=",
            database(
                "DB_URL",
                format!("postgres://127.0.0.1:1/cache?user=app&password={SECRET}"),
            ),
        ),
        (
            "postgres password with a slash",
            database(
                "DB_URL",
                format!("postgres://app:hun/{SECRET}@127.0.0.1:1/cache"),
            ),
        ),
        (
            "DATABASE_URL without a scheme",
            database("DATABASE_URL", format!("app:{SECRET}@127.0.0.1:1/cache")),
        ),
        (
            "sqlite ?password=",
            database(
                "DB_URL",
                format!("sqlite:///nonexistent/dir/cache.db?password={SECRET}"),
            ),
        ),
        (
            "memcached with credentials",
            vec![
                ("CACHE_DRIVER", "memcached".to_owned()),
                ("MEMCACHED_SERVERS", format!("app:{SECRET}@127.0.0.1:1")),
            ],
        ),
    ]
}

/// Every command that reads the configuration and may print it or fail on it.
const COMMANDS: &[&[&str]] = &[
    &["cache", "config"],
    &["cache", "config", "--json"],
    &["cache", "test"],
    &["cache", "get", "k"],
    &["cache", "get", "k", "--json"],
    &["cache", "forget", "k"],
    &["cache", "prune"],
    &["cache", "clear", "--force"],
    &["cache", "stats"],
    &["cache", "stats", "--json"],
    &["cache", "table"],
];

fn check(shape: &str, args: &[&str], vars: &[(&str, &str)]) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let output = jtc(dir.path(), args, vars);
    let (out, err) = (stdout(&output), stderr(&output));
    if out.contains(SECRET) || err.contains(SECRET) {
        return Some(format!(
            "{shape}: `jtc {}` printed the secret:\n{out}{err}",
            args.join(" ")
        ));
    }
    if err.contains("panicked") {
        return Some(format!(
            "{shape}: `jtc {}` panicked:\n{err}",
            args.join(" ")
        ));
    }
    None
}

/// One run of the binary: the shape's name, the arguments, the variables.
type Run = (String, Vec<String>, Vec<(&'static str, String)>);

#[test]
fn no_command_prints_a_secret_of_any_connection_string() {
    let owned = |args: &[&str]| args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let mut runs: Vec<Run> = Vec::new();
    for (shape, vars) in shapes() {
        for args in COMMANDS {
            runs.push((shape.to_owned(), owned(args), vars.clone()));
        }
    }
    // The stats URL of a running app, with credentials and a token, reachable and not.
    for url in [
        format!("http://admin:{SECRET}@127.0.0.1:1/_cache/stats"),
        format!("http://127.0.0.1:1/_cache/stats?token={SECRET}"),
        format!("https://admin:{SECRET}@127.0.0.1:1/_cache/stats"),
        format!("http://admin:{SECRET}@exa mple/stats"),
    ] {
        for json in [false, true] {
            let mut args = owned(&["cache", "stats", "--url", &url]);
            if json {
                args.push("--json".to_owned());
            }
            runs.push(("stats --url".to_owned(), args, Vec::new()));
        }
    }
    assert!(runs.len() > 12 * COMMANDS.len());
    // Sixteen at a time, round robin (one shape's runs are next to each other): each run is a
    // process that waits on a closed port (PostgreSQL's pool retries for its 5 s connect
    // timeout), not on the CPU.
    let (sender, receiver) = mpsc::channel();
    let mut chunks: Vec<Vec<_>> = vec![Vec::new(); 16];
    for (index, run) in runs.into_iter().enumerate() {
        chunks[index % 16].push(run);
    }
    for chunk in chunks {
        let sender = sender.clone();
        thread::spawn(move || {
            for (shape, args, vars) in chunk {
                let vars: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (*n, v.as_str())).collect();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                sender.send(check(&shape, &args, &vars)).unwrap();
            }
        });
    }
    drop(sender);
    let failures: Vec<String> = receiver.iter().flatten().collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn usage_errors_exit_2_not_3() {
    let dir = tempfile::tempdir().unwrap();
    // A key over the cache's 64 KiB limit is the caller's mistake, not the backend's.
    let long = "k".repeat(70_000);
    for args in [
        ["cache", "get", long.as_str()],
        ["cache", "forget", long.as_str()],
    ] {
        let output = jtc(dir.path(), &args, &[]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(
            stderr(&output).contains("longer than the limit"),
            "{}",
            stderr(&output)
        );
    }
    // A --url that is not a URL, or not http://.
    for url in ["http://exa mple/stats", "ftp://127.0.0.1/stats"] {
        let output = jtc(dir.path(), &["cache", "stats", "--url", url], &[]);
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    }
    // A zero memcached timeout is refused, not quietly raised to 1 ms.
    let output = jtc(
        dir.path(),
        &["cache", "config"],
        &[("CACHE_DRIVER", "memcached"), ("MEMCACHED_TIMEOUT_MS", "0")],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("MEMCACHED_TIMEOUT_MS"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unreachable_cluster_nodes_print_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let output = jtc(
        dir.path(),
        &["cache", "test"],
        &[
            ("CACHE_DRIVER", "redis"),
            ("REDIS_CLUSTER_NODES", "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3"),
        ],
    );
    assert_eq!(output.status.code(), Some(3));
    let err = stderr(&output);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("✗ error:"), "{err}");
}
