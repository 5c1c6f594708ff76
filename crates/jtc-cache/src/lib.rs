//! A cache service layer for Axum/Tower applications.
//!
//! One typed handle, [`Cache`], over interchangeable drivers:
//!
//! | driver              | `CACHE_DRIVER` | where entries live                        | made for |
//! |---------------------|----------------|-------------------------------------------|----------|
//! | [`FileDriver`]      | `file`         | one file per entry in a local folder      | the default: no servers; shared by the processes of one machine |
//! | [`ArrayDriver`]     | `array`        | this process's memory (optionally bounded) | tests, single-instance apps |
//! | `RedisDriver`       | `redis`        | Redis standalone, Cluster or behind Sentinel; optional near cache in process | production, many instances |
//! | `DatabaseDriver`    | `database`     | a table in SQLite or PostgreSQL           | apps that already run a database |
//! | `MemcachedDriver`   | `memcached`    | memcached servers, keys spread by consistent hashing | apps that already run memcached |
//! | `DynamoDbDriver`    | `dynamodb`     | an Amazon DynamoDB table                  | AWS deployments with no cache server of their own |
//! | `ObjectStoreDriver` | `s3`           | S3 or another object store (local files, memory) | large values: reports, PDFs, model output |
//!
//! Every driver implements [`CacheDriver`] and passes one conformance suite; the rate limiter
//! (`jtc-throttle`) counts on any of them.
//!
//! # Features
//!
//! | feature       | default | what it adds |
//! |---------------|---------|--------------|
//! | `redis`       | yes     | `RedisDriver` and `RedisConfig`: Redis standalone, Cluster and Sentinel, TLS (rustls), near cache |
//! | `compression` | yes     | LZ4 compression of values above [`DEFAULT_COMPRESSION_THRESHOLD`] |
//! | `sqlite`      | no      | `DatabaseDriver` on SQLite (sqlx, bundled SQLite) |
//! | `postgres`    | no      | `DatabaseDriver` on PostgreSQL (sqlx) |
//! | `memcached`   | no      | `MemcachedDriver` and `MemcachedConfig` (own client for the meta protocol) |
//! | `dynamodb`    | no      | `DynamoDbDriver` and `DynamoDbConfig` (the AWS SDK for Rust, rustls on ring) |
//! | `object-store` | no     | `ObjectStoreDriver` (Apache Arrow's `object_store`: S3 and S3-compatible, local files, memory), and `LargeValueTier`: large values in object storage in front of any driver ([`Cache::large_values`]) |
//! | `metrics`     | no      | counters and histograms through the `metrics` facade ([`metrics`] lists them) |
//! | `axum`        | no      | the `/ready` route and 503 layer of cache warming's [`Readiness`](warm::Readiness) |
//!
//! The array and file drivers are always there, and so is cache warming ([`warm`]: fill the
//! cache before traffic arrives, once per fleet, refreshed ahead of expiry).
//!
//! An application starts on the file driver and moves to another by changing `CACHE_DRIVER`,
//! with no code change: [`Cache::from_env`] reads the choice.
//!
//! # Example
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use jtc_cache::{Cache, FileDriver};
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir()?;
//! let cache = Cache::new(FileDriver::new(dir.path())?);
//!
//! cache.put("config:theme", &"dark", Duration::from_secs(60)).await?;
//! assert_eq!(cache.get::<String>("config:theme").await?.as_deref(), Some("dark"));
//!
//! // Integers are plain counters: put, then increment.
//! cache.put("visits", &41, Duration::from_secs(60)).await?;
//! assert_eq!(cache.increment("visits", 1).await?, 42);
//!
//! // `add` stores only when the key is free, atomically.
//! assert!(!cache.add("visits", &0, Duration::from_secs(60)).await?);
//!
//! assert!(cache.forget("visits").await?);
//! cache.flush().await?;
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! # In an Axum app
//!
//! `Cache` is cheap to clone; pass it as state:
//!
//! ```no_run
//! # async fn app() -> Result<(), Box<dyn std::error::Error>> {
//! use jtc_cache::Cache;
//! let cache = Cache::from_env().await?; // CACHE_DRIVER=file|array|redis|database|memcached|dynamodb|s3, default file
//! // Router::new().route(...).with_state(cache)
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod cache;
mod clock;
mod codec;
mod config;
#[cfg(any(feature = "memcached", feature = "dynamodb", feature = "object-store"))]
mod contention;
mod counter;
mod driver;
mod drivers;
mod error;
mod events;
#[cfg(any(feature = "memcached", feature = "dynamodb"))]
mod held;
mod keys;
#[cfg(feature = "object-store")]
mod large;
mod local;
mod lock;
mod outage;
mod rate;
mod secrets;
mod single_flight;
pub mod metrics {
    //! The names of the metrics a [`Cache`](crate::Cache) reports through the
    //! [`metrics`](https://docs.rs/metrics) facade, with the cargo feature `metrics`.
    //!
    //! | name | type | labels |
    //! |---|---|---|
    //! | `jtc_cache_gets_total` | counter | `cache`, `result` = `hit` / `miss` |
    //! | `jtc_cache_writes_total` | counter | `cache`, `op` |
    //! | `jtc_cache_deletes_total` | counter | `cache` |
    //! | `jtc_cache_errors_total` | counter | `cache`, `op`, `kind` ([`ErrorKind::code`](crate::ErrorKind::code)) |
    //! | `jtc_cache_operation_duration_seconds` | histogram | `cache`, `op` |
    //! | `jtc_cache_near_cache_reads_total` | counter | `cache`, `result` = `hit` / `miss` |
    //! | `jtc_cache_near_cache_invalidations_total` | counter | `cache` |
    //! | `jtc_cache_near_cache_evictions_total` | counter | `cache` |
    //! | `jtc_cache_near_cache_entries` | gauge | `cache` |
    //!
    //! The `near_cache` ones come from a driver's near cache (the Redis driver with
    //! `RedisConfig::near_cache`), published with the reads under the name of the first cache
    //! that read through that driver. `cache` is the cache's [name](crate::Cache::named); `op` the public operation (`get`,
    //! `put`, `remember`, `tagged_get`, ...). Labels never hold keys, values or anything a
    //! caller passes in: their number stays fixed, and no personal data reaches a dashboard.
    //! Handles bind to the recorder installed when a cache first reports: install the
    //! recorder before the first cache operation. Reads are published from the
    //! cache's own counters once a second and by [`publish`], which a `/metrics` handler
    //! calls before rendering. Operations are timed one in [`TIME_ONE_IN`] per thread (and the
    //! first call of each operation on each thread, so the histogram appears with the first
    //! requests): read rates from the counters, not from the histogram's `_count`.
    //!
    //! docs/observability.md shows the Prometheus set-up, the dashboard and OpenTelemetry.
    #[cfg(doc)]
    use crate::ErrorKind;

    pub use crate::cache::meters::{
        DELETES, DURATION, DURATION_BUCKETS, ERRORS, GETS, NEAR_ENTRIES, NEAR_EVICTIONS,
        NEAR_INVALIDATIONS, NEAR_READS, TIME_ONE_IN, WRITES, publish,
    };
}
mod tags;
pub mod warm;

pub use cache::{
    Cache, DEFAULT_COMPRESSION_THRESHOLD, DEFAULT_FILL_LOCK_HOLD, DEFAULT_FILL_LOCK_WAIT,
    DEFAULT_MAX_VALUE_BYTES,
};
pub use clock::{Clock, ManualClock, MonotonicClock, SystemClock};
pub use codec::Codec;
pub use config::{CacheConfig, DEFAULT_FILE_PATH, DEFAULT_LARGE_VALUE_THRESHOLD, DriverKind};
pub use driver::{CacheDriver, DriverFuture, DriverStats, Hit};
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use drivers::database::{
    DEFAULT_TABLE as DEFAULT_DB_TABLE, DatabaseConfig, DatabaseDriver, DatabasePool,
};
#[cfg(feature = "dynamodb")]
#[cfg_attr(docsrs, doc(cfg(feature = "dynamodb")))]
pub use drivers::dynamodb::{DEFAULT_DYNAMODB_TABLE, DynamoDbConfig, DynamoDbDriver};
#[cfg(feature = "memcached")]
#[cfg_attr(docsrs, doc(cfg(feature = "memcached")))]
pub use drivers::memcached::{MemcachedConfig, MemcachedDriver};
#[cfg(feature = "object-store")]
#[cfg_attr(docsrs, doc(cfg(feature = "object-store")))]
pub use drivers::objects::ObjectStoreDriver;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use drivers::redis::{RedisConfig, RedisDriver};
pub use drivers::{
    array::{ArrayDriver, ArrayDriverBuilder},
    file::{DEFAULT_SWEEP_INTERVAL as DEFAULT_FILE_SWEEP_INTERVAL, FileDriver, FileDriverBuilder},
};
pub use error::{Error, ErrorKind, Result};
pub use events::{CacheEvent, CacheStats, EventKind, NearCacheStats};
pub use keys::MAX_KEY_BYTES;
#[cfg(feature = "object-store")]
pub use large::{DEFAULT_ORPHAN_GRACE, LargeValueTier};
pub use lock::{Lock, LockGuard};
pub use rate::{RateKind, RateRecord, RateRule, RateVerdict};
pub use secrets::mask_url;
pub use tags::TaggedCache;
