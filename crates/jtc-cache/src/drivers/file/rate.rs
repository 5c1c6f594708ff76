//! `Cache::rate` on the file driver: a lone fixed window on a plain counter file, anything
//! else a `RateRecord` in the entry, each under the entry's lock (shared by processes).

use std::time::Duration;

use super::FileDriver;
use crate::{
    RateRecord, RateRule, RateVerdict,
    clock::duration_ms,
    counter::{format_integer, incremented},
    driver::DriverFuture,
    rate::lone_fixed_window,
};

impl FileDriver {
    /// Applies rate rules to the file of `key`, under its lock.
    pub(super) fn rate_on_disk(
        &self,
        key: &str,
        rules: &[RateRule],
        consume: bool,
    ) -> DriverFuture<'static, Vec<RateVerdict>> {
        if let Some(rule) = lone_fixed_window(rules) {
            let (rule, owned) = (*rule, key.to_owned());
            return self.run(key, move |inner, entry| {
                inner.locked(entry, |live| {
                    let now = inner.now();
                    let window = duration_ms(rule.window).max(1);
                    let found = live.and_then(|(expires_at, stored)| {
                        let count = incremented(&owned, Some(&stored), 0).ok()?;
                        (count > 0).then_some((count, expires_at))
                    });
                    let expires_at = match found {
                        Some((_, expires_at)) => expires_at.unwrap_or(now + window),
                        None => now.saturating_add(window),
                    };
                    let mut count = found.map_or(0, |(count, _)| count);
                    if consume {
                        count = count.saturating_add(1);
                        inner.write(entry, Some(expires_at), &format_integer(count))?;
                    }
                    let expires_in = Duration::from_millis(expires_at.saturating_sub(now));
                    Ok(vec![RateVerdict::from_counter(
                        &rule,
                        count.unsigned_abs(),
                        expires_in,
                        consume,
                    )])
                })
            });
        }
        let rules = rules.to_vec();
        self.run(key, move |inner, entry| {
            inner.locked(entry, |live| {
                let now = inner.now();
                let now_us = i64::try_from(now).unwrap_or(i64::MAX / 4_000) * 1_000;
                let mut record = live.map_or_else(RateRecord::default, |(_, stored)| {
                    RateRecord::decode(&stored)
                });
                let verdicts = record.apply(&rules, now_us, consume);
                if consume {
                    let ttl = record.ttl(now_us).unwrap_or(Duration::from_millis(1));
                    let expires_at = now.saturating_add(duration_ms(ttl));
                    inner.write(entry, Some(expires_at), &record.encode())?;
                }
                Ok(verdicts)
            })
        })
    }
}
