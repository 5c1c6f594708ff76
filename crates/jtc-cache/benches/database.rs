//! `DatabaseDriver` against bare sqlx on the same table, in alternating rounds: SQLite `get`
//! and `put` from one task, PostgreSQL `get` and `put` from 32 concurrent tasks (a server the
//! benchmark starts, as the tests do).
//!
//! `cargo bench -p jtc-cache --features sqlite,postgres --bench database` (`JTC_ROUNDS`,
//! default 9). Every round times both sides, alternating which goes first; the figure is the
//! median of the per-round ratios bare time / driver time (target ≥ 0.8). docs/benchmarks.md
//! records it.

mod rounds;
mod versus;

use std::{hint::black_box, sync::Arc, time::Duration};

use bytes::Bytes;
use jtc_cache::{CacheDriver, DatabaseConfig, DatabaseDriver};
use jtc_test_support::PostgresServer;
use versus::{TASKS, compare, tasks};

const KEYS: usize = 1_000;
const TTL: Duration = Duration::from_secs(3_600);

/// The bare statements, as a hand-written cache table would run them.
const GET: &str = "SELECT value, counter FROM jtc_cache \
                   WHERE id = $1 AND (expires_at IS NULL OR expires_at > $2)";
const PUT: &str = "INSERT INTO jtc_cache (id, key, value, counter, expires_at) \
                   VALUES ($1, $2, $3, NULL, $4) ON CONFLICT (id) DO UPDATE SET \
                   key = excluded.key, value = excluded.value, counter = excluded.counter, \
                   expires_at = excluded.expires_at";

fn main() {
    let (rounds, scale) = rounds::rounds(9);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    rt.block_on(sqlite(&sqlite_url, rounds, scale));
    let server = PostgresServer::start();
    rt.block_on(postgres(&server.url(), rounds, scale));
}

fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("user:{i}:profile")).collect()
}

/// The row id the driver gives `key` (no prefix): the bare side looks rows up the same way.
fn id(key: &str) -> Vec<u8> {
    blake3::hash(key.as_bytes()).as_bytes()[..16].to_vec()
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

const VALUE: &[u8] = b"a cached value of a few dozen bytes, as a small profile";

async fn sqlite(url: &str, rounds: usize, scale: usize) {
    let driver = Arc::new(DatabaseDriver::connect(url).await.unwrap());
    // The bare side connects as the driver does: WAL, synchronous=NORMAL, a busy timeout.
    let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
    let options = options
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .synchronous(sqlx::sqlite::SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(10)
        .connect_with(options)
        .await
        .unwrap();
    let keys = keys();
    for key in &keys {
        driver
            .put(key, Bytes::from_static(VALUE), Some(TTL))
            .await
            .unwrap();
    }
    let ops = 20_000 / scale;
    // SQLite numbers its parameters `?1`; made once, for the life of the benchmark.
    let (get_sql, put_sql): (&'static str, &'static str) = (
        Box::leak(GET.replace('$', "?").into_boxed_str()),
        Box::leak(PUT.replace('$', "?").into_boxed_str()),
    );
    let bare_get = |i: usize| {
        let (pool, key) = (&pool, &keys[i % KEYS]);
        async move {
            let row: Option<(Option<Vec<u8>>, Option<i64>)> = sqlx::query_as(get_sql)
                .bind(id(key))
                .bind(now_ms())
                .fetch_optional(pool)
                .await
                .unwrap();
            black_box(row);
        }
    };
    let driver_get = |i: usize| {
        let (driver, key) = (&driver, &keys[i % KEYS]);
        async move {
            black_box(driver.get(key).await.unwrap());
        }
    };
    compare("sqlite get (1 task)", rounds, ops, &bare_get, &driver_get).await;
    let bare_put = |i: usize| {
        let (pool, key) = (&pool, &keys[i % KEYS]);
        async move {
            sqlx::query(put_sql)
                .bind(id(key))
                .bind(key.as_bytes())
                .bind(VALUE)
                .bind(now_ms() + 3_600_000)
                .execute(pool)
                .await
                .unwrap();
        }
    };
    let driver_put = |i: usize| {
        let (driver, key) = (&driver, &keys[i % KEYS]);
        async move {
            driver
                .put(key, Bytes::from_static(VALUE), Some(TTL))
                .await
                .unwrap();
        }
    };
    compare(
        "sqlite put (1 task)",
        rounds,
        ops / 4,
        &bare_put,
        &driver_put,
    )
    .await;
}

async fn postgres(url: &str, rounds: usize, scale: usize) {
    let config = DatabaseConfig::new(url).max_connections(10);
    let driver = Arc::new(DatabaseDriver::from_config(&config).await.unwrap());
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .connect(url)
        .await
        .unwrap();
    let keys = Arc::new(keys());
    for key in keys.iter() {
        driver
            .put(key, Bytes::from_static(VALUE), Some(TTL))
            .await
            .unwrap();
    }
    let ops = 20_000 / scale;
    let each = ops / TASKS;
    let bare_get = tasks(each, {
        let (pool, keys) = (pool.clone(), Arc::clone(&keys));
        move |i| {
            let (pool, key) = (pool.clone(), keys[i % KEYS].clone());
            async move {
                let row: Option<(Option<Vec<u8>>, Option<i64>)> = sqlx::query_as(GET)
                    .bind(id(&key))
                    .bind(now_ms())
                    .fetch_optional(&pool)
                    .await
                    .unwrap();
                black_box(row);
            }
        }
    });
    let driver_get = tasks(each, {
        let (driver, keys) = (Arc::clone(&driver), Arc::clone(&keys));
        move |i| {
            let (driver, key) = (Arc::clone(&driver), keys[i % KEYS].clone());
            async move {
                black_box(driver.get(&key).await.unwrap());
            }
        }
    });
    compare("postgres get (32 tasks)", rounds, 1, &bare_get, &driver_get).await;
    let bare_put = tasks(each, {
        let (pool, keys) = (pool.clone(), Arc::clone(&keys));
        move |i| {
            let (pool, key) = (pool.clone(), keys[i % KEYS].clone());
            async move {
                sqlx::query(PUT)
                    .bind(id(&key))
                    .bind(key.as_bytes())
                    .bind(VALUE)
                    .bind(now_ms() + 3_600_000)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
        }
    });
    let driver_put = tasks(each, {
        let (driver, keys) = (Arc::clone(&driver), Arc::clone(&keys));
        move |i| {
            let (driver, key) = (Arc::clone(&driver), keys[i % KEYS].clone());
            async move {
                driver
                    .put(&key, Bytes::from_static(VALUE), Some(TTL))
                    .await
                    .unwrap();
            }
        }
    });
    compare("postgres put (32 tasks)", rounds, 1, &bare_put, &driver_put).await;
}
