//! `Cache::rate` on Redis. A lone fixed window — the common case — is a counter: one pipeline
//! of plain commands (`INCR`, `PEXPIRE … NX`, `PTTL`), the cheapest exact form Redis has.
//! Anything else runs `rate.lua`, the arithmetic of `RateRecord::apply` on the server's clock,
//! over one string per key holding the record. `rate_by` counts several requests in the same
//! one step: `INCRBY n` on a counter, or the script applying the rules once per request.

use std::time::Duration;

use crate::{RateKind, RateRule, RateVerdict, Result, clock::duration_ms, rate::lone_fixed_window};

use super::{Inner, Live};

/// The record script.
pub(super) const SCRIPT: &str = include_str!("rate.lua");
/// The most requests one run of the record script counts: Redis took ~3.5 ms for a run of
/// 1,000 requests against two rules (Redis 7.0, machine E), so a run of 250 stays under a
/// millisecond. The rate limiter's batches are far smaller (tens of requests).
const SCRIPT_BATCH: u64 = 250;

impl Inner {
    pub(super) async fn rate(
        &self,
        key: &str,
        rules: &[RateRule],
        consume: bool,
    ) -> Result<Vec<RateVerdict>> {
        let times = u64::from(consume);
        if let Some(rule) = lone_fixed_window(rules) {
            return self.fixed_window(key, rule, times).await;
        }
        self.record(key, rules, times).await
    }

    /// `by` requests counted one after the other: each one's verdicts. A counter takes them
    /// in one `INCRBY`; the record script takes at most [`SCRIPT_BATCH`] per run, so that no
    /// call keeps Redis busy for long (every run is still atomic, and the requests stay in
    /// order).
    pub(super) async fn rate_by(
        &self,
        key: &str,
        rules: &[RateRule],
        by: u64,
    ) -> Result<Vec<Vec<RateVerdict>>> {
        if by == 0 {
            return Ok(vec![self.rate(key, rules, false).await?]);
        }
        if let Some(rule) = lone_fixed_window(rules) {
            let verdicts = self.fixed_window(key, rule, by).await?;
            return Ok(verdicts.into_iter().map(|v| vec![v]).collect());
        }
        let mut verdicts = Vec::with_capacity(usize::try_from(by).unwrap_or(0).min(1 << 16));
        let mut left = by;
        while left > 0 {
            let run = left.min(SCRIPT_BATCH);
            let flat = self.record(key, rules, run).await?;
            verdicts.extend(flat.chunks(rules.len().max(1)).map(<[RateVerdict]>::to_vec));
            left -= run;
        }
        Ok(verdicts)
    }

    /// A lone fixed window as a counter: the count, then the window's end, in one round trip;
    /// `times` requests counted (`INCRBY`), or none (a look). `PEXPIRE … NX` gives a new
    /// counter its window and never moves an existing one's. One verdict per request counted
    /// (they got the counts `count − times + 1 ..= count`), or the look's.
    async fn fixed_window(
        &self,
        key: &str,
        rule: &RateRule,
        times: u64,
    ) -> Result<Vec<RateVerdict>> {
        let consume = times > 0;
        let written = consume.then_some(key.as_bytes());
        self.forget_near(written);
        let key = self.key(key);
        let window_ms = duration_ms(rule.window).max(1);
        let counted: Result<(i64, i64)> = self
            .within("rate", |mut connection| async move {
                let mut pipe = redis::pipe();
                if consume {
                    match times {
                        1 => pipe.cmd("INCR").arg(key),
                        _ => pipe.cmd("INCRBY").arg(key).arg(times),
                    };
                    pipe.cmd("PEXPIRE")
                        .arg(key)
                        .arg(window_ms)
                        .arg("NX")
                        .ignore();
                } else {
                    pipe.cmd("GET").arg(key);
                }
                pipe.cmd("PTTL").arg(key);
                match query(&pipe, &mut connection).await {
                    Err(error) if holds_something_else(&error) => {
                        // The key held another rule set's record: this one starts afresh.
                        redis::cmd("DEL")
                            .arg(key)
                            .query_async::<()>(&mut connection)
                            .await?;
                        query(&pipe, &mut connection).await
                    }
                    other => other,
                }
            })
            .await;
        self.forget_near(written);
        let (count, ttl_ms) = counted?;
        let count = count.max(0).unsigned_abs();
        let expires_in = match u64::try_from(ttl_ms) {
            Ok(ms) if count > 0 => Duration::from_millis(ms),
            _ => rule.window,
        };
        if !consume {
            return Ok(vec![RateVerdict::from_counter(
                rule, count, expires_in, false,
            )]);
        }
        let first = count.saturating_sub(times) + 1;
        Ok((first..=count.max(first))
            .map(|count| RateVerdict::from_counter(rule, count, expires_in, true))
            .collect())
    }

    /// Any rules, through the record script: `times` requests counted one after the other
    /// (0: a look); the verdicts one request after the other, one per rule each.
    async fn record(&self, key: &str, rules: &[RateRule], times: u64) -> Result<Vec<RateVerdict>> {
        let written = (times > 0).then_some(key.as_bytes());
        self.forget_near(written);
        let key = self.key(key);
        let flat: Result<Vec<u64>> = self
            .within("rate", |mut connection| async move {
                let mut invocation = self.rate.key(key);
                invocation.arg(times);
                for rule in rules {
                    let (kind, burst) = script_code(rule.kind);
                    invocation
                        .arg(rule.field())
                        .arg(kind)
                        .arg(rule.limit.min(1 << 52))
                        .arg(rule.window_us())
                        .arg(burst.min(1 << 52));
                }
                invocation.invoke_async(&mut connection).await
            })
            .await;
        self.forget_near(written);
        Ok(flat?
            .chunks_exact(4)
            .map(|v| RateVerdict {
                allowed: v[0] == 1,
                limit: v[1],
                remaining: v[2],
                reset_after: Duration::from_micros(v[3]),
            })
            .collect())
    }
}

/// A counter's pipeline: the count (a missing or non-integer value counts as 0) and its TTL.
async fn query(pipe: &redis::Pipeline, connection: &mut Live) -> redis::RedisResult<(i64, i64)> {
    let (count, ttl): (Option<String>, i64) = pipe.query_async(connection).await?;
    Ok((count.and_then(|c| c.parse().ok()).unwrap_or(0), ttl))
}

/// Whether Redis refused the counter because the key holds something else (another rule
/// set's record, a value of another type): not a failure of the server or the connection.
fn holds_something_else(error: &redis::RedisError) -> bool {
    let text = error.to_string();
    error.code() == Some("WRONGTYPE")
        || text.contains("WRONGTYPE")
        || text.contains("not an integer")
}

/// The script's number for an algorithm, and the bucket's burst.
fn script_code(kind: RateKind) -> (u8, u64) {
    match kind {
        RateKind::SlidingWindow => (1, 0),
        RateKind::TokenBucket { burst } => (2, burst.max(1)),
        _ => (0, 0),
    }
}
