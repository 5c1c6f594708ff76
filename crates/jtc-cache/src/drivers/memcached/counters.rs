//! The memcached driver's counters: `increment` and `hit` (one native `ma` command in the
//! common case) and `Cache::rate` (a compare-and-set loop over the rate record).
//!
//! memcached's `ma` does not create keys: a missing counter is created with an `add`, and an
//! `add` that loses the race goes back to `ma`, so concurrent first increments never lose a
//! count. Counters `ma` cannot serve exactly (negative, beyond 2^62, with a TTL, or a window
//! counter reached by `increment`) are read and written back with their CAS value. See
//! `item.rs` for the formats.

use std::time::Duration;

use bytes::Bytes;

use super::{
    At, MemcachedDriver,
    entries::{Cas, Read},
    item::{self, Item, MAX_WINDOW, PLAIN_LIMIT, WINDOW, WINDOW_COUNT_LIMIT},
    wire::{self, Status},
};
use crate::{
    ErrorKind, Hit, RateRecord, RateRule, RateVerdict, Result, contention::Backoff,
    rate::lone_fixed_window,
};

/// What `hit` does with a value that is not a counter.
#[derive(Debug, Clone, Copy)]
enum Stale {
    /// Fails with `NotAnInteger`, as `Cache::hit` does on every driver.
    Refuse,
    /// Starts a new window over it (`Cache::rate` changing a key's rules).
    Replace,
}

/// What one `ma` found.
enum Added {
    /// The number after adding, and the item's CAS value.
    Number(u64, u64),
    /// No item.
    Missing,
    /// An item that is not a number (a framed value).
    NotANumber,
}

impl MemcachedDriver {
    pub(super) async fn increment_counter(&self, key: &str, by: i64) -> Result<i64> {
        let at = self.route(key).await?;
        // `ma` serves steps of 0 up to the plain range; anything else is done exactly below.
        let delta = u64::try_from(by).ok().filter(|&d| d < PLAIN_LIMIT);
        let mut backoff = Backoff::new("memcached");
        while let Some(delta) = delta {
            match add_to(&at, delta, "increment").await? {
                Added::Number(n, _) if n < PLAIN_LIMIT => return Ok(n.cast_signed()),
                Added::Number(..) => {
                    // Out of the plain range: take the step back, then do it exactly.
                    subtract(&at, delta, "increment").await?;
                    break;
                }
                Added::Missing => {
                    let value = Bytes::from(by.to_string());
                    let absent = Some(Cas::Absent);
                    if self.store(&at, &value, None, absent, "increment").await? {
                        return Ok(by);
                    }
                    backoff.wait().await?; // someone created it first: add to theirs
                }
                Added::NotANumber => break,
            }
        }
        self.increment_slowly(&at, by).await
    }

    /// `increment` by read and compare-and-set.
    async fn increment_slowly(&self, at: &At<'_>, by: i64) -> Result<i64> {
        let _turn = self.turns.turn(&at.wire).await;
        let mut backoff = Backoff::new("memcached");
        loop {
            let read = self.read(at, "increment").await?;
            let (new, deadline, cas) = match read {
                None => (by, None, Cas::Absent),
                Some(Read {
                    item: Item::Dead,
                    cas,
                }) => (by, None, Cas::Is(cas)),
                Some(Read {
                    item:
                        Item::Live {
                            value, deadline, ..
                        },
                    cas,
                }) => {
                    let new = integer(&value, at.key)?
                        .checked_add(by)
                        .ok_or_else(|| overflow(at.key))?;
                    (new, deadline, Cas::Is(cas))
                }
            };
            let value = Bytes::from(new.to_string());
            if self
                .store(at, &value, deadline, Some(cas), "increment")
                .await?
            {
                return Ok(new);
            }
            backoff.wait().await?;
        }
    }

    pub(super) async fn hit_counter(&self, key: &str, window: Duration, by: u64) -> Result<Hit> {
        self.hit_window(key, window, by, Stale::Refuse).await
    }

    /// `hit`; with `Stale::Replace`, a value that is not a counter (the record of other rate
    /// rules on the same key) is replaced by a new window instead of refused.
    async fn hit_window(&self, key: &str, window: Duration, by: u64, stale: Stale) -> Result<Hit> {
        if window > MAX_WINDOW {
            return Err(ErrorKind::Unsupported {
                operation: "hit with a window over 49 days",
                driver: "memcached",
            }
            .into());
        }
        let window = window.max(Duration::from_millis(1));
        let by = by.clamp(1, WINDOW_COUNT_LIMIT);
        let at = self.route(key).await?;
        let mut backoff = Backoff::new("memcached");
        loop {
            match add_to(&at, by, "hit").await? {
                Added::Number(n, cas) => {
                    let now = self.now();
                    let Some((deadline, count)) = item::unpack(n, now) else {
                        // A plain counter: take the step back and give it a window.
                        subtract(&at, by, "hit").await?;
                        return self.hit_slowly(&at, window, by, stale).await;
                    };
                    if deadline > now {
                        if count > WINDOW_COUNT_LIMIT {
                            subtract(&at, by, "hit").await?; // saturated
                        }
                        return Ok(Hit {
                            count: count.min(WINDOW_COUNT_LIMIT).cast_signed(),
                            expires_in: Duration::from_millis(deadline - now),
                        });
                    }
                    // The window is over: start the next one, unless someone changed the
                    // counter since this hit (then their change decides; hit again).
                    if self
                        .store_window(&at, now, window, by, Cas::Is(cas))
                        .await?
                    {
                        return Ok(Hit {
                            count: by.cast_signed(),
                            expires_in: window,
                        });
                    }
                }
                Added::Missing => {
                    let now = self.now();
                    if self.store_window(&at, now, window, by, Cas::Absent).await? {
                        return Ok(Hit {
                            count: by.cast_signed(),
                            expires_in: window,
                        });
                    }
                }
                Added::NotANumber => {
                    return self.hit_slowly(&at, window, by, stale).await;
                }
            }
            backoff.wait().await?;
        }
    }

    /// `hit` by read and compare-and-set, for counters `ma` cannot serve as a window.
    async fn hit_slowly(
        &self,
        at: &At<'_>,
        window: Duration,
        by: u64,
        stale: Stale,
    ) -> Result<Hit> {
        let _turn = self.turns.turn(&at.wire).await;
        let mut backoff = Backoff::new("memcached");
        loop {
            let now = self.now();
            let fresh = item::deadline(now, Some(window)).unwrap_or(now);
            let (count, deadline, cas) = match self.read(at, "hit").await? {
                None => (0, fresh, Cas::Absent),
                Some(Read {
                    item: Item::Dead,
                    cas,
                }) => (0, fresh, Cas::Is(cas)),
                Some(Read {
                    item:
                        Item::Live {
                            value, deadline, ..
                        },
                    cas,
                }) => match (integer(&value, at.key), stale) {
                    (Ok(count), _) => (count, deadline.unwrap_or(fresh), Cas::Is(cas)),
                    (Err(_), Stale::Replace) => (0, fresh, Cas::Is(cas)),
                    (Err(err), Stale::Refuse) => return Err(err),
                },
            };
            let count = count
                .checked_add(by.cast_signed())
                .ok_or_else(|| overflow(at.key))?;
            let stored = match u64::try_from(count) {
                Ok(n)
                    if n <= WINDOW_COUNT_LIMIT
                        && deadline - now <= MAX_WINDOW.as_millis() as u64 =>
                {
                    self.store_packed(at, item::pack(deadline, n), deadline, cas)
                        .await?
                }
                _ => {
                    let value = Bytes::from(count.to_string());
                    self.store(at, &value, Some(deadline), Some(cas), "hit")
                        .await?
                }
            };
            if stored {
                return Ok(Hit {
                    count,
                    expires_in: Duration::from_millis(deadline.saturating_sub(now)),
                });
            }
            backoff.wait().await?;
        }
    }

    /// Writes a new window of `window` from `now` holding `count`.
    async fn store_window(
        &self,
        at: &At<'_>,
        now: u64,
        window: Duration,
        count: u64,
        cas: Cas,
    ) -> Result<bool> {
        let deadline = item::deadline(now, Some(window)).unwrap_or(now);
        self.store_packed(at, item::pack(deadline, count), deadline, cas)
            .await
    }

    async fn store_packed(
        &self,
        at: &At<'_>,
        packed: u64,
        deadline: u64,
        cas: Cas,
    ) -> Result<bool> {
        let digits = packed.to_string();
        self.store_raw(
            at,
            WINDOW,
            &[digits.as_bytes()],
            Some(deadline),
            Some(cas),
            "hit",
        )
        .await
    }

    pub(super) async fn rate_record(
        &self,
        key: &str,
        rules: &[RateRule],
        consume: bool,
    ) -> Result<Vec<RateVerdict>> {
        if let Some(rule) = lone_fixed_window(rules) {
            return self.fixed_window(key, rule, consume).await;
        }
        let at = self.route(key).await?;
        let _turn = self.turns.turn(&at.wire).await;
        let mut backoff = Backoff::new("memcached");
        loop {
            let read = self.read(&at, "rate").await?;
            let now = self.now();
            let (mut record, cas) = match read {
                None => (RateRecord::default(), Cas::Absent),
                Some(Read {
                    item: Item::Live { value, .. },
                    cas,
                }) => (RateRecord::decode(&value), Cas::Is(cas)),
                Some(Read {
                    item: Item::Dead,
                    cas,
                }) => (RateRecord::default(), Cas::Is(cas)),
            };
            let now_us = i64::try_from(now.saturating_mul(1_000)).unwrap_or(i64::MAX);
            let verdicts = record.apply(rules, now_us, consume);
            if !consume {
                return Ok(verdicts);
            }
            let ttl = record.ttl(now_us).unwrap_or(Duration::from_millis(1));
            let value = Bytes::from(record.encode());
            let deadline = item::deadline(now, Some(ttl));
            if self.store(&at, &value, deadline, Some(cas), "rate").await? {
                return Ok(verdicts);
            }
            backoff.wait().await?;
        }
    }

    /// A lone fixed window: a window counter, as `Cache::hit` counts it.
    async fn fixed_window(
        &self,
        key: &str,
        rule: &RateRule,
        consume: bool,
    ) -> Result<Vec<RateVerdict>> {
        let (count, expires_in) = if consume {
            let hit = self.hit_window(key, rule.window, 1, Stale::Replace).await?;
            (hit.count, hit.expires_in)
        } else {
            let at = self.route(key).await?;
            let now = self.now();
            match self.read(&at, "rate").await? {
                Some(Read {
                    item:
                        Item::Live {
                            value, deadline, ..
                        },
                    ..
                }) => (
                    item::parse_u64(&value).map_or(0, u64::cast_signed),
                    deadline.map_or(rule.window, |d| {
                        Duration::from_millis(d.saturating_sub(now))
                    }),
                ),
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

/// `ma` adding `delta` to the number at `wire`.
async fn add_to(at: &At<'_>, delta: u64, operation: &'static str) -> Result<Added> {
    let mut request = Vec::with_capacity(at.wire.len() + 32);
    wire::arithmetic(&mut request, &at.wire, delta, true, "v c");
    let reply = at.server.exchange(operation, &request, 1).await?.pop();
    match reply {
        Some(Ok(reply)) => match (
            reply.status,
            reply.value.as_deref().and_then(item::parse_u64),
        ) {
            (Status::Value, Some(n)) => Ok(Added::Number(n, reply.cas.unwrap_or(0))),
            (Status::NotFound, _) => Ok(Added::Missing),
            _ => Err(at
                .server
                .refused(operation, &wire::Refusal(format!("{:?}", reply.status)))),
        },
        Some(Err(refusal)) if refusal.is_non_numeric() => Ok(Added::NotANumber),
        Some(Err(refusal)) => Err(at.server.refused(operation, &refusal)),
        None => Ok(Added::Missing),
    }
}

/// `ma` taking `delta` back from the number at `wire` (never below what was there before the
/// step it undoes, so memcached's clamp at zero never applies).
async fn subtract(at: &At<'_>, delta: u64, operation: &'static str) -> Result<()> {
    let mut request = Vec::with_capacity(at.wire.len() + 32);
    wire::arithmetic(&mut request, &at.wire, delta, false, "");
    at.server.exchange(operation, &request, 1).await.map(drop)
}

fn integer(value: &[u8], key: &str) -> Result<i64> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| {
            ErrorKind::NotAnInteger {
                key: key.to_owned(),
            }
            .into()
        })
}

fn overflow(key: &str) -> crate::Error {
    ErrorKind::Overflow {
        key: key.to_owned(),
    }
    .into()
}
