//! Counters (`increment`), the rate limiter's windows (`hit`) and rate records
//! (`Cache::rate`).
//!
//! A live counter is one `UpdateItem` with `ADD`. The request asks for the item as it was when
//! its condition failed, so the rare other cases — no counter yet, an expired one, a value
//! that holds an integer's text — cost one more conditional write, not a read first.

use std::time::Duration;

use aws_sdk_dynamodb::{
    operation::{put_item::builders::PutItemFluentBuilder, update_item::UpdateItemError},
    types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure},
};
use bytes::Bytes;

use super::{
    DynamoDbDriver, Failed,
    entries::{GONE, LIVE, deadline, expiry_names},
    item::{self, Entry, Item, KEY, NUMBER, Stored, VALUE},
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

/// What a failed conditional update saw.
enum Seen {
    /// The item as it was (`None`: there was none).
    Item(Option<Item>),
    /// The server did not say: read it.
    Unknown,
}

impl DynamoDbDriver {
    pub(super) async fn increment_counter(&self, key: &str, by: i64) -> Result<i64> {
        let at = self.at(key).await?;
        let mut backoff = Backoff::new("dynamodb");
        loop {
            let now = self.now();
            let (bound_check, bound) = if by >= 0 {
                ("#n <= :bound", i64::MAX - by)
            } else {
                ("#n >= :bound", i64::MIN - by)
            };
            let add = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(KEY, AttributeValue::S(at.clone()))
                .update_expression("ADD #n :by")
                .condition_expression(format!("{LIVE} AND attribute_exists(#n) AND {bound_check}"))
                .set_expression_attribute_names(Some(expiry_names()))
                .expression_attribute_names("#n", NUMBER)
                .expression_attribute_values(":now", item::number(now))
                .expression_attribute_values(":by", item::number(by))
                .expression_attribute_values(":bound", item::number(bound))
                .return_values(ReturnValue::UpdatedNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send();
            let seen = match self.bounded("increment", add).await {
                Ok(updated) => return counted(updated.attributes(), key),
                Err(Failed::Condition(error)) => seen(error),
                Err(failed) => return Err(failed.into()),
            };
            let entry = self.what_was_there(&at, seen, "increment").await?;
            match entry.filter(|e| e.live(now)) {
                // None, or expired: a new counter, which never expires.
                None => {
                    if self.create_counter(&at, by, None, now, "increment").await? {
                        return Ok(by);
                    }
                }
                Some(entry) => {
                    let sum = entry
                        .integer(key)?
                        .checked_add(by)
                        .ok_or_else(|| overflow(key))?;
                    // A live counter within bounds changed in between: try again. A value
                    // holding an integer's text becomes a counter, keeping its expiry.
                    if let Stored::Value(old) = &entry.stored
                        && self
                            .value_to_counter(&at, old, sum, entry.expires_ms, now, "increment")
                            .await?
                    {
                        return Ok(sum);
                    }
                }
            }
            backoff.wait().await?;
        }
    }

    /// The rate limiter's window counter: `by` added to a live window, or a new window of
    /// `window` started with `by`.
    pub(super) async fn hit_counter(&self, key: &str, window: Duration, by: u64) -> Result<Hit> {
        self.hit_window(key, window, by, Stale::Refuse).await
    }

    async fn hit_window(&self, key: &str, window: Duration, by: u64, stale: Stale) -> Result<Hit> {
        let at = self.at(key).await?;
        let by = i64::try_from(by).unwrap_or(i64::MAX);
        let mut backoff = Backoff::new("dynamodb");
        loop {
            let now = self.now();
            let add = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(KEY, AttributeValue::S(at.clone()))
                .update_expression("ADD #n :by")
                .condition_expression("attribute_exists(#n) AND #x > :now")
                .expression_attribute_names("#x", item::EXPIRES_MS)
                .expression_attribute_names("#n", NUMBER)
                .expression_attribute_values(":now", item::number(now))
                .expression_attribute_values(":by", item::number(by))
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send();
            let seen = match self.bounded("hit", add).await {
                Ok(updated) => return window_hit(updated.attributes(), key, now),
                Err(Failed::Condition(error)) => seen(error),
                Err(failed) => return Err(failed.into()),
            };
            let entry = self.what_was_there(&at, seen, "hit").await?;
            let fresh = deadline(now, Some(window));
            match entry.filter(|e| e.live(now)) {
                None => {
                    if self.create_counter(&at, by, fresh, now, "hit").await? {
                        return Ok(Hit {
                            count: by,
                            expires_in: window,
                        });
                    }
                }
                Some(entry) => {
                    let count = match (entry.integer(key), stale) {
                        (Ok(n), _) => n.saturating_add(by),
                        (Err(_), Stale::Replace) => by,
                        (Err(error), Stale::Refuse) => return Err(error),
                    };
                    // A counter without a TTL is given the window: one that never expired
                    // would lock a client out for good. A value becomes a counter.
                    let expires = entry.expires_ms.or(fresh);
                    let replaced = match &entry.stored {
                        Stored::Counter(n) => {
                            self.counter_to_window(&at, *n, count, expires, "hit")
                                .await?
                        }
                        Stored::Value(old) => {
                            self.value_to_counter(&at, old, count, expires, now, "hit")
                                .await?
                        }
                    };
                    if replaced {
                        let left = expires.unwrap_or(now).saturating_sub(now);
                        return Ok(Hit {
                            count,
                            expires_in: Duration::from_millis(left),
                        });
                    }
                }
            }
            backoff.wait().await?;
        }
    }

    /// `Cache::rate`: the record read, the rules applied, and the record written back only if
    /// it did not change meanwhile (a conditional write on its bytes), again if it did.
    pub(super) async fn rate_record(
        &self,
        key: &str,
        rules: &[RateRule],
        consume: bool,
    ) -> Result<Vec<RateVerdict>> {
        if let Some(rule) = lone_fixed_window(rules) {
            return self.fixed_window(key, rule, consume).await;
        }
        let at = self.at(key).await?;
        let _turn = self.turns.turn(at.as_bytes()).await;
        let mut backoff = Backoff::new("dynamodb");
        loop {
            let read = self.read_item(&at, "rate").await?;
            let now = self.now();
            let old = read.as_ref().and_then(Entry::decode);
            let mut record = match &old {
                Some(Entry {
                    stored: Stored::Value(bytes),
                    expires_ms,
                }) if expires_ms.is_none_or(|ms| ms > now) => RateRecord::decode(bytes),
                _ => RateRecord::default(),
            };
            let now_us = i64::try_from(now.saturating_mul(1_000)).unwrap_or(i64::MAX);
            let verdicts = record.apply(rules, now_us, consume);
            if !consume {
                return Ok(verdicts);
            }
            let ttl = record.ttl(now_us).unwrap_or(Duration::from_millis(1));
            let value = Bytes::from(record.encode());
            // Written only over what was read: the same attributes, or still no item.
            let (condition, names, values) = unchanged(read.as_ref());
            let write = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item::value_item(
                    at.clone(),
                    &value,
                    deadline(now, Some(ttl)),
                )))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values((!values.is_empty()).then_some(values));
            match self.bounded("rate", write.send()).await {
                Ok(_) => return Ok(verdicts),
                Err(Failed::Condition(_)) => backoff.wait().await?,
                Err(failed) => return Err(failed.into()),
            }
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
            let at = self.at(key).await?;
            let now = self.now();
            match self.read(&at, "rate").await?.filter(|e| e.live(now)) {
                Some(entry) => (
                    entry.integer(key).unwrap_or(0),
                    entry.expires_ms.map_or(rule.window, |ms| {
                        Duration::from_millis(ms.saturating_sub(now))
                    }),
                ),
                None => (0, rule.window),
            }
        };
        Ok(vec![RateVerdict::from_counter(
            rule,
            count.max(0).unsigned_abs(),
            expires_in,
            consume,
        )])
    }

    /// The entry a failed conditional update saw, read if the server did not return it. An
    /// item this driver did not write is not a counter.
    async fn what_was_there(
        &self,
        at: &str,
        seen: Seen,
        operation: &'static str,
    ) -> Result<Option<Entry>> {
        let item = match seen {
            Seen::Item(item) => item,
            Seen::Unknown => self.read_item(at, operation).await?,
        };
        match item {
            None => Ok(None),
            Some(item) => Entry::decode(&item)
                .map(Some)
                .ok_or_else(|| ErrorKind::NotAnInteger { key: at.to_owned() }.into()),
        }
    }

    /// Writes the counter `n` where there is no entry or an expired one; `false` if another
    /// writer got there first.
    async fn create_counter(
        &self,
        at: &str,
        n: i64,
        expires_ms: Option<u64>,
        now: u64,
        operation: &'static str,
    ) -> Result<bool> {
        self.put_counter(at, n, expires_ms, operation, |put| {
            put.condition_expression(GONE)
                .set_expression_attribute_names(Some(expiry_names()))
                .expression_attribute_values(":now", item::number(now))
        })
        .await
    }

    /// Turns a live value holding an integer's text into the counter `n` with expiry
    /// `expires_ms`; `false` if the value changed meanwhile.
    async fn value_to_counter(
        &self,
        at: &str,
        old: &Bytes,
        n: i64,
        expires_ms: Option<u64>,
        now: u64,
        operation: &'static str,
    ) -> Result<bool> {
        self.put_counter(at, n, expires_ms, operation, |put| {
            put.condition_expression(format!("{LIVE} AND #v = :old"))
                .set_expression_attribute_names(Some(expiry_names()))
                .expression_attribute_names("#v", VALUE)
                .expression_attribute_values(":now", item::number(now))
                .expression_attribute_values(
                    ":old",
                    AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(old.to_vec())),
                )
        })
        .await
    }

    /// Gives a live counter without a TTL its window and adds to it; `false` if it changed
    /// meanwhile.
    async fn counter_to_window(
        &self,
        at: &str,
        old: i64,
        n: i64,
        expires_ms: Option<u64>,
        operation: &'static str,
    ) -> Result<bool> {
        self.put_counter(at, n, expires_ms, operation, |put| {
            put.condition_expression("#n = :old AND attribute_not_exists(#x)")
                .expression_attribute_names("#n", NUMBER)
                .expression_attribute_names("#x", item::EXPIRES_MS)
                .expression_attribute_values(":old", item::number(old))
        })
        .await
    }

    /// Writes the counter `n` (expiring at `expires_ms`) under the condition `condition` sets;
    /// `false` if the condition did not hold.
    async fn put_counter(
        &self,
        at: &str,
        n: i64,
        expires_ms: Option<u64>,
        operation: &'static str,
        condition: impl FnOnce(PutItemFluentBuilder) -> PutItemFluentBuilder,
    ) -> Result<bool> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item::counter_item(at.to_owned(), n, expires_ms)));
        conditional(self.bounded(operation, condition(put).send()).await)
    }
}

/// A conditional write's outcome: done, or its condition did not hold.
fn conditional<T, E>(sent: std::result::Result<T, Failed<E>>) -> Result<bool> {
    match sent {
        Ok(_) => Ok(true),
        Err(Failed::Condition(_)) => Ok(false),
        Err(failed) => Err(failed.into()),
    }
}

/// What a failed `UpdateItem` saw.
fn seen(error: UpdateItemError) -> Seen {
    match error {
        UpdateItemError::ConditionalCheckFailedException(failure) => match failure.item {
            Some(item) => Seen::Item(Some(item)),
            // Absent both when there was no item and when the server does not return one:
            // the caller reads to tell.
            None => Seen::Unknown,
        },
        _ => Seen::Unknown,
    }
}

/// The counter an `ADD` returned.
fn counted(attributes: Option<&Item>, key: &str) -> Result<i64> {
    match attributes.and_then(|a| a.get(NUMBER)) {
        Some(AttributeValue::N(n)) => n.parse().map_err(|_| overflow(key)),
        _ => Err(super::entries::build_error(
            "increment",
            &"the update returned no counter",
        )),
    }
}

/// The window a hit's `ADD` returned.
fn window_hit(attributes: Option<&Item>, key: &str, now: u64) -> Result<Hit> {
    let count = counted(attributes, key)?;
    let expires = match attributes.and_then(|a| a.get(item::EXPIRES_MS)) {
        Some(AttributeValue::N(ms)) => ms.parse::<u64>().unwrap_or(now),
        _ => now,
    };
    Ok(Hit {
        count,
        expires_in: Duration::from_millis(expires.saturating_sub(now)),
    })
}

/// A condition that holds only while the item is as `read` (value, counter and expiry), or
/// still absent.
fn unchanged(
    read: Option<&Item>,
) -> (
    String,
    std::collections::HashMap<String, String>,
    std::collections::HashMap<String, AttributeValue>,
) {
    let mut names = std::collections::HashMap::new();
    let mut values = std::collections::HashMap::new();
    let Some(read) = read else {
        names.insert("#k".to_owned(), KEY.to_owned());
        return ("attribute_not_exists(#k)".to_owned(), names, values);
    };
    let mut parts = Vec::with_capacity(3);
    for (name, attribute) in [("v", VALUE), ("n", NUMBER), ("x", item::EXPIRES_MS)] {
        names.insert(format!("#{name}"), attribute.to_owned());
        match read.get(attribute) {
            Some(value) => {
                parts.push(format!("#{name} = :{name}"));
                values.insert(format!(":{name}"), value.clone());
            }
            None => parts.push(format!("attribute_not_exists(#{name})")),
        }
    }
    (parts.join(" AND "), names, values)
}

fn overflow(key: &str) -> crate::Error {
    ErrorKind::Overflow {
        key: key.to_owned(),
    }
    .into()
}
