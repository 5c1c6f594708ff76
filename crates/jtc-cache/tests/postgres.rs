//! The conformance suite on `DatabaseDriver` over PostgreSQL: a server the tests start
//! (`initdb` + `postgres` on a free port), each case on a table of its own; plus what only a
//! shared database server can get wrong.

mod conformance;

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use conformance::Subject;
use jtc_cache::{Cache, DatabaseConfig, DatabaseDriver, ErrorKind, ManualClock};
use jtc_test_support::{PostgresServer, shared_postgres};

const MINUTE: Duration = Duration::from_secs(60);

/// A table no other case uses.
fn fresh_table() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("case_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn subject() -> Subject {
    let clock = ManualClock::starting_now();
    let config = DatabaseConfig::new(shared_postgres().url())
        .table(fresh_table())
        .max_connections(4)
        .clock(clock.clone());
    let driver = DatabaseDriver::from_config(&config).await.unwrap();
    Subject {
        cache: Cache::new(driver),
        clock: Some(clock),
        guard: Box::new(()),
    }
}

conformance_tests!(subject);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_hits_count_exactly_across_two_instances() {
    let config = DatabaseConfig::new(shared_postgres().url()).table(fresh_table());
    let first = Cache::new(DatabaseDriver::from_config(&config).await.unwrap());
    let second = Cache::new(DatabaseDriver::from_config(&config).await.unwrap());
    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let cache = if i % 2 == 0 {
                first.clone()
            } else {
                second.clone()
            };
            tokio::spawn(async move { cache.hit("shared", MINUTE).await.unwrap().count })
        })
        .collect();
    let mut counts = Vec::new();
    for task in tasks {
        counts.push(task.await.unwrap());
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=1_000).collect::<Vec<i64>>());
}

#[tokio::test]
async fn hostile_table_names_never_reach_the_server_and_keys_are_only_parameters() {
    let url = shared_postgres().url();
    for hostile in ["x'; DROP TABLE pg_class; --", "a\"b", "a.b.c", "", "x y"] {
        let err = DatabaseDriver::from_config(&DatabaseConfig::new(&url).table(hostile))
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Config { .. }),
            "{hostile:?}: {err}"
        );
    }
    let table = fresh_table();
    let config = DatabaseConfig::new(&url).table(format!("public.{table}"));
    let cache = Cache::new(DatabaseDriver::from_config(&config).await.unwrap());
    for key in [
        "'; DROP TABLE users; --",
        "quote'\"",
        "nul\0byte",
        "ключ",
        &"k".repeat(60_000),
    ] {
        cache.put(key, &key.len(), MINUTE).await.unwrap();
        assert_eq!(
            cache.get::<usize>(key).await.unwrap(),
            Some(key.len()),
            "{key:.20?}"
        );
    }
    let rows = shared_postgres().psql(&format!("SELECT count(*) FROM public.{table}"));
    assert_eq!(rows, "5");
}

/// The server is killed under load: every call fails cleanly (a database error, within the
/// timeout), and once it is back every write that was acknowledged is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_under_load_loses_no_acknowledged_write_and_recovers() {
    let mut server = PostgresServer::start_durable();
    let config = DatabaseConfig::new(server.url())
        .table("entries")
        .timeout(Duration::from_secs(1));
    let cache = Cache::new(DatabaseDriver::from_config(&config).await.unwrap());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let (cache, stop) = (cache.clone(), std::sync::Arc::clone(&stop));
            tokio::spawn(async move {
                let (mut acknowledged, mut failures) = (Vec::new(), 0);
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let key = format!("w{writer}:{n}");
                    let started = std::time::Instant::now();
                    match cache.put(&key, &n, MINUTE).await {
                        Ok(()) => acknowledged.push(key),
                        Err(error) => {
                            assert!(
                                matches!(error.kind(), ErrorKind::Database { .. }),
                                "{error}"
                            );
                            // The pool's timeout, and a margin for a loaded machine.
                            assert!(started.elapsed() < Duration::from_secs(4), "{error}");
                            failures += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                (acknowledged, failures)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop();
    // Down for longer than the pool waits for a connection (1 s): calls must fail, not hang.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    server.restart();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut acknowledged, mut failures) = (Vec::new(), 0);
    for writer in writers {
        let (keys, failed) = writer.await.unwrap();
        acknowledged.extend(keys);
        failures += failed;
    }
    assert!(failures > 0, "the kill was felt");
    assert!(
        acknowledged.len() > 100,
        "{} writes acknowledged",
        acknowledged.len()
    );
    for key in &acknowledged {
        assert!(
            cache.get::<u64>(key).await.unwrap().is_some(),
            "{key} was acknowledged, then lost"
        );
    }
}

/// Eight instances starting at once on a database without the table all come up: creating it
/// is idempotent, and the race PostgreSQL reports between two `CREATE … IF NOT EXISTS` is
/// taken for what it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_at_once_all_create_or_find_the_table() {
    let config = DatabaseConfig::new(shared_postgres().url()).table(fresh_table());
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let config = config.clone();
            tokio::spawn(async move { DatabaseDriver::from_config(&config).await })
        })
        .collect();
    for start in starts {
        let driver = start.await.unwrap().expect("every instance starts");
        drop(driver);
    }
}

/// `hit` and `increment` are one statement each — one round trip — and `rate` one short
/// transaction: counted in the server's own statement log.
#[tokio::test]
async fn a_hit_is_one_statement_on_the_server() {
    let server = PostgresServer::start_logging_statements();
    let config = DatabaseConfig::new(server.url()).table("counted");
    let cache = Cache::new(DatabaseDriver::from_config(&config).await.unwrap());
    cache.hit("warm-up", MINUTE).await.unwrap(); // the first use prepares the statement
    let statements = || server.log().matches("LOG:  execute").count();
    let before = statements();
    for _ in 0..10 {
        cache.hit("login:ana", MINUTE).await.unwrap();
    }
    // The log is written by the server process: give it a moment to reach the file.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while statements() < before + 10 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(statements() - before, 10, "{}", server.log());
    if std::env::var_os("JTC_SHOW_LOG").is_some() {
        eprintln!("{}", server.log());
    }
}
