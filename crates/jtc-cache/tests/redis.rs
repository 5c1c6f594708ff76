//! The conformance suite on a real standalone `redis-server`, plus what only Redis can get
//! wrong: prefixes, plain integers, real TTLs, outages, passwords.

#![cfg(feature = "redis")]

mod conformance;

use std::time::{Duration, Instant};

use conformance::Subject;
use jtc_cache::{Cache, CacheDriver, ErrorKind, RateKind, RateRule, RedisConfig, RedisDriver};
use jtc_test_support::{RedisServer, shared_server, unique_prefix};

const MINUTE: Duration = Duration::from_secs(60);

async fn subject() -> Subject {
    let server = shared_server();
    let driver = RedisDriver::connect(&server.url(), &unique_prefix("conformance"))
        .await
        .unwrap();
    Subject {
        cache: Cache::new(driver),
        clock: None,
        guard: Box::new(()),
    }
}

conformance_tests!(subject);

async fn connect(server: &RedisServer, prefix: &str) -> Cache {
    Cache::new(RedisDriver::connect(&server.url(), prefix).await.unwrap())
}

#[tokio::test]
async fn keys_live_under_the_prefix_and_counters_are_plain_integers() {
    let server = shared_server();
    let prefix = unique_prefix("plain");
    let cache = connect(server, &prefix).await;
    cache
        .put("user", &conformance::user(1), MINUTE)
        .await
        .unwrap();
    cache.put("answer", &41, MINUTE).await.unwrap();
    assert_eq!(cache.increment("answer", 1).await.unwrap(), 42);
    assert_eq!(server.cli(&["GET", &format!("{prefix}answer")]), "42");
    assert_eq!(
        server.cli(&["INCRBY", &format!("{prefix}answer"), "8"]),
        "50"
    );
    assert_eq!(cache.get::<i64>("answer").await.unwrap(), Some(50));
    assert_eq!(server.cli(&["EXISTS", &format!("{prefix}user")]), "1");
    assert_eq!(server.cli(&["EXISTS", "user"]), "0");
}

#[tokio::test]
async fn the_apps_own_connection_manager_is_reused() {
    // A server of its own: the connection count below must not see other tests.
    let server = RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let manager = redis::aio::ConnectionManager::new(client).await.unwrap();
    let prefix = unique_prefix("reuse");
    let cache = Cache::new(RedisDriver::from_connection_manager(
        manager.clone(),
        &prefix,
    ));
    cache.put("k", &7, Duration::from_secs(60)).await.unwrap();
    // The app's own commands on the same connection see the cache's entries, and go on
    // working beside it.
    let mut app = manager;
    let raw: String = redis::cmd("GET")
        .arg(format!("{prefix}k"))
        .query_async(&mut app)
        .await
        .unwrap();
    assert_eq!(raw, "7");
    assert_eq!(cache.increment("k", 1).await.unwrap(), 8);
    let clients = server.cli(&["CLIENT", "LIST"]);
    let before = clients.lines().count();
    let _second = Cache::new(RedisDriver::from_connection_manager(app.clone(), &prefix));
    let after = server.cli(&["CLIENT", "LIST"]).lines().count();
    assert_eq!(before, after, "no new connection is opened");
    let slow = RedisDriver::from_connection_manager(app, &prefix)
        .with_command_timeout(Duration::from_millis(50));
    assert!(format!("{slow:?}").contains("50ms"), "{slow:?}");
}

#[tokio::test]
async fn ttls_are_real_milliseconds() {
    let server = shared_server();
    let prefix = unique_prefix("ttl");
    let cache = connect(server, &prefix).await;
    cache.put("k", &"v", MINUTE).await.unwrap();
    let pttl: i64 = server
        .cli(&["PTTL", &format!("{prefix}k")])
        .parse()
        .unwrap();
    assert!(pttl > 59_000 && pttl <= 60_000, "PTTL {pttl}");
    cache
        .add("a", &1, Duration::from_millis(1500))
        .await
        .unwrap();
    let pttl: i64 = server
        .cli(&["PTTL", &format!("{prefix}a")])
        .parse()
        .unwrap();
    assert!(pttl > 1_000 && pttl <= 1_500, "PTTL {pttl}");
    let hit = cache.hit("h", Duration::from_secs(30)).await.unwrap();
    assert!(hit.expires_in <= Duration::from_secs(30) && hit.expires_in > Duration::from_secs(29));
    let pttl: i64 = server
        .cli(&["PTTL", &format!("{prefix}h")])
        .parse()
        .unwrap();
    assert!(pttl > 29_000 && pttl <= 30_000, "PTTL {pttl}");
}

#[tokio::test]
async fn flush_spares_other_prefixes_and_foreign_keys() {
    let server = shared_server();
    let prefix = unique_prefix("flush");
    let cache = connect(server, &prefix).await;
    let neighbour_prefix = unique_prefix("neighbour");
    let neighbour = connect(server, &neighbour_prefix).await;
    for i in 0..2_500 {
        cache.put(&format!("k{i}"), &i, MINUTE).await.unwrap();
    }
    neighbour.put("k1", &1, MINUTE).await.unwrap();
    server.cli(&["SET", "foreign:key", "kept"]);
    // A prefix with glob characters must match only itself.
    let globby = connect(server, &format!("{prefix}*")).await;
    globby.put("x", &1, MINUTE).await.unwrap();
    server.cli(&["SET", &format!("{prefix}?other"), "kept"]);

    globby.flush().await.unwrap();
    assert_eq!(server.cli(&["GET", &format!("{prefix}?other")]), "kept");
    assert_eq!(
        cache.get::<i32>("k7").await.unwrap(),
        Some(7),
        "a * prefix is not a wildcard"
    );

    cache.flush().await.unwrap();
    assert_eq!(server.cli(&["GET", "foreign:key"]), "kept");
    assert_eq!(neighbour.get::<i32>("k1").await.unwrap(), Some(1));
    let left = server.cli(&["--scan", "--pattern", &format!("{prefix}k*")]);
    assert!(left.is_empty(), "{left}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_of_a_thousand_increments_end_at_64000() {
    let cache = connect(shared_server(), &unique_prefix("exact")).await;
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for _ in 0..1_000 {
                    cache.increment("n", 1).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(cache.get::<i64>("n").await.unwrap(), Some(64_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_and_the_same_cache_recovers() {
    let mut server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let cache = bounded(&server, "outage:", timeout).await;
    cache.put("k", &1, MINUTE).await.unwrap();

    server.stop();
    for _ in 0..5 {
        let err = fails_within(&cache, timeout).await;
        assert!(
            matches!(
                err.kind(),
                ErrorKind::Timeout { .. } | ErrorKind::Redis { .. }
            ),
            "{err:?}"
        );
        assert!(cache.increment("n", 1).await.is_err());
    }

    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match cache.put("k", &2, MINUTE).await {
            Ok(()) => break,
            Err(err) => assert!(Instant::now() < deadline, "no recovery: {err}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cache.get::<i32>("k").await.unwrap(), Some(2));
    // Increments attempted during the outage were not queued and replayed.
    assert_eq!(cache.increment("n", 1).await.unwrap(), 1);
}

#[tokio::test]
async fn an_unreachable_server_fails_to_connect_within_the_timeout() {
    let port = jtc_test_support::free_port();
    let config = RedisConfig::from_url(format!("redis://127.0.0.1:{port}"))
        .connect_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = RedisDriver::from_config(&config).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            err.kind(),
            ErrorKind::Timeout { .. } | ErrorKind::Redis { .. }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn passwords_authenticate_and_never_show() {
    let server = RedisServer::start_with(&["--requirepass", "pa55word"]);
    let wrong = RedisConfig::from_url(server.url()).password("nope");
    let err = RedisDriver::from_config(&wrong).await.unwrap_err();
    let chain = error_chain(&err);
    assert!(!chain.contains("nope"), "{chain}");

    let url = format!("redis://:pa55word@127.0.0.1:{}/0", server.port());
    let driver = RedisDriver::connect(&url, "auth:").await.unwrap();
    assert!(!format!("{driver:?}").contains("pa55word"));
    let cache = Cache::new(driver);
    cache.put("k", &1, MINUTE).await.unwrap();
    assert_eq!(cache.get::<i32>("k").await.unwrap(), Some(1));
}

#[tokio::test]
async fn a_wrong_type_in_redis_is_a_miss_or_a_clear_error() {
    let server = shared_server();
    let prefix = unique_prefix("wrongtype");
    let cache = connect(server, &prefix).await;
    server.cli(&["RPUSH", &format!("{prefix}list"), "a"]);
    let err = cache.get::<String>("list").await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Redis { .. }), "{err:?}");
    assert_eq!(
        server.cli(&["LLEN", &format!("{prefix}list")]),
        "1",
        "left alone"
    );
    server.cli(&["SET", &format!("{prefix}text"), "hello"]);
    assert!(matches!(
        cache.increment("text", 1).await.unwrap_err().kind(),
        ErrorKind::NotAnInteger { .. }
    ));
    assert!(matches!(
        cache.hit("text", MINUTE).await.unwrap_err().kind(),
        ErrorKind::NotAnInteger { .. }
    ));
    assert_eq!(server.cli(&["GET", &format!("{prefix}text")]), "hello");
}

#[tokio::test]
async fn one_rate_limit_hit_is_one_redis_command() {
    let server = RedisServer::start();
    let driver = RedisDriver::connect(&server.url(), "count:").await.unwrap();
    driver.hit("warm", MINUTE).await.unwrap(); // loads the script once
    server.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..100 {
        driver.hit("client", MINUTE).await.unwrap();
    }
    let stats = server.cli(&["INFO", "commandstats"]);
    let calls = |command: &str| -> u64 {
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    };
    // What the client sent: one EVALSHA per hit and nothing else.
    let sent: Vec<&str> = stats
        .lines()
        .filter_map(|line| line.strip_prefix("cmdstat_")?.split(':').next())
        .filter(|command| {
            !["incrby", "pttl", "pexpire", "config|resetstat", "info"].contains(command)
        })
        .collect();
    assert_eq!(sent, ["evalsha"], "{stats}");
    assert_eq!(calls("evalsha"), 100, "{stats}");
    // Inside the script: one increment per hit, and the TTL set once for the new counter.
    assert_eq!(calls("incrby"), 100, "{stats}");
    assert_eq!(calls("pexpire"), 1, "{stats}");
}

/// A batch of requests on a record: one script run per 250 (a run never keeps Redis busy
/// long), every request in order, and exactly as many admitted as the limit allows.
#[tokio::test]
async fn a_large_batch_on_a_record_runs_a_script_per_250_requests() {
    let server = RedisServer::start();
    let cache = connect(&server, "batch:").await;
    let rules = [
        RateRule {
            limit: 2_000,
            window: MINUTE,
            kind: RateKind::SlidingWindow,
        },
        RateRule {
            limit: 5_000,
            window: MINUTE,
            kind: RateKind::FixedWindow,
        },
    ];
    cache.rate("warm", &rules, true).await.unwrap(); // loads the script once
    server.cli(&["CONFIG", "RESETSTAT"]);
    let batch = cache.rate_by("client", &rules, 2_500).await.unwrap();
    assert_eq!(batch.len(), 2_500);
    let admitted: Vec<bool> = batch.iter().map(|v| v.iter().all(|v| v.allowed)).collect();
    assert!(
        admitted[..2_000].iter().all(|a| *a),
        "the first 2,000 in order"
    );
    assert!(admitted[2_000..].iter().all(|a| !*a), "then none");
    assert_eq!(batch[1_999][0].remaining, 0);
    assert_eq!(
        batch[2_499][1].remaining, 2_500,
        "a fixed window counts every request"
    );
    let scripts = commands_run(&server)
        .into_iter()
        .find(|(name, _)| name == "evalsha")
        .map(|(_, calls)| calls);
    assert_eq!(scripts, Some(10), "2,500 requests in runs of at most 250");
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Commands the server ran since the last `CONFIG RESETSTAT`, as (name, calls), without the
/// test's own `CONFIG` and `INFO`.
fn commands_run(server: &RedisServer) -> Vec<(String, u64)> {
    let stats = server.cli(&["INFO", "commandstats"]);
    let mut run: Vec<(String, u64)> = stats
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(":calls=")?;
            let calls = rest.split(',').next()?.parse().ok()?;
            Some((name.to_owned(), calls))
        })
        .filter(|(name, _)| !["config|resetstat", "info"].contains(&name.as_str()))
        .collect();
    run.sort();
    run
}

#[tokio::test]
async fn remember_costs_one_get_per_hit_and_five_commands_per_guarded_miss() {
    let server = RedisServer::start();
    let cache = connect(&server, &unique_prefix("cost")).await;
    // Load the release script once, so the counts below are the steady state.
    let warm = cache
        .lock("warm", MINUTE)
        .try_acquire()
        .await
        .unwrap()
        .unwrap();
    warm.release().await.unwrap();

    server.cli(&["CONFIG", "RESETSTAT"]);
    let _: i32 = cache.remember("k", MINUTE, || async { 1 }).await.unwrap();
    let expected = [("del", 1), ("evalsha", 1), ("get", 3), ("set", 2)];
    let expected: Vec<_> = expected
        .iter()
        .map(|(n, c)| ((*n).to_owned(), *c))
        .collect();
    // get (miss), SET NX (fill lock), get (re-check), SET (value), EVALSHA → DEL (release).
    assert_eq!(commands_run(&server), expected);

    server.cli(&["CONFIG", "RESETSTAT"]);
    for _ in 0..10 {
        let _: i32 = cache.remember("k", MINUTE, || async { 2 }).await.unwrap();
    }
    assert_eq!(commands_run(&server), [("get".to_owned(), 10)]);

    let unguarded = cache.clone().without_stampede_protection();
    server.cli(&["CONFIG", "RESETSTAT"]);
    let _: i32 = unguarded
        .remember("u", MINUTE, || async { 3 })
        .await
        .unwrap();
    let expected = [("get".to_owned(), 2), ("set".to_owned(), 1)];
    assert_eq!(commands_run(&server), expected);
}

#[tokio::test]
async fn redis_errors_inside_a_script_are_errors_not_panics() {
    let server = shared_server();
    let prefix = unique_prefix("wrongtype");
    let cache = connect(server, &prefix).await;
    // A key of another type under our prefix: INCR fails inside the hit script.
    server.cli(&["RPUSH", &format!("{prefix}list"), "a"]);
    let err = cache.hit("list", MINUTE).await.unwrap_err();
    assert!(
        error_chain(&err).contains("WRONGTYPE"),
        "{}",
        error_chain(&err)
    );
    assert!(cache.increment("list", 1).await.is_err());
    assert!(cache.get::<String>("list").await.is_err());
    // The connection is fine afterwards.
    cache.put("ok", &1, MINUTE).await.unwrap();
    assert_eq!(cache.get::<i32>("ok").await.unwrap(), Some(1));
}

/// A frozen server (SIGSTOP: its socket stays open, nothing answers) costs each call its
/// command timeout and no more; the connection is kept, and once the server wakes the same
/// driver answers on it (the replies of the abandoned calls are read and dropped first).
#[tokio::test]
async fn a_frozen_server_costs_each_call_its_timeout_and_the_connection_survives() {
    let server = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let cache = bounded(&server, "frozen:", timeout).await;
    cache.put("k", &1, MINUTE).await.unwrap();

    server.pause();
    for _ in 0..3 {
        let err = fails_within(&cache, timeout).await;
        assert!(matches!(err.kind(), ErrorKind::Timeout { .. }), "{err:?}");
    }
    server.resume();
    assert_eq!(cache.get::<i32>("k").await.unwrap(), Some(1));
    assert_eq!(cache.increment("n", 1).await.unwrap(), 1);
}

/// A cache on its own connection to `server`, every call bounded by `timeout`.
async fn bounded(server: &RedisServer, prefix: &str, timeout: Duration) -> Cache {
    let config = RedisConfig::from_url(server.url())
        .prefix(prefix)
        .command_timeout(timeout);
    Cache::new(RedisDriver::from_config(&config).await.unwrap())
}

/// A `get` that fails, and fails within `timeout` (and a little slack for a busy machine).
async fn fails_within(cache: &Cache, timeout: Duration) -> jtc_cache::Error {
    let started = Instant::now();
    let err = cache.get::<i32>("k").await.unwrap_err();
    assert!(
        started.elapsed() < timeout + Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    err
}
