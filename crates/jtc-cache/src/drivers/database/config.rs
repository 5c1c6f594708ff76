//! The database driver's settings (`DatabaseConfig`, from code or `DB_*` variables) and
//! connecting to SQLite or PostgreSQL.

use std::{fmt, sync::Arc, time::Duration};

use super::{
    Backend,
    table::{DEFAULT_TABLE, Dialect, Table},
};
use crate::{Clock, ErrorKind, Result, SystemClock};

/// How to reach the database and which table to use. [`DatabaseDriver::connect`](super::DatabaseDriver::connect) takes the
/// defaults; `CACHE_DRIVER=database` reads `DB_URL` (or `DATABASE_URL`), `DB_CACHE_TABLE`,
/// `DB_CACHE_PREFIX` and `DB_CACHE_UNLOGGED`.
#[derive(Clone)]
pub struct DatabaseConfig {
    pub(super) url: String,
    pub(super) table: String,
    pub(super) prefix: String,
    pub(super) unlogged: bool,
    pub(super) max_connections: u32,
    pub(super) timeout: Duration,
    pub(super) clock: Arc<dyn Clock>,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &crate::mask_url(&self.url))
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
                value: crate::mask_url(value),
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
            ("URL", crate::mask_url(&self.url)),
            ("Table", self.table.clone()),
            ("Prefix", self.prefix.clone()),
            ("Unlogged", self.unlogged.to_string()),
        ]
    }

    /// The table, checked: an identifier, or an error naming `DB_CACHE_TABLE`.
    pub(super) fn checked_table(&self) -> Result<Table> {
        Table::parse(&self.table, "DB_CACHE_TABLE")
    }

    pub(super) fn dialect(&self) -> Result<Dialect> {
        let scheme = self.url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" if cfg!(feature = "sqlite") => Ok(Dialect::Sqlite),
            "postgres" | "postgresql" if cfg!(feature = "postgres") => Ok(Dialect::Postgres),
            _ => Err(ErrorKind::Config {
                variable: "DB_URL",
                value: crate::mask_url(&self.url),
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

pub(super) async fn connect(config: &DatabaseConfig, dialect: Dialect) -> Result<Backend> {
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

#[cfg(test)]
mod tests {

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            crate::mask_url("postgres://app:s3cret@db.internal:5432/cache"),
            "postgres://app:********@db.internal:5432/cache"
        );
        assert_eq!(
            crate::mask_url("postgres://app@db/cache"),
            "postgres://app@db/cache"
        );
        assert_eq!(
            crate::mask_url("sqlite://var/cache.db"),
            "sqlite://var/cache.db"
        );
        assert_eq!(
            crate::mask_url("postgres://u:p@ss@host/db"),
            "postgres://u:********@host/db",
            "the last @ ends the credentials"
        );
    }
}
