//! Rate limiting as one atomic store operation: [`Cache::rate`](crate::Cache::rate).
//!
//! A rate-limited key (a client, a user, an e-mail address) holds one **record**: the state of
//! every rule counted under it. [`Cache::rate`](crate::Cache::rate) applies a list of rules to
//! that record in one atomic step — one Redis script, one locked file, one shard lock — so
//! several limits on one request cost one round trip, and admissions stay exact however many
//! processes share the store. The algorithms are written once here, in [`RateRecord::apply`];
//! the Redis driver runs the same arithmetic in Lua (`drivers/redis/rate.lua`), on the
//! server's clock.

use std::time::Duration;

/// Which algorithm a [`RateRule`] counts with.
///
/// The three algorithms, for `limit` requests per `window`:
///
/// - **Fixed window**: a window starts at the key's first request; every request counts,
///   rejected ones included; when the window ends the count starts over.
/// - **Sliding window**: windows aligned on multiples of `window`; a request is admitted when
///   `previous × (share of the previous window's span still ahead) + current < limit`.
/// - **Token bucket** (GCRA): a bucket of `burst` tokens refilled at one token every
///   `window / limit`; a request takes a token or is rejected, and `reset_after` on a rejection
///   is the exact time until the next token. One number per key: the theoretical arrival time.
///
/// A request is admitted when **every** rule admits it. Fixed windows count every request;
/// sliding windows and buckets take their share only when the whole request is admitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RateKind {
    /// A window from the key's first request; every request counts.
    #[default]
    FixedWindow,
    /// A sliding-window estimate over aligned windows; rejected requests do not count.
    SlidingWindow,
    /// A token bucket (GCRA) holding at most `burst` tokens.
    TokenBucket {
        /// How many requests may pass at once from a full bucket (at least 1).
        burst: u64,
    },
}

/// One limit applied by [`Cache::rate`](crate::Cache::rate): `limit` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RateRule {
    /// Requests allowed per window (the refill rate of a token bucket).
    pub limit: u64,
    /// The window (at least 1 ms).
    pub window: Duration,
    /// The algorithm.
    pub kind: RateKind,
}

/// What one rule says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateVerdict {
    /// Whether this rule admits the request.
    pub allowed: bool,
    /// The requests allowed per window (a token bucket's burst).
    pub limit: u64,
    /// How many more requests this rule would admit right now.
    pub remaining: u64,
    /// Admitted: until the window ends (the bucket is full again). Rejected: until this rule
    /// admits a request again.
    pub reset_after: Duration,
}

/// The rule of a lone fixed window: every driver keeps it as a plain counter (what
/// [`Cache::hit`](crate::Cache::hit) counts), not as a record, so the limiter's cheapest case
/// is an `INCR` and its batches a single `INCRBY`.
pub(crate) fn lone_fixed_window(rules: &[RateRule]) -> Option<&RateRule> {
    match rules {
        [rule] if rule.kind == RateKind::FixedWindow => Some(rule),
        _ => None,
    }
}

/// One rule's state inside a record: three numbers and an expiry, all in microseconds where
/// they are times.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct State {
    /// Fixed: the window's start. Sliding: the current window's index. Bucket: the TAT.
    a: i64,
    /// Fixed: the count. Sliding: the current window's count.
    b: i64,
    /// Sliding: the previous window's count.
    c: i64,
    /// When this state stops mattering.
    expires: i64,
}

/// The state of every rule counted under one key: what the array and file drivers store, and
/// what a store outside this crate can keep to offer the same algorithms.
///
/// ```
/// use jtc_cache::{RateKind, RateRecord, RateRule};
/// use std::time::Duration;
///
/// let rule = RateRule { limit: 2, window: Duration::from_secs(60), kind: RateKind::FixedWindow };
/// let mut record = RateRecord::default();
/// let now_us = 1_700_000_000_000_000;
/// assert!(record.apply(&[rule], now_us, true)[0].allowed);
/// assert!(record.apply(&[rule], now_us, true)[0].allowed);
/// assert!(!record.apply(&[rule], now_us, true)[0].allowed);
/// let stored = record.encode();
/// assert_eq!(RateRecord::decode(&stored), record);
/// assert_eq!(record.ttl(now_us), Some(Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateRecord {
    fields: Vec<(String, State)>,
}

const MAGIC: &str = "jtc-rate/1";

impl RateRule {
    /// The record field of this rule: its algorithm, window and limit. A rule whose limit
    /// changes starts counting afresh.
    pub(crate) fn field(&self) -> String {
        let window = self.window_us();
        match self.kind {
            RateKind::FixedWindow => format!("f{window}/{}", self.limit),
            RateKind::SlidingWindow => format!("s{window}/{}", self.limit),
            RateKind::TokenBucket { burst } => format!("t{window}/{}/{burst}", self.limit),
        }
    }

    pub(crate) fn window_us(&self) -> i64 {
        i64::try_from(self.window.as_micros())
            .unwrap_or(i64::MAX / 4)
            .clamp(1_000, i64::MAX / 4)
    }

    fn limit(&self) -> i64 {
        i64::try_from(self.limit)
            .unwrap_or(i64::MAX / 4)
            .min(i64::MAX / 4)
    }
}

fn verdict(allowed: bool, limit: i64, remaining: i64, reset_after: i64) -> RateVerdict {
    RateVerdict {
        allowed,
        limit: limit.max(0).unsigned_abs(),
        remaining: remaining.max(0).unsigned_abs(),
        // Whole milliseconds, rounded up: the drivers' clocks count milliseconds, and a
        // client told to come back a little late is admitted, never one told too early.
        reset_after: Duration::from_millis(ceil_div(reset_after.max(0), 1_000).unsigned_abs()),
    }
}

/// One rule's verdict at `now`, and the state it leaves when it counts the request (`counted`)
/// and when it does not (`kept`).
struct Step {
    verdict: RateVerdict,
    kept: State,
    counted: State,
    /// Counts the request even when another rule rejects it (fixed windows).
    always: bool,
}

fn step(rule: &RateRule, old: Option<State>, now: i64, consume: bool) -> Step {
    let window = rule.window_us();
    let limit = rule.limit();
    match rule.kind {
        RateKind::FixedWindow => fixed_step(window, limit, old, now, consume),
        RateKind::SlidingWindow => sliding_step(window, limit, old, now, consume),
        RateKind::TokenBucket { burst } => {
            let burst = i64::try_from(burst.max(1)).unwrap_or(i64::MAX / 4);
            bucket_step(window, limit, burst, old, now, consume)
        }
    }
}

/// A fixed window from the key's first request; every request counts.
fn fixed_step(window: i64, limit: i64, old: Option<State>, now: i64, consume: bool) -> Step {
    let state = old
        .filter(|s| s.b > 0 && now < s.a.saturating_add(window))
        .unwrap_or(State {
            a: now,
            b: 0,
            c: 0,
            expires: now + window,
        });
    let reset = state.a + window - now;
    let count = state.b + i64::from(consume);
    let allowed = if consume {
        count <= limit
    } else {
        count < limit
    };
    let counted = State { b: count, ..state };
    Step {
        verdict: verdict(allowed, limit, limit - count, reset),
        kept: state,
        counted,
        always: true,
    }
}

/// A sliding-window estimate over aligned windows; only admitted requests count.
fn sliding_step(window: i64, limit: i64, old: Option<State>, now: i64, consume: bool) -> Step {
    let index = now / window;
    let state = match old {
        Some(s) if s.a == index => s,
        Some(s) if s.a + 1 == index => State {
            a: index,
            b: 0,
            c: s.b,
            expires: 0,
        },
        _ => State::default(),
    };
    let state = State {
        a: index,
        expires: (index + 2) * window,
        ..state
    };
    let elapsed = now - index * window;
    let left = window - elapsed;
    let carried = mul_div(state.c, left, window);
    let estimate = carried + state.b;
    let allowed = estimate < limit;
    let remaining = limit - estimate - i64::from(consume);
    // Rejected: the first elapsed time x at which carried + current < limit, where
    // carried = floor(p × (window − x) / window) < n  ⇔  x = window + 1 − ⌈n × window / p⌉.
    let first_fit = |n: i64, p: i64| window + 1 - ceil_div(n * window, p);
    let reset = if allowed || limit == 0 {
        left
    } else if state.b < limit {
        (first_fit(limit - state.b, state.c) - elapsed).max(1)
    } else {
        // Not in this window: in the next, this window's count is the one carried.
        left + first_fit(limit, state.b).max(0)
    };
    Step {
        verdict: verdict(allowed, limit, remaining, reset),
        kept: state,
        counted: State {
            b: state.b + 1,
            ..state
        },
        always: false,
    }
}

impl RateVerdict {
    /// A fixed window's verdict from its counter: `count` after this request when counting
    /// (`consume`), as found when looking; `expires_in` the counter's time left. How every
    /// store that keeps a lone fixed window as a plain counter answers.
    ///
    /// ```
    /// use jtc_cache::{RateKind, RateRule, RateVerdict};
    /// use std::time::Duration;
    /// let rule = RateRule { limit: 2, window: Duration::from_secs(60), kind: RateKind::FixedWindow };
    /// let third = RateVerdict::from_counter(&rule, 3, Duration::from_secs(9), true);
    /// assert!(!third.allowed);
    /// assert_eq!(third.remaining, 0);
    /// ```
    pub fn from_counter(rule: &RateRule, count: u64, expires_in: Duration, consume: bool) -> Self {
        let allowed = if consume {
            count <= rule.limit
        } else {
            count < rule.limit
        };
        Self {
            allowed,
            limit: rule.limit,
            remaining: rule.limit.saturating_sub(count),
            reset_after: expires_in,
        }
    }
}

impl RateRule {
    /// One token-bucket (GCRA) step at `now_us` for a bucket whose theoretical arrival time
    /// is `tat_us` (the past, or 0, for a full bucket): the verdict, and with `consume` the
    /// new arrival time when the request took a token. The arithmetic every store uses, for
    /// a store that keeps the arrival time itself (one compare-and-swap in memory).
    ///
    /// ```
    /// use jtc_cache::{RateKind, RateRule};
    /// use std::time::Duration;
    /// let rule = RateRule { limit: 1, window: Duration::from_secs(1), kind: RateKind::TokenBucket { burst: 1 } };
    /// let (first, tat) = rule.token_bucket(0, 5_000_000, true);
    /// assert!(first.allowed);
    /// let (second, none) = rule.token_bucket(tat.unwrap(), 5_000_000, true);
    /// assert!(!second.allowed && none.is_none());
    /// assert_eq!(second.reset_after, Duration::from_secs(1));
    /// ```
    pub fn token_bucket(
        &self,
        tat_us: i64,
        now_us: i64,
        consume: bool,
    ) -> (RateVerdict, Option<i64>) {
        let burst = match self.kind {
            RateKind::TokenBucket { burst } => burst,
            _ => self.limit,
        };
        let burst = i64::try_from(burst.max(1)).unwrap_or(i64::MAX / 4);
        gcra(
            self.window_us(),
            self.limit(),
            burst,
            tat_us,
            now_us,
            consume,
        )
    }
}

/// GCRA: the verdict, and the new arrival time when a token was taken.
fn gcra(
    window: i64,
    limit: i64,
    burst: i64,
    tat: i64,
    now: i64,
    consume: bool,
) -> (RateVerdict, Option<i64>) {
    let interval = (window / limit.max(1)).max(1);
    let capacity = interval.saturating_mul(burst);
    let tat = tat.max(now);
    let next = tat + interval;
    if !consume {
        let left = (capacity - (tat - now)) / interval;
        let wait = if left > 0 {
            tat - now
        } else {
            next - now - capacity
        };
        return (verdict(left > 0, burst, left, wait), None);
    }
    if next - now <= capacity {
        let remaining = (capacity - (next - now)) / interval;
        (verdict(true, burst, remaining, next - now), Some(next))
    } else {
        (verdict(false, burst, 0, next - now - capacity), None)
    }
}

/// A token bucket as GCRA: one theoretical arrival time per key.
fn bucket_step(
    window: i64,
    limit: i64,
    burst: i64,
    old: Option<State>,
    now: i64,
    consume: bool,
) -> Step {
    let tat = old.map_or(now, |s| s.a.max(now));
    // `b` only counts the tokens taken, for `weight`.
    let state = State {
        a: tat,
        b: old.map_or(0, |s| s.b),
        c: 0,
        expires: tat,
    };
    let (verdict, taken) = gcra(window, limit, burst, tat, now, consume);
    // Counted only when every rule admits; a look or a rejection leaves the bucket as it was.
    let next = taken.unwrap_or(tat + (window / limit.max(1)).max(1));
    Step {
        verdict,
        kept: state,
        counted: State {
            a: next,
            b: state.b.saturating_add(1),
            c: 0,
            expires: next,
        },
        always: false,
    }
}

/// `a / b` rounded up (`a ≥ 0`, `b > 0`).
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// `a × b / c` without overflow, rounded down (`c > 0`).
fn mul_div(a: i64, b: i64, c: i64) -> i64 {
    i64::try_from(i128::from(a) * i128::from(b) / i128::from(c)).unwrap_or(i64::MAX)
}

impl RateRecord {
    /// Applies `rules` at `now_us`; with `consume`, counts the request (see the module docs).
    /// Returns one verdict per rule, in order.
    pub fn apply(&mut self, rules: &[RateRule], now_us: i64, consume: bool) -> Vec<RateVerdict> {
        self.fields.retain(|(_, state)| state.expires > now_us);
        let steps: Vec<(String, Step)> = rules
            .iter()
            .map(|rule| {
                let field = rule.field();
                let old = self.state(&field);
                let step = step(rule, old, now_us, consume);
                (field, step)
            })
            .collect();
        let admitted = steps.iter().all(|(_, s)| s.verdict.allowed);
        if consume {
            for (field, step) in &steps {
                let state = if admitted || step.always {
                    step.counted
                } else {
                    step.kept
                };
                self.set(field, state);
            }
        }
        steps.into_iter().map(|(_, s)| s.verdict).collect()
    }

    fn state(&self, field: &str) -> Option<State> {
        self.fields
            .iter()
            .find(|(name, _)| name == field)
            .map(|(_, state)| *state)
    }

    fn set(&mut self, field: &str, state: State) {
        match self.fields.iter_mut().find(|(name, _)| name == field) {
            Some((_, slot)) => *slot = state,
            None => self.fields.push((field.to_owned(), state)),
        }
    }

    /// How long the record must be kept after `now_us`: until its last state stops mattering.
    /// `None` when nothing in it matters any more.
    pub fn ttl(&self, now_us: i64) -> Option<Duration> {
        let last = self.fields.iter().map(|(_, s)| s.expires).max()?;
        let left = last - now_us;
        (left > 0).then(|| Duration::from_micros(left.unsigned_abs()).max(Duration::from_millis(1)))
    }

    /// How many requests the record has counted in the states that still matter: a store
    /// that must drop records to stay bounded drops the lightest first.
    pub fn weight(&self) -> u64 {
        self.fields
            .iter()
            .map(|(_, s)| s.b.max(0).unsigned_abs())
            .fold(0, u64::saturating_add)
    }

    /// The stored form: `jtc-rate/1` and one `field=a,b,c,expires` per line.
    pub fn encode(&self) -> Vec<u8> {
        let mut text = String::from(MAGIC);
        for (field, s) in &self.fields {
            text.push_str(&format!("\n{field}={},{},{},{}", s.a, s.b, s.c, s.expires));
        }
        text.into_bytes()
    }

    /// A stored record; anything else (a plain value, a damaged record) reads as empty, so a
    /// key that held something else starts counting afresh instead of failing every request.
    pub fn decode(bytes: &[u8]) -> Self {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Self::default();
        };
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Self::default();
        }
        let fields = lines
            .filter_map(|line| {
                let (field, numbers) = line.split_once('=')?;
                let mut parts = numbers.split(',').map(str::parse::<i64>);
                let mut next = || parts.next()?.ok();
                let state = State {
                    a: next()?,
                    b: next()?,
                    c: next()?,
                    expires: next()?,
                };
                Some((field.to_owned(), state))
            })
            .collect();
        Self { fields }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn rule(limit: u64, secs: u64, kind: RateKind) -> RateRule {
        RateRule {
            limit,
            window: Duration::from_secs(secs),
            kind,
        }
    }

    #[test]
    fn fixed_window_counts_every_request_and_starts_over() {
        let mut record = RateRecord::default();
        let r = [rule(2, 60, RateKind::FixedWindow)];
        let start = 1_000 * S;
        assert_eq!(record.apply(&r, start, true)[0].remaining, 1);
        assert!(record.apply(&r, start, true)[0].allowed);
        let third = record.apply(&r, start + 58 * S, true)[0];
        assert!(!third.allowed);
        assert_eq!(third.reset_after, Duration::from_secs(2));
        assert!(record.apply(&r, start + 60 * S, true)[0].allowed);
    }

    #[test]
    fn check_counts_nothing() {
        let mut record = RateRecord::default();
        let r = [rule(1, 60, RateKind::FixedWindow)];
        for _ in 0..3 {
            let v = record.apply(&r, S, false)[0];
            assert!(v.allowed);
            assert_eq!(v.remaining, 1);
        }
        assert!(record.apply(&r, S, true)[0].allowed);
        let v = record.apply(&r, S, false)[0];
        assert!(!v.allowed);
        assert_eq!(v.remaining, 0);
    }

    #[test]
    fn token_bucket_bursts_then_refills_one_token_per_interval() {
        let mut record = RateRecord::default();
        let r = [rule(60, 60, RateKind::TokenBucket { burst: 3 })];
        let t = 500 * S;
        let admitted: Vec<u64> = (0..4)
            .map(|_| record.apply(&r, t, true)[0])
            .filter(|v| v.allowed)
            .map(|v| v.remaining)
            .collect();
        assert_eq!(admitted, [2, 1, 0]);
        let rejected = record.apply(&r, t, true)[0];
        assert!(!rejected.allowed);
        assert_eq!(
            rejected.reset_after,
            Duration::from_secs(1),
            "one token a second"
        );
        assert!(!record.apply(&r, t + S - 1, true)[0].allowed);
        assert!(record.apply(&r, t + S, true)[0].allowed);
    }

    #[test]
    fn every_rule_must_admit_and_only_fixed_windows_count_a_rejection() {
        let mut record = RateRecord::default();
        let rules = [
            rule(2, 1, RateKind::FixedWindow),
            rule(3, 60, RateKind::SlidingWindow),
        ];
        let t = 120 * S;
        assert!(record.apply(&rules, t, true).iter().all(|v| v.allowed));
        assert!(record.apply(&rules, t, true).iter().all(|v| v.allowed));
        let third = record.apply(&rules, t, true);
        assert!(!third[0].allowed && third[1].allowed);
        // The sliding window did not count the rejected request: one more fits a second later.
        let later = record.apply(&rules, t + S, true);
        assert!(later.iter().all(|v| v.allowed), "{later:?}");
        assert!(!record.apply(&rules, t + S, true)[1].allowed);
    }

    #[test]
    fn records_round_trip_and_damaged_ones_read_as_empty() {
        let mut record = RateRecord::default();
        record.apply(&[rule(5, 60, RateKind::SlidingWindow)], 99 * S, true);
        let bytes = record.encode();
        assert_eq!(RateRecord::decode(&bytes), record);
        assert_eq!(RateRecord::decode(b"42"), RateRecord::default());
        assert_eq!(
            RateRecord::decode(b"jtc-rate/1\nf=1,2"),
            RateRecord::default()
        );
        assert_eq!(RateRecord::decode(&[0xff, 0xfe]), RateRecord::default());
    }

    #[test]
    fn the_record_lives_as_long_as_its_longest_state() {
        let mut record = RateRecord::default();
        let t = 7 * S;
        record.apply(&[rule(5, 10, RateKind::FixedWindow)], t, true);
        record.apply(&[rule(5, 60, RateKind::FixedWindow)], t, true);
        assert_eq!(record.ttl(t), Some(Duration::from_secs(60)));
        assert_eq!(record.ttl(t + 60 * S), None);
    }
}
