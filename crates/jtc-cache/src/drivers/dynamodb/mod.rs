//! `DynamoDbDriver`: the cache on an Amazon DynamoDB table.
//!
//! The handle, its constructors, the generation (how `flush` works) and the SDK's errors are
//! here; the settings in `config.rs`, the item layout in `item.rs`, entry operations in
//! `entries.rs`, counters, windows and `Cache::rate` in `counters.rs`, the table's creation
//! and `prune` in `table.rs`.

mod config;
mod counters;
mod entries;
mod item;
mod table;

use std::{sync::Arc, time::Duration};

use aws_sdk_dynamodb::{
    Client,
    config::Region,
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    types::AttributeValue,
};
use bytes::Bytes;

pub use config::{DEFAULT_DYNAMODB_TABLE, DynamoDbConfig};
use item::{GENERATION, KEY, generation_key};

use crate::{
    CacheDriver, Clock, DriverFuture, ErrorKind, Hit, RateRule, RateVerdict, Result,
    contention::Turns, driver::one_rate_at_a_time, held::Held,
};

/// The cache on an Amazon DynamoDB table (feature `dynamodb`).
///
/// - **One item per entry** in a table with the hash key `key` (S): a table made by
///   [`create_table`](Self::create_table), by `jtc cache table`'s commands, or by hand with
///   only that key. Several applications and prefixes share a table safely.
/// - **Expiry to the millisecond, decided on read**, with strongly consistent reads; the
///   table's own TTL (on `ttl`) only cleans up, within DynamoDB's ~48 hours.
/// - **Atomic operations** as conditional writes: `add` and lock acquisition create only if
///   absent or expired, a lock is released only by its owner (`forget_if` is one conditional
///   delete), `increment` and `hit` are one `UpdateItem` with `ADD`, exact from any number of
///   processes.
/// - **Flush by generation**: every key carries the prefix's generation, and
///   [`flush`](CacheDriver::flush) writes a new one — one request, whatever the table holds;
///   nothing is scanned or deleted. Another process sees it within its
///   [`generation_check`](DynamoDbConfig::generation_check) (1 s by default).
///
/// Values above DynamoDB's 400 KB item limit (after the `Cache`'s compression) are refused
/// with [`ErrorKind::ValueTooLarge`] before anything is sent.
///
/// ```no_run
/// # async fn run() -> jtc_cache::Result<()> {
/// use jtc_cache::{Cache, DynamoDbDriver};
/// // Region, credentials and endpoint from the AWS chain (AWS_REGION, AWS_PROFILE, roles...).
/// let cache = Cache::new(DynamoDbDriver::connect("jtc_cache", "app:").await?);
/// cache.put("greeting", &"hello", std::time::Duration::from_secs(60)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct DynamoDbDriver {
    client: Client,
    table: String,
    prefix: String,
    generation: Held,
    timeout: Duration,
    clock: Arc<dyn Clock>,
    /// Compare-and-set loops of this process on one key take turns here.
    turns: Turns,
}

impl DynamoDbDriver {
    /// Connects to `table` with key prefix `prefix`; region, credentials and endpoint from
    /// the AWS chain. Reads the prefix's generation, so a missing table or unusable
    /// credentials fail here.
    pub async fn connect(table: &str, prefix: &str) -> Result<Self> {
        Self::from_config(&DynamoDbConfig::new(table).prefix(prefix)).await
    }

    /// Connects with `config`.
    pub async fn from_config(config: &DynamoDbConfig) -> Result<Self> {
        config.check()?;
        let driver = Self::from_client(client(config).await, config)?;
        driver.current_generation().await?;
        Ok(driver)
    }

    /// A driver over a client the application already has (its region, credentials, endpoint
    /// and retry settings); `config` gives the table, prefix, timeout and generation check
    /// (its endpoint and region are not used). Nothing is sent until the first call.
    pub fn from_client(client: Client, config: &DynamoDbConfig) -> Result<Self> {
        config.check()?;
        Ok(Self {
            client,
            table: config.table.clone(),
            prefix: config.prefix.clone(),
            generation: Held::new(config.generation_check),
            timeout: config.timeout,
            clock: Arc::clone(&config.clock),
            turns: Turns::default(),
        })
    }

    /// The SDK client this driver sends with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The item key of `key` under the current generation.
    async fn at(&self, key: &str) -> Result<String> {
        let generation = self.current_generation().await?;
        Ok(item::item_key(&self.prefix, &generation, key))
    }

    /// The prefix's generation: the one held if recent enough, else read (and created if the
    /// prefix has none yet).
    async fn current_generation(&self) -> Result<Arc<str>> {
        self.generation.get(|| self.read_generation()).await
    }

    async fn read_generation(&self) -> Result<Arc<str>> {
        let key = generation_key(&self.prefix);
        loop {
            let read = self
                .client
                .get_item()
                .table_name(&self.table)
                .consistent_read(true);
            let read = read.key(KEY, AttributeValue::S(key.clone())).send();
            let found = self.bounded("generation", read).await?;
            if let Some(AttributeValue::S(generation)) =
                found.item().and_then(|item| item.get(GENERATION))
            {
                return Ok(generation.as_str().into());
            }
            // None yet: create one; if another process created one first, read that.
            let generation = new_generation();
            let create = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(KEY, AttributeValue::S(key.clone()))
                .item(GENERATION, AttributeValue::S(generation.clone()))
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", KEY)
                .send();
            match self.bounded("generation", create).await {
                Ok(_) => return Ok(generation.into()),
                Err(Failed::Condition(_)) => {}
                Err(failed) => return Err(failed.into()),
            }
        }
    }

    /// Starts a new generation: every entry of this prefix is out of reach at once (one
    /// request), and old generations' items are left to the table's TTL and to `prune`.
    async fn flush_generation(&self) -> Result<()> {
        let generation = new_generation();
        let write = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(KEY, AttributeValue::S(generation_key(&self.prefix)))
            .item(GENERATION, AttributeValue::S(generation.clone()))
            .send();
        self.bounded("flush", write).await?;
        self.generation.hold(generation.into());
        Ok(())
    }

    /// Sends one request within the driver's timeout, sorting what can go wrong.
    async fn bounded<T, E, R>(
        &self,
        operation: &'static str,
        request: impl Future<Output = std::result::Result<T, SdkError<E, R>>>,
    ) -> std::result::Result<T, Failed<E>>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let timed_out = || {
            Failed::Error(
                ErrorKind::Timeout {
                    operation,
                    after: self.timeout,
                }
                .into(),
            )
        };
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(output)) => Ok(output),
            Err(_) => Err(timed_out()),
            Ok(Err(SdkError::TimeoutError(_))) => Err(timed_out()),
            Ok(Err(SdkError::ServiceError(failure)))
                if failure.err().code() == Some("ConditionalCheckFailedException") =>
            {
                Err(Failed::Condition(failure.into_err()))
            }
            Ok(Err(error)) => Err(Failed::Error(backend(operation, &error))),
        }
    }
}

/// A request that did not do what it was sent for.
#[derive(Debug)]
enum Failed<E> {
    /// Its condition did not hold (not an error: an `add` of a present key, say); the
    /// operation's error, which holds the item as it was when asked for.
    Condition(E),
    /// Anything else: already a cache error.
    Error(crate::Error),
}

impl<E> From<Failed<E>> for crate::Error {
    fn from(failed: Failed<E>) -> Self {
        match failed {
            Failed::Error(error) => error,
            Failed::Condition(_) => ErrorKind::Backend {
                driver: "dynamodb",
                operation: "write",
                source: "a condition the driver did not expect to fail failed".into(),
            }
            .into(),
        }
    }
}

/// A backend error from the SDK's: the service's error code and message when it answered, the
/// chain of causes when it did not (the SDK's errors carry no credentials).
fn backend<E, R>(operation: &'static str, error: &SdkError<E, R>) -> crate::Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let text = match (error.code(), error.message()) {
        (Some(code), message) => format!("{code}: {}", message.unwrap_or("")),
        (None, _) => DisplayErrorContext(error).to_string(),
    };
    let source: Box<dyn std::error::Error + Send + Sync> =
        if error.code() == Some("ResourceNotFoundException") {
            format!(
                "{text} (does the table exist in this region? `jtc cache table` prints the \
                 commands that create it)"
            )
            .into()
        } else {
            text.into()
        };
    ErrorKind::Backend {
        driver: "dynamodb",
        operation,
        source,
    }
    .into()
}

/// A generation: 12 random hex digits, so a flushed generation is never reused.
fn new_generation() -> String {
    crate::keys::token()[..12].to_owned()
}

/// A client for `config`: the AWS chain, with the endpoint and region `config` names, one TLS
/// stack (rustls with ring, as the Redis driver) and `config`'s timeout.
async fn client(config: &DynamoDbConfig) -> Client {
    use aws_smithy_http_client::{Builder, tls};
    let http = Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_timeout(config.timeout)
        .connect_timeout(config.timeout)
        .build();
    // The driver bounds every call by `config.timeout` itself; the SDK's stalled-stream
    // protection would add a second, coarser limit (a response silent for a second fails)
    // that a busy server trips before the configured timeout.
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts)
        .stalled_stream_protection(
            aws_config::stalled_stream_protection::StalledStreamProtectionConfig::disabled(),
        );
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some((id, secret)) = &config.credentials {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            id.clone(),
            secret.clone(),
            None,
            None,
            "jtc-cache",
        ));
    }
    let shared = loader.load().await;
    let mut builder = aws_sdk_dynamodb::config::Builder::from(&shared);
    if shared.region().is_none() {
        builder = builder.region(Region::from_static("us-east-1"));
    }
    Client::from_conf(builder.build())
}

impl CacheDriver for DynamoDbDriver {
    fn name(&self) -> &'static str {
        "dynamodb"
    }

    fn get<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        DriverFuture::new(self.get_entry(key))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, ()> {
        DriverFuture::new(self.put_entry(key, value, ttl))
    }

    fn add<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.add_entry(key, value, ttl))
    }

    fn increment<'a>(&'a self, key: &'a str, by: i64) -> DriverFuture<'a, i64> {
        DriverFuture::new(self.increment_counter(key, by))
    }

    fn hit_by<'a>(&'a self, key: &'a str, window: Duration, by: u64) -> DriverFuture<'a, Hit> {
        DriverFuture::new(self.hit_counter(key, window, by.max(1)))
    }

    fn rate<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        consume: bool,
    ) -> DriverFuture<'a, Vec<RateVerdict>> {
        DriverFuture::new(self.rate_record(key, rules, consume))
    }

    fn rate_by<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        by: u64,
    ) -> DriverFuture<'a, Vec<Vec<RateVerdict>>> {
        one_rate_at_a_time("dynamodb", by, |consume| self.rate(key, rules, consume))
    }

    fn forget<'a>(&'a self, key: &'a str) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.remove_entry(key, None))
    }

    fn forget_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.remove_entry(key, Some(expected)))
    }

    fn pull<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        DriverFuture::new(self.take_entry(key))
    }

    fn touch<'a>(&'a self, key: &'a str, ttl: Option<Duration>) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.touch_entry(key, ttl))
    }

    fn flush(&self) -> DriverFuture<'_, ()> {
        DriverFuture::new(self.flush_generation())
    }

    fn many<'a>(&'a self, keys: &'a [&'a str]) -> DriverFuture<'a, Vec<Option<Bytes>>> {
        DriverFuture::new(self.get_many(keys))
    }

    fn put_many<'a>(
        &'a self,
        entries: &'a [(&'a str, Bytes)],
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, ()> {
        DriverFuture::new(self.put_entries(entries, ttl))
    }

    fn prune(&self) -> DriverFuture<'_, u64> {
        DriverFuture::new(self.prune_old())
    }
}
