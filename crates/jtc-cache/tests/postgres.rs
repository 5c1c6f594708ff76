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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_dies_gives_clean_errors_in_time_and_the_driver_recovers() {
    let mut server = PostgresServer::start_durable();
    let config = DatabaseConfig::new(server.url())
        .table("entries")
        .timeout(Duration::from_secs(2));
    let cache = Cache::new(DatabaseDriver::from_config(&config).await.unwrap());
    cache.put("kept", &1, MINUTE).await.unwrap(); // acknowledged: must survive
    server.stop();
    let started = std::time::Instant::now();
    let err = cache.get::<i32>("kept").await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Database { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(!format!("{err:?}").contains("password"));

    server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        match cache.get::<i32>("kept").await {
            Ok(value) => {
                assert_eq!(value, Some(1), "an acknowledged write survived the crash");
                break;
            }
            Err(error) => assert!(
                std::time::Instant::now() < deadline,
                "no recovery: {error:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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
