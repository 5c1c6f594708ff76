//! `Cache::rate` on Redis. A lone fixed window — the common case — is a counter: one pipeline
//! of plain commands (`INCR`, `PEXPIRE … NX`, `PTTL`), the cheapest exact form Redis has.
//! Anything else runs `rate.lua`, the arithmetic of `RateRecord::apply` on the server's clock,
//! over one string per key holding the record.

use std::time::Duration;

use crate::{RateKind, RateRule, RateVerdict, Result, clock::duration_ms, rate::lone_fixed_window};

use super::{Inner, Live};

/// The record script.
pub(super) const SCRIPT: &str = include_str!("rate.lua");

impl Inner {
    pub(super) async fn rate(
        &self,
        key: &str,
        rules: &[RateRule],
        consume: bool,
    ) -> Result<Vec<RateVerdict>> {
        if let Some(rule) = lone_fixed_window(rules) {
            return self.fixed_window(key, rule, consume).await.map(|v| vec![v]);
        }
        self.record(key, rules, consume).await
    }

    /// A lone fixed window as a counter: the count, then the window's end, in one round trip.
    /// `PEXPIRE … NX` gives a new counter its window and never moves an existing one's.
    async fn fixed_window(&self, key: &str, rule: &RateRule, consume: bool) -> Result<RateVerdict> {
        let written = consume.then_some(key.as_bytes());
        self.forget_near(written);
        let key = self.key(key);
        let window_ms = duration_ms(rule.window).max(1);
        let counted: Result<(i64, i64)> = self
            .within("rate", |mut connection| async move {
                let mut pipe = redis::pipe();
                if consume {
                    pipe.cmd("INCR").arg(&key);
                    pipe.cmd("PEXPIRE")
                        .arg(&key)
                        .arg(window_ms)
                        .arg("NX")
                        .ignore();
                } else {
                    pipe.cmd("GET").arg(&key);
                }
                pipe.cmd("PTTL").arg(&key);
                match query(&pipe, &mut connection).await {
                    Err(error) if holds_something_else(&error) => {
                        // The key held another rule set's record: this one starts afresh.
                        redis::cmd("DEL")
                            .arg(&key)
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
        Ok(RateVerdict::from_counter(rule, count, expires_in, consume))
    }

    /// Any rules, through the record script.
    async fn record(
        &self,
        key: &str,
        rules: &[RateRule],
        consume: bool,
    ) -> Result<Vec<RateVerdict>> {
        let written = consume.then_some(key.as_bytes());
        self.forget_near(written);
        let key = self.key(key);
        let flat: Result<Vec<u64>> = self
            .within("rate", |mut connection| async move {
                let mut invocation = self.rate.key(key);
                invocation.arg(u8::from(consume));
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
