//! `Cache::rate` on the array driver: a lone fixed window on a plain counter, anything else a
//! `RateRecord` in the entry, each under the shard's lock.

use std::time::Duration;

use bytes::Bytes;

use super::{
    ArrayDriver,
    entry::{Entry, Stored},
};
use crate::{RateRecord, RateRule, RateVerdict, clock::duration_ms, rate::lone_fixed_window};

impl ArrayDriver {
    /// Applies rate rules to the record at `key` under the shard's lock.
    pub(super) fn rate_now(
        &self,
        key: &str,
        rules: &[RateRule],
        consume: bool,
    ) -> Vec<RateVerdict> {
        if let Some(rule) = lone_fixed_window(rules) {
            return vec![self.counter_now(key, rule, consume)];
        }
        let now = self.now();
        let now_us = i64::try_from(now).unwrap_or(i64::MAX / 4_000) * 1_000;
        self.with_counter(key, |entry| {
            let mut record = if entry.is_live(now) {
                RateRecord::decode(&entry.value.to_bytes())
            } else {
                RateRecord::default()
            };
            let verdicts = record.apply(rules, now_us, consume);
            if consume {
                let ttl = record.ttl(now_us).unwrap_or(Duration::from_millis(1));
                *entry = Entry {
                    value: Stored::Bytes(Bytes::from(record.encode())),
                    expires_at: Some(now + duration_ms(ttl)),
                };
            }
            verdicts
        })
    }

    /// A lone fixed window on its counter (a value that is not one starts afresh).
    fn counter_now(&self, key: &str, rule: &RateRule, consume: bool) -> RateVerdict {
        let now = self.now();
        let window = duration_ms(rule.window).max(1);
        self.with_counter(key, |entry| {
            let found = entry
                .is_live(now)
                .then(|| entry.value.incremented(key, 0).ok())
                .flatten()
                .filter(|count| *count > 0);
            let expires_at = match found {
                Some(_) => entry.expires_at.unwrap_or(now + window),
                None => now + window,
            };
            let mut count = found.unwrap_or(0);
            if consume {
                count = count.saturating_add(1);
                *entry = Entry {
                    value: Stored::Integer(count),
                    expires_at: Some(expires_at),
                };
            }
            let expires_in = Duration::from_millis(expires_at - now);
            RateVerdict::from_counter(rule, count.unsigned_abs(), expires_in, consume)
        })
    }
}
