//! `DatabaseDriver`: the cache in a SQL table, on SQLite (features `sqlite`) or PostgreSQL
//! (`postgres`), through sqlx. Statements are in `sql.rs`, the table and its name in
//! `table.rs`, `Cache::rate` in `rate.rs`.

mod rate;
mod sql;
mod table;

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use sqlx::{AssertSqlSafe, Row};

pub use table::DEFAULT_TABLE;
use table::{Dialect, Table};

use crate::{
    CacheDriver, Clock, ErrorKind, Hit, RateRule, RateVerdict, Result, SystemClock,
    counter::{format_integer, parse_integer},
    driver::DriverFuture,
};

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

/// How to reach the database and which table to use. [`DatabaseDriver::connect`] takes the
/// defaults; `CACHE_DRIVER=database` reads `DB_URL` (or `DATABASE_URL`), `DB_CACHE_TABLE`,
/// `DB_CACHE_PREFIX` and `DB_CACHE_UNLOGGED`.
#[derive(Clone)]
pub struct DatabaseConfig {
    url: String,
    table: String,
    prefix: String,
    unlogged: bool,
    max_connections: u32,
    timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &mask_password(&self.url))
            .field("table", &self.table)
            .field("prefix", &self.prefix)
            .field("unlogged", &self.unlogged)
            .finish_non_exhaustive()
    }
}

impl PartialEq for DatabaseConfig {
    /// The same settings (the clock is not compared).
    fn eq(&self, other: &Self) -> bool {
        (&self.url, &self.table, &self.prefix, self.unlogged)
            == (&other.url, &other.table, &other.prefix, other.unlogged)
            && (self.max_connections, self.timeout) == (other.max_connections, other.timeout)
    }
}

impl Eq for DatabaseConfig {}

impl DatabaseConfig {
    /// `sqlite://path/to/cache.db` (created when missing) or
    /// `postgres://user:password@host/database`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            table: DEFAULT_TABLE.to_owned(),
            prefix: String::new(),
            unlogged: false,
            max_connections: 10,
            timeout: Duration::from_secs(5),
            clock: Arc::new(SystemClock),
        }
    }

    /// The table (default [`DEFAULT_TABLE`]): `name` or `schema.name`, letters, digits and
    /// `_`. Checked when the driver connects.
    #[must_use]
    pub fn table(mut self, table: impl Into<String>) -> Self {
        self.table = table.into();
        self
    }

    /// A prefix for this cache's keys: caches with different prefixes share a table without
    /// seeing each other's entries, and `flush` removes only this prefix's rows.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// PostgreSQL: create the table `UNLOGGED` — writes skip the write-ahead log (faster),
    /// but the table is emptied after a crash and not replicated to standbys. A cache can
    /// usually afford that. Only applies when the driver creates the table.
    #[must_use]
    pub fn unlogged(mut self, unlogged: bool) -> Self {
        self.unlogged = unlogged;
        self
    }

    /// The most connections the pool opens (default 10).
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How long a call waits for a connection, and SQLite for a lock (default 5 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The clock that decides expiry (default: the system's). All instances sharing a table
    /// should have clocks in step.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The settings from `DB_URL` (or `DATABASE_URL`), `DB_CACHE_TABLE`, `DB_CACHE_PREFIX`
    /// and `DB_CACHE_UNLOGGED`, as `CACHE_DRIVER=database` reads them; the table name is
    /// checked here, so that a bad one stops the app at start-up with its variable named.
    pub(crate) fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let invalid = |variable: &'static str, value: &str, reason: &str| -> crate::Error {
            ErrorKind::Config {
                variable,
                value: mask_password(value),
                reason: reason.to_owned(),
            }
            .into()
        };
        let url = var("DB_URL")
            .or_else(|| var("DATABASE_URL"))
            .ok_or_else(|| {
                invalid(
                    "DB_URL",
                    "",
                    "CACHE_DRIVER=database needs DB_URL (or DATABASE_URL): \
                 sqlite://path/to/cache.db or postgres://user:pass@host/db",
                )
            })?;
        let mut config = Self::new(url);
        if let Some(table) = var("DB_CACHE_TABLE") {
            Table::parse(&table, "DB_CACHE_TABLE")?;
            config.table = table;
        }
        if let Some(prefix) = var("DB_CACHE_PREFIX") {
            config.prefix = prefix;
        }
        if let Some(unlogged) = var("DB_CACHE_UNLOGGED") {
            config.unlogged = match unlogged.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    return Err(invalid(
                        "DB_CACHE_UNLOGGED",
                        &unlogged,
                        "expected true or false",
                    ));
                }
            };
        }
        config.dialect()?;
        Ok(config)
    }

    /// The settings as (name, value) rows for display, the password masked.
    pub(crate) fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            ("URL", mask_password(&self.url)),
            ("Table", self.table.clone()),
            ("Prefix", self.prefix.clone()),
            ("Unlogged", self.unlogged.to_string()),
        ]
    }

    fn dialect(&self) -> Result<Dialect> {
        let scheme = self.url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" if cfg!(feature = "sqlite") => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" if cfg!(feature = "postgres") => Ok(Dialect::Postgres),
            _ => Err(ErrorKind::Config {
                variable: "DB_URL",
                value: mask_password(&self.url),
                reason: format!(
                    "expected {}",
                    [
                        cfg!(feature = "sqlite").then_some("sqlite://path/to/cache.db"),
                        cfg!(feature = "postgres").then_some("postgres://user:pass@host/db"),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" or ")
                ),
            }
            .into()),
        }
    }
}

/// The URL with any password replaced by `***`, for logs and errors.
pub fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The cache in a SQL table on SQLite or PostgreSQL: shared by every process that reaches the
/// database, with no server of its own to run.
///
/// Every atomic operation is one statement (`INSERT … ON CONFLICT … RETURNING`), so no
/// transaction is ever left open and concurrent callers never deadlock; `Cache::rate` is a
/// compare-and-set loop. Expired rows are absent to every read and removed by
/// [`prune`](CacheDriver::prune) (`jtc cache prune`, on a schedule) or overwritten.
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
        let table = Table::parse(&config.table, "DB_CACHE_TABLE")?;
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
        let table = Table::parse(&config.table, "DB_CACHE_TABLE")?;
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
        let table = Table::parse(&config.table, "DB_CACHE_TABLE")?;
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

async fn connect(config: &DatabaseConfig, dialect: Dialect) -> Result<Backend> {
    let failed = |error| crate::Error::database("connect", error);
    match dialect {
        #[cfg(feature = "sqlite")]
        Dialect::Sqlite => {
            use sqlx::sqlite::{
                SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
            };
            let options: SqliteConnectOptions = config.url.parse().map_err(failed)?;
            let options = options
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(config.timeout);
            let pool = SqlitePoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(config.timeout)
                .connect_with(options)
                .await
                .map_err(failed)?;
            Ok(Backend::Sqlite(pool))
        }
        #[cfg(feature = "postgres")]
        Dialect::Postgres => {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(config.timeout)
                .connect(&config.url)
                .await
                .map_err(failed)?;
            Ok(Backend::Postgres(pool))
        }
        #[allow(unreachable_patterns)]
        _ => unreachable!("dialect() only returns the dialects built in"),
    }
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

/// A stored value as the table holds it: bytes, or a counter when they are one.
fn split(value: &[u8]) -> (Option<&[u8]>, Option<i64>) {
    match parse_integer(value) {
        Some(counter) => (None, Some(counter)),
        None => (Some(value), None),
    }
}

/// The bytes a row stands for.
fn joined(value: Option<Vec<u8>>, counter: Option<i64>) -> Option<Bytes> {
    match (value, counter) {
        (Some(value), _) => Some(Bytes::from(value)),
        (None, Some(counter)) => Some(Bytes::from(format_integer(counter))),
        (None, None) => None,
    }
}

impl CacheDriver for DatabaseDriver {
    fn name(&self) -> &'static str {
        "database"
    }

    fn get<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        DriverFuture::new(async move {
            let (_, id) = self.row(key);
            let now = self.now();
            let row = with_pool!(self, pool => {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.get)))
                    .bind(id)
                    .bind(now)
                    .fetch_optional(pool)
                    .await
                    .and_then(|row| row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose())
            })
            .map_err(|e| crate::Error::database("get", e))?;
            Ok(row.and_then(|(value, counter)| joined(value, counter)))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, ()> {
        DriverFuture::new(async move {
            let (full, id) = self.row(key);
            let expires_at = expires_at(self.now(), ttl);
            let (bytes, counter) = split(&value);
            with_pool!(self, pool => {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.put)))
                    .bind(id)
                    .bind(full)
                    .bind(bytes)
                    .bind(counter)
                    .bind(expires_at)
                    .execute(pool)
                    .await
                    .map(drop)
            })
            .map_err(|e| crate::Error::database("put", e))
        })
    }

    fn add<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, bool> {
        DriverFuture::new(async move {
            let (full, id) = self.row(key);
            let now = self.now();
            let expires_at = expires_at(now, ttl);
            let (bytes, counter) = split(&value);
            with_pool!(self, pool => {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.add)))
                    .bind(id)
                    .bind(full)
                    .bind(bytes)
                    .bind(counter)
                    .bind(expires_at)
                    .bind(now)
                    .fetch_optional(pool)
                    .await
                    .map(|row| row.is_some())
            })
            .map_err(|e| crate::Error::database("add", e))
        })
    }

    fn increment<'a>(&'a self, key: &'a str, by: i64) -> DriverFuture<'a, i64> {
        DriverFuture::new(async move { self.increment_row(key, by).await })
    }

    fn hit<'a>(&'a self, key: &'a str, window: Duration) -> DriverFuture<'a, Hit> {
        self.hit_by(key, window, 1)
    }

    fn hit_by<'a>(&'a self, key: &'a str, window: Duration, by: u64) -> DriverFuture<'a, Hit> {
        DriverFuture::new(async move { self.hit_row(key, window, by).await })
    }

    fn rate<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        consume: bool,
    ) -> DriverFuture<'a, Vec<RateVerdict>> {
        DriverFuture::new(async move { self.rate_row(key, rules, consume).await })
    }

    fn forget<'a>(&'a self, key: &'a str) -> DriverFuture<'a, bool> {
        DriverFuture::new(async move {
            let (_, id) = self.row(key);
            let now = self.now();
            let lived: Option<i64> = with_pool!(self, pool => {
                sqlx::query_scalar(AssertSqlSafe(Arc::clone(&self.sql.forget)))
                    .bind(id)
                    .bind(now)
                    .fetch_optional(pool)
                    .await
            })
            .map_err(|e| crate::Error::database("forget", e))?;
            Ok(lived == Some(1))
        })
    }

    fn forget_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> DriverFuture<'a, bool> {
        DriverFuture::new(async move {
            let (_, id) = self.row(key);
            let now = self.now();
            let removed = match split(expected) {
                (_, Some(counter)) => with_pool!(self, pool => {
                    sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.forget_counter)))
                        .bind(id).bind(now).bind(counter).execute(pool).await
                        .map(|done| done.rows_affected())
                }),
                (bytes, None) => with_pool!(self, pool => {
                    sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.forget_value)))
                        .bind(id).bind(now).bind(bytes).execute(pool).await
                        .map(|done| done.rows_affected())
                }),
            }
            .map_err(|e| crate::Error::database("forget_if", e))?;
            Ok(removed > 0)
        })
    }

    fn pull<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        DriverFuture::new(async move {
            let (_, id) = self.row(key);
            let now = self.now();
            let row = with_pool!(self, pool => {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.pull)))
                    .bind(id)
                    .fetch_optional(pool)
                    .await
                    .and_then(|row| {
                        row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).transpose()
                    })
            })
            .map_err(|e| crate::Error::database("pull", e))?;
            Ok(
                row.and_then(|(value, counter, expires_at): (_, _, Option<i64>)| {
                    let live = expires_at.is_none_or(|at| at > now);
                    live.then(|| joined(value, counter)).flatten()
                }),
            )
        })
    }

    fn touch<'a>(&'a self, key: &'a str, ttl: Option<Duration>) -> DriverFuture<'a, bool> {
        DriverFuture::new(async move {
            let (_, id) = self.row(key);
            let now = self.now();
            let expires_at = expires_at(now, ttl);
            let touched = with_pool!(self, pool => {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.touch)))
                    .bind(id)
                    .bind(now)
                    .bind(expires_at)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected())
            })
            .map_err(|e| crate::Error::database("touch", e))?;
            Ok(touched > 0)
        })
    }

    fn flush(&self) -> DriverFuture<'_, ()> {
        DriverFuture::new(async move {
            let prefix = self.prefix.as_bytes().to_vec();
            let length = i32::try_from(prefix.len()).unwrap_or(i32::MAX);
            with_pool!(self, pool => {
                if prefix.is_empty() {
                    sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.flush_all)))
                        .execute(pool)
                        .await
                } else {
                    sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.flush_prefix)))
                        .bind(prefix)
                        .bind(length)
                        .execute(pool)
                        .await
                }
                .map(drop)
            })
            .map_err(|e| crate::Error::database("flush", e))
        })
    }

    fn prune(&self) -> DriverFuture<'_, u64> {
        DriverFuture::new(async move {
            let now = self.now();
            with_pool!(self, pool => {
                sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.prune)))
                    .bind(now)
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected())
            })
            .map_err(|e| crate::Error::database("prune", e))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::mask_password;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_password("postgres://app:s3cret@db.internal:5432/cache"),
            "postgres://app:***@db.internal:5432/cache"
        );
        assert_eq!(
            mask_password("postgres://app@db/cache"),
            "postgres://app@db/cache"
        );
        assert_eq!(
            mask_password("sqlite://var/cache.db"),
            "sqlite://var/cache.db"
        );
        assert_eq!(
            mask_password("postgres://u:p@ss@host/db"),
            "postgres://u:***@host/db",
            "the last @ ends the credentials"
        );
    }
}
