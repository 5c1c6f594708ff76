//! Entry operations: get, put, add, forget, pull, touch, and their batches.

use std::{collections::HashMap, time::Duration};

use aws_sdk_dynamodb::types::{
    AttributeValue, DeleteRequest, KeysAndAttributes, PutRequest, ReturnValue, WriteRequest,
};
use bytes::Bytes;

use super::{
    DynamoDbDriver, Failed,
    item::{self, EXPIRES_MS, Entry, Item, KEY, NUMBER, TTL, VALUE},
};
use crate::{ErrorKind, Result, contention::Backoff};

/// BatchGetItem takes at most 100 keys.
pub(super) const READ_BATCH: usize = 100;
/// BatchWriteItem takes at most 25 writes.
pub(super) const WRITE_BATCH: usize = 25;
/// How often a batch's unprocessed part is sent again before the batch is an error.
const BATCH_TRIES: u32 = 8;

/// The condition of a live entry (`:now`, `#k`, `#x` bound by [`Conditions::live`]).
pub(super) const LIVE: &str = "attribute_exists(#k) AND (attribute_not_exists(#x) OR #x > :now)";
/// The condition of a missing or expired entry.
pub(super) const GONE: &str = "attribute_not_exists(#k) OR #x <= :now";

/// The names and values a condition on expiry uses.
pub(super) fn expiry_names() -> HashMap<String, String> {
    HashMap::from([
        ("#k".to_owned(), KEY.to_owned()),
        ("#x".to_owned(), EXPIRES_MS.to_owned()),
    ])
}

/// The deadline of an entry written now with `ttl`, in Unix milliseconds.
pub(super) fn deadline(now_ms: u64, ttl: Option<Duration>) -> Option<u64> {
    ttl.map(|ttl| now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)))
}

impl DynamoDbDriver {
    /// One strongly consistent read of the item at `at`.
    pub(super) async fn read(&self, at: &str, operation: &'static str) -> Result<Option<Entry>> {
        Ok(self
            .read_item(at, operation)
            .await?
            .as_ref()
            .and_then(Entry::decode))
    }

    /// The raw item at `at`, strongly consistent.
    pub(super) async fn read_item(
        &self,
        at: &str,
        operation: &'static str,
    ) -> Result<Option<Item>> {
        let read = self
            .client
            .get_item()
            .table_name(&self.table)
            .consistent_read(true)
            .key(KEY, AttributeValue::S(at.to_owned()))
            .send();
        Ok(self.bounded(operation, read).await?.item)
    }

    pub(super) async fn get_entry(&self, key: &str) -> Result<Option<Bytes>> {
        let at = self.at(key).await?;
        let entry = self.read(&at, "get").await?;
        let now = self.now();
        Ok(entry.filter(|e| e.live(now)).map(Entry::bytes))
    }

    /// `ValueTooLarge` unless `value` fits one item under `at`.
    fn fits(at: &str, key: &str, value: &Bytes) -> Result<()> {
        let limit = item::value_limit(at);
        if value.len() > limit {
            return Err(ErrorKind::ValueTooLarge {
                key: key.to_owned(),
                size: value.len(),
                limit,
            }
            .into());
        }
        Ok(())
    }

    pub(super) async fn put_entry(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<()> {
        if ttl == Some(Duration::ZERO) {
            return self.remove_entry(key, None).await.map(drop);
        }
        let at = self.at(key).await?;
        Self::fits(&at, key, &value)?;
        let item = item::value_item(at, &value, deadline(self.now(), ttl));
        let write = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send();
        self.bounded("put", write).await?;
        Ok(())
    }

    pub(super) async fn add_entry(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        if ttl == Some(Duration::ZERO) {
            return Ok(false);
        }
        let at = self.at(key).await?;
        Self::fits(&at, key, &value)?;
        let now = self.now();
        let item = item::value_item(at, &value, deadline(now, ttl));
        let write = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(GONE)
            .set_expression_attribute_names(Some(expiry_names()))
            .expression_attribute_values(":now", item::number(now))
            .send();
        match self.bounded("add", write).await {
            Ok(_) => Ok(true),
            Err(Failed::Condition(_)) => Ok(false),
            Err(failed) => Err(failed.into()),
        }
    }

    /// Deletes the entry at `key` — only if it holds `expected`, when given — and returns
    /// what it held if it was live. One request: a delete, conditional when `expected` is.
    async fn delete(&self, key: &str, expected: Option<&[u8]>) -> Result<Option<Entry>> {
        let at = self.at(key).await?;
        let now = self.now();
        let mut delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(at))
            .return_values(ReturnValue::AllOld);
        if let Some(expected) = expected {
            let mut condition = format!("({LIVE}) AND (#v = :e");
            delete = delete
                .set_expression_attribute_names(Some(expiry_names()))
                .expression_attribute_names("#v", VALUE)
                .expression_attribute_values(":now", item::number(now))
                .expression_attribute_values(
                    ":e",
                    AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(expected)),
                );
            // A counter holds its decimal text, as `get` shows it.
            if let Some(n) = std::str::from_utf8(expected)
                .ok()
                .and_then(|t| t.parse::<i64>().ok())
            {
                condition.push_str(" OR #n = :en");
                delete = delete
                    .expression_attribute_names("#n", NUMBER)
                    .expression_attribute_values(":en", item::number(n));
            }
            condition.push(')');
            delete = delete.condition_expression(condition);
        }
        match self.bounded("forget", delete.send()).await {
            Ok(deleted) => Ok(deleted
                .attributes()
                .and_then(Entry::decode)
                .filter(|e| e.live(now))),
            Err(Failed::Condition(_)) => Ok(None),
            Err(failed) => Err(failed.into()),
        }
    }

    pub(super) async fn remove_entry(&self, key: &str, expected: Option<&[u8]>) -> Result<bool> {
        Ok(self.delete(key, expected).await?.is_some())
    }

    /// `pull`: one delete that returns what it deleted.
    pub(super) async fn take_entry(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.delete(key, None).await?.map(Entry::bytes))
    }

    pub(super) async fn touch_entry(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        if ttl == Some(Duration::ZERO) {
            return self.remove_entry(key, None).await;
        }
        let at = self.at(key).await?;
        let now = self.now();
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(at))
            .condition_expression(LIVE)
            .set_expression_attribute_names(Some(expiry_names()))
            .expression_attribute_names("#t", TTL)
            .expression_attribute_values(":now", item::number(now));
        let update = match deadline(now, ttl) {
            Some(ms) => update
                .update_expression("SET #x = :x, #t = :t")
                .expression_attribute_values(":x", item::number(ms))
                .expression_attribute_values(":t", item::number(ms.div_ceil(1000))),
            None => update.update_expression("REMOVE #x, #t"),
        };
        match self.bounded("touch", update.send()).await {
            Ok(_) => Ok(true),
            Err(Failed::Condition(_)) => Ok(false),
            Err(failed) => Err(failed.into()),
        }
    }

    /// `many`: BatchGetItem, 100 keys a request, unprocessed keys asked again.
    pub(super) async fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        let generation = self.current_generation().await?;
        let ats: Vec<String> = keys
            .iter()
            .map(|key| item::item_key(&self.prefix, &generation, key))
            .collect();
        let mut found: HashMap<String, Entry> = HashMap::with_capacity(ats.len());
        for chunk in unique_chunks(&ats, READ_BATCH) {
            let mut asked: Vec<Item> = chunk.into_iter().map(item::key_only).collect();
            let mut tries = 0;
            while !asked.is_empty() {
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(asked))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| build_error("many", &e))?;
                let read = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send();
                let output = self.bounded("many", read).await?;
                for item in output
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                {
                    if let (Some(AttributeValue::S(at)), Some(entry)) =
                        (item.get(KEY), Entry::decode(item))
                    {
                        found.insert(at.clone(), entry);
                    }
                }
                asked = output
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .map(|k| k.keys().to_vec())
                    .unwrap_or_default();
                tries += 1;
                self.pause_for_unprocessed("many", asked.len(), tries)
                    .await?;
            }
        }
        let now = self.now();
        Ok(ats
            .iter()
            .map(|at| {
                found
                    .get(at)
                    .filter(|e| e.live(now))
                    .cloned()
                    .map(Entry::bytes)
            })
            .collect())
    }

    /// `put_many`: BatchWriteItem, 25 writes a request, unprocessed writes sent again. Of one
    /// key named twice, the last value is written.
    pub(super) async fn put_entries(
        &self,
        entries: &[(&str, Bytes)],
        ttl: Option<Duration>,
    ) -> Result<()> {
        let generation = self.current_generation().await?;
        let deadline = deadline(self.now(), ttl);
        let mut writes: Vec<(String, WriteRequest)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let at = item::item_key(&self.prefix, &generation, key);
            let write = if ttl == Some(Duration::ZERO) {
                let delete = DeleteRequest::builder()
                    .set_key(Some(item::key_only(at.clone())))
                    .build()
                    .map_err(|e| build_error("put_many", &e))?;
                WriteRequest::builder().delete_request(delete).build()
            } else {
                Self::fits(&at, key, value)?;
                let put = PutRequest::builder()
                    .set_item(Some(item::value_item(at.clone(), value, deadline)))
                    .build()
                    .map_err(|e| build_error("put_many", &e))?;
                WriteRequest::builder().put_request(put).build()
            };
            writes.push((at, write));
        }
        for batch in last_wins_chunks(writes, WRITE_BATCH) {
            self.write_batch(batch, "put_many").await?;
        }
        Ok(())
    }

    /// One BatchWriteItem of at most 25 writes, its unprocessed part sent again until none is
    /// left (or [`BATCH_TRIES`] have passed).
    pub(super) async fn write_batch(
        &self,
        mut batch: Vec<WriteRequest>,
        operation: &'static str,
    ) -> Result<()> {
        let mut tries = 0;
        while !batch.is_empty() {
            let write = self
                .client
                .batch_write_item()
                .request_items(&self.table, batch)
                .send();
            let output = self.bounded(operation, write).await?;
            batch = output
                .unprocessed_items()
                .and_then(|u| u.get(&self.table))
                .cloned()
                .unwrap_or_default();
            tries += 1;
            self.pause_for_unprocessed(operation, batch.len(), tries)
                .await?;
        }
        Ok(())
    }

    /// Between sends of a batch's unprocessed part (DynamoDB returns one when a partition is
    /// throttled): a growing pause, and a backend error after [`BATCH_TRIES`].
    async fn pause_for_unprocessed(
        &self,
        operation: &'static str,
        left: usize,
        tries: u32,
    ) -> Result<()> {
        if left == 0 {
            return Ok(());
        }
        if tries >= BATCH_TRIES {
            return Err(ErrorKind::Backend {
                driver: "dynamodb",
                operation,
                source: format!("{left} item(s) still unprocessed after {tries} tries (throttled)")
                    .into(),
            }
            .into());
        }
        let mut backoff = Backoff::new("dynamodb");
        for _ in 0..tries + 2 {
            backoff.wait().await?;
        }
        Ok(())
    }
}

/// An SDK builder's refusal (a required field missing): a bug here, reported as a backend
/// error rather than a panic.
pub(super) fn build_error(operation: &'static str, error: &dyn std::fmt::Display) -> crate::Error {
    ErrorKind::Backend {
        driver: "dynamodb",
        operation,
        source: error.to_string().into(),
    }
    .into()
}

/// `keys` without repeats (a batch may not name one key twice), in chunks of `size`.
pub(super) fn unique_chunks(keys: &[String], size: usize) -> Vec<Vec<String>> {
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    let unique: Vec<String> = keys
        .iter()
        .filter(|k| seen.insert(k.as_str()))
        .cloned()
        .collect();
    unique.chunks(size).map(<[String]>::to_vec).collect()
}

/// `writes` with only the last write of each key, in order of first appearance, in chunks of
/// `size`.
pub(super) fn last_wins_chunks<T>(writes: Vec<(String, T)>, size: usize) -> Vec<Vec<T>> {
    let mut position: HashMap<String, usize> = HashMap::with_capacity(writes.len());
    let mut kept: Vec<Option<T>> = Vec::with_capacity(writes.len());
    for (key, write) in writes {
        match position.get(&key) {
            Some(&at) => kept[at] = Some(write),
            None => {
                position.insert(key, kept.len());
                kept.push(Some(write));
            }
        }
    }
    let kept: Vec<T> = kept.into_iter().flatten().collect();
    let mut chunks = Vec::with_capacity(kept.len().div_ceil(size));
    let mut rest = kept.into_iter().peekable();
    while rest.peek().is_some() {
        chunks.push(rest.by_ref().take(size).collect());
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_go_in_chunks_of_100_without_repeats() {
        let keys: Vec<String> = (0..250).map(|i| format!("k{}", i % 230)).collect();
        let chunks = unique_chunks(&keys, READ_BATCH);
        assert_eq!(
            chunks.iter().map(Vec::len).collect::<Vec<_>>(),
            [100, 100, 30]
        );
        assert_eq!(chunks[0][0], "k0");
        assert!(unique_chunks(&[], READ_BATCH).is_empty());
    }

    #[test]
    fn writes_go_in_chunks_of_25_and_the_last_write_of_a_key_wins() {
        let writes: Vec<(String, u32)> = (0..60).map(|i| (format!("k{}", i % 52), i)).collect();
        let chunks = last_wins_chunks(writes, WRITE_BATCH);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [25, 25, 2]);
        // k0..k7 were written twice: their second write (52..59) replaced the first in place.
        assert_eq!(&chunks[0][..9], &[52, 53, 54, 55, 56, 57, 58, 59, 8]);
    }

    #[test]
    fn deadlines_are_never_now() {
        assert_eq!(deadline(1_000, None), None);
        assert_eq!(
            deadline(1_000, Some(Duration::from_micros(10))),
            Some(1_001)
        );
        assert_eq!(deadline(u64::MAX - 1, Some(Duration::MAX)), Some(u64::MAX));
    }
}
