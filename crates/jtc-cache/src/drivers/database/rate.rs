//! The database driver's counters: `increment` and `hit` (one statement each) and
//! `Cache::rate` (one short transaction holding the row's lock).

use std::{sync::Arc, time::Duration};

use sqlx::{AssertSqlSafe, Row};

use super::{Backend, DatabaseDriver, expires_at, with_pool};
use crate::{ErrorKind, Hit, RateRecord, RateRule, RateVerdict, Result, rate::lone_fixed_window};

/// A row as read, expired or not.
type Stored = (Option<Vec<u8>>, Option<i64>, Option<i64>);

impl DatabaseDriver {
    pub(super) async fn increment_row(&self, key: &str, by: i64) -> Result<i64> {
        let (full, id) = self.row(key);
        let now = self.now();
        // The counters `by` can be added to without leaving i64.
        let (lowest, highest) = if by >= 0 {
            (i64::MIN, i64::MAX - by)
        } else {
            (i64::MIN - by, i64::MAX)
        };
        let counted: Option<i64> = with_pool!(self, pool => {
            sqlx::query_scalar(AssertSqlSafe(Arc::clone(&self.sql.increment)))
                .bind(id.clone())
                .bind(full)
                .bind(by)
                .bind(now)
                .bind(lowest)
                .bind(highest)
                .fetch_optional(pool)
                .await
        })
        .map_err(|e| crate::Error::database("increment", e))?;
        if let Some(counted) = counted {
            return Ok(counted);
        }
        // Refused: a live value that is not a counter, or a counter at the edge of i64.
        let key = key.to_owned();
        Err(match self.read_row(&id).await? {
            Some((None, Some(_), _)) => ErrorKind::Overflow { key },
            _ => ErrorKind::NotAnInteger { key },
        }
        .into())
    }

    pub(super) async fn hit_row(&self, key: &str, window: Duration, by: u64) -> Result<Hit> {
        let (full, id) = self.row(key);
        let now = self.now();
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1);
        let by = i64::try_from(by.max(1)).unwrap_or(i64::MAX); // a batch counts at least one
        let (count, expires_at): (i64, Option<i64>) = with_pool!(self, pool => {
            sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.hit)))
                .bind(id)
                .bind(full)
                .bind(by)
                .bind(now.saturating_add(window_ms))
                .bind(now)
                .fetch_one(pool)
                .await
                .and_then(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
        })
        .map_err(|e| crate::Error::database("hit", e))?;
        let left = expires_at.map_or(window_ms, |at| at.saturating_sub(now).max(0));
        Ok(Hit {
            count,
            expires_in: Duration::from_millis(left.unsigned_abs()),
        })
    }

    /// The row of `id` as stored, expired or not.
    async fn read_row(&self, id: &[u8]) -> Result<Option<Stored>> {
        with_pool!(self, pool => {
            sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.get_any)))
                .bind(id)
                .fetch_optional(pool)
                .await
                .and_then(|row| {
                    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).transpose()
                })
        })
        .map_err(|e| crate::Error::database("read", e))
    }

    pub(super) async fn rate_row(
        &self,
        key: &str,
        rules: &[RateRule],
        consume: bool,
    ) -> Result<Vec<RateVerdict>> {
        if let Some(rule) = lone_fixed_window(rules) {
            return self.fixed_window(key, rule, consume).await;
        }
        let (full, id) = self.row(key);
        if !consume {
            let stored = self.read_row(&id).await?;
            let now = self.now();
            return Ok(record_of(stored.as_ref(), now).apply(
                rules,
                now.saturating_mul(1_000),
                false,
            ));
        }
        let sql = &self.sql;
        with_pool!(self, pool => {
            async {
                // One transaction holding the row's lock (SQLite: the database's write lock,
                // taken at BEGIN IMMEDIATE; PostgreSQL: FOR UPDATE on the row, made first if
                // missing): concurrent callers queue instead of retrying. Dropped on error, a
                // transaction rolls back; none is left open.
                let mut tx = pool.begin_with(AssertSqlSafe(Arc::clone(&sql.begin_write))).await?;
                sqlx::query(AssertSqlSafe(Arc::clone(&sql.placeholder)))
                    .bind(id.as_slice())
                    .bind(full.as_slice())
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query(AssertSqlSafe(Arc::clone(&sql.lock_row)))
                    .bind(id.as_slice())
                    .fetch_one(&mut *tx)
                    .await?;
                let stored: Stored = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                let now = self.now();
                let now_us = now.saturating_mul(1_000);
                let mut record = record_of(Some(&stored), now);
                let verdicts = record.apply(rules, now_us, true);
                let ttl = record.ttl(now_us).unwrap_or(Duration::from_millis(1));
                sqlx::query(AssertSqlSafe(Arc::clone(&sql.set_row)))
                    .bind(id.as_slice())
                    .bind(full.as_slice())
                    .bind(record.encode())
                    .bind(expires_at(now, Some(ttl)))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(verdicts)
            }
            .await
        })
        .map_err(|e| crate::Error::database("rate", e))
    }

    /// A lone fixed window: a plain counter, as `Cache::hit` counts it.
    async fn fixed_window(
        &self,
        key: &str,
        rule: &RateRule,
        consume: bool,
    ) -> Result<Vec<RateVerdict>> {
        let (count, expires_in) = if consume {
            let hit = self.hit_row(key, rule.window, 1).await?;
            (hit.count, hit.expires_in)
        } else {
            let (_, id) = self.row(key);
            let now = self.now();
            match self.read_row(&id).await? {
                Some((None, Some(count), expires_at)) if expires_at.is_none_or(|at| at > now) => {
                    let left = expires_at.map_or(rule.window, |at| {
                        Duration::from_millis(at.saturating_sub(now).unsigned_abs())
                    });
                    (count, left)
                }
                _ => (0, rule.window),
            }
        };
        Ok(vec![RateVerdict::from_counter(
            rule,
            count.max(0).unsigned_abs(),
            expires_in,
            consume,
        )])
    }
}

/// The rate record a row holds at `now`: empty when the row is missing, expired or holds
/// something else.
fn record_of(stored: Option<&Stored>, now: i64) -> RateRecord {
    match stored {
        Some((Some(value), _, expires_at)) if expires_at.is_none_or(|at| at > now) => {
            RateRecord::decode(value)
        }
        _ => RateRecord::default(),
    }
}
