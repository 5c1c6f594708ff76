//! `DatabaseDriver`: the cache in a SQL table, on SQLite (features `sqlite`) or PostgreSQL
//! (`postgres`), through sqlx. The handle and its constructors are here; settings and
//! connecting in `config.rs`, the `CacheDriver` operations in `entries.rs`, counters and
//! `Cache::rate` in `rate.rs`, statements in `sql.rs`, the table and its name in `table.rs`.

mod config;
mod entries;
mod rate;
mod sql;
mod table;

use std::{fmt, sync::Arc, time::Duration};

use sqlx::AssertSqlSafe;

pub use config::DatabaseConfig;
use config::connect;
pub use table::DEFAULT_TABLE;
use table::{Dialect, Table};

use crate::{Clock, Result};

#[cfg(doc)]
use crate::ErrorKind;

/// Runs `$body` with `$pool` bound to whichever pool the driver holds.
macro_rules! with_pool {
    ($driver:expr, $pool:ident => $body:expr) => {
        match &$driver.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite($pool) => $body,
            #[cfg(feature = "postgres")]
            Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// A sqlx pool the driver can use: `sqlx::SqlitePool` or `sqlx::PgPool`, converted with
/// `.into()` (see [`DatabaseDriver::from_pool`]).
#[derive(Clone)]
pub struct DatabasePool(Backend);

impl fmt::Debug for DatabasePool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatabasePool")
    }
}

#[cfg(feature = "sqlite")]
impl From<sqlx::SqlitePool> for DatabasePool {
    fn from(pool: sqlx::SqlitePool) -> Self {
        Self(Backend::Sqlite(pool))
    }
}

#[cfg(feature = "postgres")]
impl From<sqlx::PgPool> for DatabasePool {
    fn from(pool: sqlx::PgPool) -> Self {
        Self(Backend::Postgres(pool))
    }
}

/// The connection pool of one database.
#[derive(Clone)]
enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
}

/// The cache in a SQL table on SQLite or PostgreSQL: shared by every process that reaches the
/// database, with no server of its own to run.
///
/// Every atomic operation is one statement (`INSERT … ON CONFLICT … RETURNING`), so no
/// transaction is ever left open and concurrent callers never deadlock; `Cache::rate` is one
/// short transaction holding the row's lock. Expired rows are absent to every read and removed by
/// [`prune`](crate::CacheDriver::prune) (`jtc cache prune`, on a schedule) or overwritten.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use jtc_cache::{Cache, DatabaseDriver};
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir().unwrap();
/// let url = format!("sqlite://{}", dir.path().join("cache.db").display());
/// let cache = Cache::new(DatabaseDriver::connect(&url).await?);
/// cache.put("greeting", &"hello", Duration::from_secs(60)).await?;
/// assert_eq!(cache.get::<String>("greeting").await?.as_deref(), Some("hello"));
/// assert_eq!(cache.increment("visits", 1).await?, 1);
/// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct DatabaseDriver {
    backend: Backend,
    sql: Arc<sql::Statements>,
    prefix: Arc<str>,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for DatabaseDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseDriver")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl DatabaseDriver {
    /// Connects with the defaults of [`DatabaseConfig::new`]; creates the table when missing.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for a URL of another database, [`ErrorKind::Database`] when the
    /// database cannot be reached or the table cannot be created.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::from_config(&DatabaseConfig::new(url)).await
    }

    /// Connects as `config` says; creates the table when missing.
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect), and [`ErrorKind::Config`] naming `DB_CACHE_TABLE` for a
    /// table name that is not a plain identifier.
    pub async fn from_config(config: &DatabaseConfig) -> Result<Self> {
        let table = config.checked_table()?;
        let dialect = config.dialect()?;
        let backend = connect(config, dialect).await?;
        Self::over(backend, dialect, &table, config).await
    }

    /// Uses a pool the app already has (its URL in `config` is not read; the table, prefix
    /// and clock are). Each call takes a connection from the pool for one statement and gives
    /// it back: the driver never runs inside a transaction of yours, so a failed cache call
    /// cannot abort it. Creates the table when missing.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_cache::{Cache, DatabaseConfig, DatabaseDriver};
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let url = format!("sqlite://{}?mode=rwc", dir.path().join("app.db").display());
    /// let pool = sqlx::SqlitePool::connect(&url).await.unwrap(); // the app's own pool
    /// let config = DatabaseConfig::new("").table("cache_entries");
    /// let cache = Cache::new(DatabaseDriver::from_pool(pool, &config).await?);
    /// assert_eq!(cache.increment("jobs", 1).await?, 1);
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Config`] for a bad table name, [`ErrorKind::Database`] when the table
    /// cannot be created.
    pub async fn from_pool(pool: impl Into<DatabasePool>, config: &DatabaseConfig) -> Result<Self> {
        let table = config.checked_table()?;
        let DatabasePool(backend) = pool.into();
        let dialect = match &backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite(_) => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => Dialect::Postgres,
        };
        Self::over(backend, dialect, &table, config).await
    }

    /// The driver over `backend`, its table created when missing.
    async fn over(
        backend: Backend,
        dialect: Dialect,
        table: &Table,
        config: &DatabaseConfig,
    ) -> Result<Self> {
        let driver = Self {
            backend,
            sql: Arc::new(sql::Statements::new(table, dialect)),
            prefix: Arc::from(config.prefix.as_str()),
            clock: Arc::clone(&config.clock),
        };
        driver.create_table(table, dialect, config.unlogged).await?;
        Ok(driver)
    }

    /// The statements that create the cache table, for teams that migrate by hand
    /// (`jtc cache table`).
    ///
    /// # Errors
    ///
    /// As [`from_config`](Self::from_config) for a bad table name or URL.
    pub fn ddl(config: &DatabaseConfig) -> Result<String> {
        let table = config.checked_table()?;
        let statements = table.ddl(config.dialect()?, config.unlogged);
        Ok(statements.join(";\n") + ";\n")
    }

    async fn create_table(&self, table: &Table, dialect: Dialect, unlogged: bool) -> Result<()> {
        for statement in table.ddl(dialect, unlogged) {
            let result = with_pool!(self, pool => {
                sqlx::query(AssertSqlSafe(statement.clone())).execute(pool).await.map(drop)
            });
            if let Err(error) = result {
                // Two instances creating the table at once: PostgreSQL may report the type or
                // relation the other one just made; the table is there either way.
                if !is_already_there(&error) {
                    return Err(crate::Error::database("create table", error));
                }
            }
        }
        Ok(())
    }

    fn now(&self) -> i64 {
        i64::try_from(self.clock.now_ms()).unwrap_or(i64::MAX)
    }

    /// The full key of `key` (prefix + key) and its row id.
    fn row(&self, key: &str) -> (Vec<u8>, Vec<u8>) {
        let full = [self.prefix.as_bytes(), key.as_bytes()].concat();
        let id = blake3::hash(&full).as_bytes()[..16].to_vec();
        (full, id)
    }
}

/// When an entry written at `now` for `ttl` expires (Unix ms; `None`: never).
fn expires_at(now: i64, ttl: Option<Duration>) -> Option<i64> {
    ttl.map(|ttl| now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)))
}

/// Whether `error` says a concurrent `CREATE … IF NOT EXISTS` won the race.
fn is_already_there(error: &sqlx::Error) -> bool {
    // 23505 unique_violation (on pg_type), 42710 duplicate_object (the table's row type),
    // 42P07 duplicate_table: each seen from instances started together.
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| ["23505", "42710", "42P07"].contains(&&*code))
}
