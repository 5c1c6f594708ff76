//! The database driver's counters: `increment` and `hit` (one statement each) and
//! `Cache::rate` (a compare-and-set loop over one row).

use std::{sync::Arc, time::Duration};

use sqlx::{AssertSqlSafe, Row};

use super::{Backend, DatabaseDriver, expires_at, with_pool};
use crate::{ErrorKind, Hit, RateRecord, RateRule, RateVerdict, Result, rate::lone_fixed_window};

/// How many times `rate` re-reads a row that changed under it before giving up. Each retry
/// means another caller's update went in: progress is never lost, only this call waits.
const RATE_ATTEMPTS: usize = 1_000;

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
        for _ in 0..RATE_ATTEMPTS {
            let now = self.now();
            let now_us = now.saturating_mul(1_000);
            let stored = self.read_row(&id).await?;
            let live = stored
                .as_ref()
                .filter(|(_, _, expires_at)| expires_at.is_none_or(|at| at > now));
            let mut record = match live {
                Some((Some(value), _, _)) => RateRecord::decode(value),
                _ => RateRecord::default(),
            };
            let verdicts = record.apply(rules, now_us, consume);
            if !consume {
                return Ok(verdicts);
            }
            let ttl = record.ttl(now_us).unwrap_or(Duration::from_millis(1));
            let expires_at = expires_at(now, Some(ttl));
            // The counter column holds the record's version, so that a write that read an
            // older version never goes in.
            let version = stored
                .as_ref()
                .and_then(|(_, counter, _)| *counter)
                .unwrap_or(0)
                .wrapping_add(1);
            let value = record.encode();
            let written = match &stored {
                None => with_pool!(self, pool => {
                    sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.insert_new)))
                        .bind(id.clone()).bind(full.clone()).bind(value).bind(version)
                        .bind(expires_at).execute(pool).await
                        .map(|done| done.rows_affected())
                }),
                Some((old_value, old_counter, old_expiry)) => with_pool!(self, pool => {
                    sqlx::query(AssertSqlSafe(Arc::clone(&self.sql.swap)))
                        .bind(id.clone()).bind(full.clone()).bind(value).bind(version)
                        .bind(expires_at).bind(old_value.clone()).bind(*old_counter)
                        .bind(*old_expiry).execute(pool).await
                        .map(|done| done.rows_affected())
                }),
            }
            .map_err(|e| crate::Error::database("rate", e))?;
            if written == 1 {
                return Ok(verdicts);
            }
        }
        Err(ErrorKind::Timeout {
            operation: "rate",
            after: Duration::ZERO,
        }
        .into())
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
