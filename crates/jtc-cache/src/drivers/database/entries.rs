//! The database driver's `CacheDriver` operations: each one statement (see `sql.rs`).

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use sqlx::{AssertSqlSafe, Row};

use super::{Backend, DatabaseDriver, expires_at, with_pool};
use crate::{
    CacheDriver, Hit, RateRule, RateVerdict, Result,
    counter::{format_integer, parse_integer},
    driver::{DriverFuture, one_rate_at_a_time},
};

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
        DriverFuture::new(self.read(key))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, ()> {
        DriverFuture::new(self.write(key, value, ttl))
    }

    fn add<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.insert(key, value, ttl))
    }

    fn increment<'a>(&'a self, key: &'a str, by: i64) -> DriverFuture<'a, i64> {
        DriverFuture::new(self.increment_row(key, by))
    }

    fn hit_by<'a>(&'a self, key: &'a str, window: Duration, by: u64) -> DriverFuture<'a, Hit> {
        DriverFuture::new(self.hit_row(key, window, by))
    }

    fn rate<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        consume: bool,
    ) -> DriverFuture<'a, Vec<RateVerdict>> {
        DriverFuture::new(self.rate_row(key, rules, consume))
    }

    fn rate_by<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        by: u64,
    ) -> DriverFuture<'a, Vec<Vec<RateVerdict>>> {
        one_rate_at_a_time("database", by, |consume| self.rate(key, rules, consume))
    }

    fn forget<'a>(&'a self, key: &'a str) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.delete(key))
    }

    fn forget_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.delete_if(key, expected))
    }

    fn pull<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        DriverFuture::new(self.take(key))
    }

    fn touch<'a>(&'a self, key: &'a str, ttl: Option<Duration>) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.retime(key, ttl))
    }

    fn flush(&self) -> DriverFuture<'_, ()> {
        DriverFuture::new(self.delete_all())
    }

    fn prune(&self) -> DriverFuture<'_, u64> {
        DriverFuture::new(self.delete_expired())
    }
}

/// The operations, one statement each; the trait forwards to them.
impl DatabaseDriver {
    async fn read(&self, key: &str) -> Result<Option<Bytes>> {
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
    }

    async fn write(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
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
    }

    async fn insert(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<bool> {
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
    }

    async fn delete(&self, key: &str) -> Result<bool> {
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
    }

    async fn delete_if(&self, key: &str, expected: &[u8]) -> Result<bool> {
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
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>> {
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
    }

    async fn retime(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
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
    }

    async fn delete_all(&self) -> Result<()> {
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
    }

    async fn delete_expired(&self) -> Result<u64> {
        let now = self.now();
        with_pool!(self, pool => {
            sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.prune)))
                .bind(now)
                .execute(pool)
                .await
                .map(|done| done.rows_affected())
        })
        .map_err(|e| crate::Error::database("prune", e))
    }
}
