//! The table: creating it as the driver expects, and `prune`.

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, WriteRequest,
};

use super::{
    DynamoDbConfig, DynamoDbDriver, Failed, client,
    entries::{WRITE_BATCH, build_error},
    item::{self, Entry, KEY, TTL, generation_key},
};
use crate::{ErrorKind, Result};

impl DynamoDbDriver {
    /// Creates `config`'s table as the driver expects it — hash key `key` (S), on-demand
    /// billing, DynamoDB's TTL on `ttl` — and waits until it is active. A table that already
    /// exists is left as it is (`Ok`). `jtc cache table` prints the same as AWS CLI commands
    /// ([`DynamoDbConfig::create_table_commands`]).
    pub async fn create_table(config: &DynamoDbConfig) -> Result<()> {
        config.check()?;
        let driver = Self::from_client(client(config).await, config)?;
        driver.create_own_table().await
    }

    async fn create_own_table(&self) -> Result<()> {
        let definition = AttributeDefinition::builder()
            .attribute_name(KEY)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| build_error("create table", &e))?;
        let schema = KeySchemaElement::builder()
            .attribute_name(KEY)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| build_error("create table", &e))?;
        let create = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(definition)
            .key_schema(schema)
            .billing_mode(BillingMode::PayPerRequest)
            .send();
        match tokio::time::timeout(Duration::from_secs(30), create).await {
            Ok(Ok(_)) => {}
            Ok(Err(error))
                if aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&error)
                    == Some("ResourceInUseException") => {}
            Ok(Err(aws_sdk_dynamodb::error::SdkError::TimeoutError(_))) => {
                return Err(ErrorKind::Timeout {
                    operation: "create table",
                    after: self.timeout,
                }
                .into());
            }
            Ok(Err(error)) => return Err(super::backend("create table", &error)),
            Err(_) => {
                return Err(ErrorKind::Timeout {
                    operation: "create table",
                    after: Duration::from_secs(30),
                }
                .into());
            }
        }
        // A new table takes a few seconds to become active on DynamoDB (at once on local
        // servers).
        for _ in 0..120 {
            let described = self
                .bounded(
                    "create table",
                    self.client.describe_table().table_name(&self.table).send(),
                )
                .await?;
            if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let ttl = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL)
            .build()
            .map_err(|e| build_error("create table", &e))?;
        let enable = self
            .client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(ttl)
            .send();
        match self.bounded("create table", enable).await {
            Ok(_) => Ok(()),
            // Already enabled.
            Err(Failed::Error(error)) if error.to_string().contains("already enabled") => Ok(()),
            Err(Failed::Error(error))
                if std::error::Error::source(&error)
                    .is_some_and(|s| s.to_string().contains("already enabled")) =>
            {
                Ok(())
            }
            Err(failed) => Err(failed.into()),
        }
    }

    /// `prune`: this prefix's items of old generations (left by `flush`) and its expired
    /// items, deleted in batches of 25. It scans the table — reading every item, other
    /// prefixes' too, at the scan's read cost, though it deletes only this prefix's — so run
    /// it rarely (`jtc cache prune`); the table's TTL removes expired items for free.
    pub(super) async fn prune_old(&self) -> Result<u64> {
        let generation = self.current_generation().await?;
        let current = format!("{}{generation}", self.prefix);
        let own = generation_key(&self.prefix);
        let mut removed = 0;
        let mut start = None;
        loop {
            let scan = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("begins_with(#k, :prefix)")
                .expression_attribute_names("#k", KEY)
                .expression_attribute_values(":prefix", AttributeValue::S(self.prefix.clone()))
                .set_exclusive_start_key(start.take())
                .send();
            let page = self.bounded("prune", scan).await?;
            let now = self.now();
            let mut doomed = Vec::new();
            for found in page.items() {
                let Some(AttributeValue::S(key)) = found.get(KEY) else {
                    continue;
                };
                // Only this prefix's entries: the prefix, a generation, `/` or `#`. Another
                // prefix that merely starts with this one (`app:` and `app:eu:`) is not ours.
                if *key == own || !item::is_entry_of(&self.prefix, key) {
                    continue;
                }
                let old_generation = !key.starts_with(&current);
                let expired = Entry::decode(found).is_some_and(|e| !e.live(now));
                if old_generation || expired {
                    doomed.push(key.clone());
                }
            }
            for chunk in doomed.chunks(WRITE_BATCH) {
                removed += self.delete_batch(chunk).await?;
            }
            match page.last_evaluated_key() {
                Some(last) => start = Some(last.clone()),
                None => return Ok(removed),
            }
        }
    }

    async fn delete_batch(&self, keys: &[String]) -> Result<u64> {
        let batch = keys
            .iter()
            .map(|key| {
                DeleteRequest::builder()
                    .set_key(Some(item::key_only(key.clone())))
                    .build()
                    .map(|delete| WriteRequest::builder().delete_request(delete).build())
                    .map_err(|e| build_error("prune", &e))
            })
            .collect::<Result<Vec<_>>>()?;
        self.write_batch(batch, "prune").await?;
        Ok(keys.len() as u64)
    }
}
