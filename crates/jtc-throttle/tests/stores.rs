//! The throttle conformance suite (tests/suite) on every store: process memory, and caches
//! over the array driver, the file driver, a Redis server, a 3-master Redis Cluster, SQLite,
//! PostgreSQL, memcached and DynamoDB (moto's server), the servers started by the tests.

mod common;
mod suite;

use std::sync::Arc;

use jtc_cache::{
    ArrayDriver, Cache, CacheDriver, DatabaseConfig, DatabaseDriver, DynamoDbConfig,
    DynamoDbDriver, FileDriver, ManualClock, MemcachedDriver, RedisConfig, RedisDriver,
};
use jtc_test_support::{
    shared_cluster, shared_memcached, shared_moto, shared_postgres, shared_server, unique_prefix,
};
use suite::Store;

/// A manual clock at a whole second, so that window arithmetic in the cases is exact.
fn clock() -> ManualClock {
    ManualClock::new(1_700_000_000_000)
}

async fn memory() -> Store {
    Store::memory(clock())
}

async fn array() -> Store {
    let clock = clock();
    let driver: Arc<dyn CacheDriver> =
        Arc::new(ArrayDriver::builder().clock(clock.clone()).build());
    // One process-local driver: every "instance" is a new cache handle over it.
    let connect = move || {
        let driver = Arc::clone(&driver);
        Box::pin(async move { Cache::from_driver(driver) }) as _
    };
    Store::cache(Box::new(connect), Some(clock), Box::new(()))
}

async fn file() -> Store {
    let clock = clock();
    let dir = tempfile::tempdir().unwrap();
    let (path, driver_clock) = (dir.path().to_owned(), clock.clone());
    // Every instance opens the folder anew, as another process would.
    let connect = move || {
        let driver = FileDriver::builder(&path)
            .clock(driver_clock.clone())
            .build();
        Box::pin(async move { Cache::new(driver.unwrap()) }) as _
    };
    Store::cache(Box::new(connect), Some(clock), Box::new(dir))
}

async fn redis() -> Store {
    let prefix = unique_prefix("suite");
    let connect = move || {
        let (url, prefix) = (shared_server().url(), prefix.clone());
        Box::pin(async move { Cache::new(RedisDriver::connect(&url, &prefix).await.unwrap()) }) as _
    };
    Store::cache(Box::new(connect), None, Box::new(()))
}

async fn redis_cluster() -> Store {
    let prefix = unique_prefix("suite");
    let connect = move || {
        let config = RedisConfig::cluster(shared_cluster().addresses()).prefix(&prefix);
        Box::pin(async move { Cache::new(RedisDriver::from_config(&config).await.unwrap()) }) as _
    };
    Store::cache(Box::new(connect), None, Box::new(()))
}

/// Every instance connects anew to `config`'s database, as another process would.
fn database(
    config: DatabaseConfig,
    clock: ManualClock,
    guard: Box<dyn std::any::Any + Send>,
) -> Store {
    let connect = move || {
        let config = config.clone();
        Box::pin(async move { Cache::new(DatabaseDriver::from_config(&config).await.unwrap()) })
            as _
    };
    Store::cache(Box::new(connect), Some(clock), guard)
}

async fn sqlite() -> Store {
    let clock = clock();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("limits.db").display());
    database(
        DatabaseConfig::new(url).clock(clock.clone()),
        clock,
        Box::new(dir),
    )
}

async fn postgres() -> Store {
    let clock = clock();
    let table = unique_prefix("suite").replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let config = DatabaseConfig::new(shared_postgres().url())
        .table(format!("t_{table}"))
        .max_connections(4)
        .clock(clock.clone());
    database(config, clock, Box::new(()))
}

async fn memcached() -> Store {
    let prefix = unique_prefix("suite");
    let connect = move || {
        let (servers, prefix) = (shared_memcached().address(), prefix.clone());
        Box::pin(
            async move { Cache::new(MemcachedDriver::connect(&servers, &prefix).await.unwrap()) },
        ) as _
    };
    Store::cache(Box::new(connect), None, Box::new(()))
}

async fn dynamodb() -> Store {
    let clock = clock();
    let config = DynamoDbConfig::new("jtc_throttle")
        .endpoint(shared_moto().endpoint())
        .region("us-east-1")
        .credentials("test", "test")
        .prefix(unique_prefix("suite"))
        // moto answers one request at a time: under the 1,000-way cases a request waits.
        .timeout(std::time::Duration::from_secs(120))
        .clock(clock.clone());
    DynamoDbDriver::create_table(&config).await.unwrap();
    let connect = move || {
        let config = config.clone();
        Box::pin(async move { Cache::new(DynamoDbDriver::from_config(&config).await.unwrap()) })
            as _
    };
    Store::cache(Box::new(connect), Some(clock), Box::new(()))
}

mod memory {
    crate::throttle_suite!(super::memory);
    crate::limits_suite!(super::memory);
}

mod array {
    crate::throttle_suite!(super::array);
    crate::limits_suite!(super::array);
}

mod file {
    crate::throttle_suite!(super::file);
    crate::limits_suite!(super::file);
}

mod redis {
    crate::throttle_suite!(super::redis);
    crate::limits_suite!(super::redis);
}

mod redis_cluster {
    crate::throttle_suite!(super::redis_cluster);
    crate::limits_suite!(super::redis_cluster);
}

mod sqlite {
    crate::throttle_suite!(super::sqlite);
    crate::limits_suite!(super::sqlite);
}

mod postgres {
    crate::throttle_suite!(super::postgres);
    crate::limits_suite!(super::postgres);
}

mod memcached {
    crate::throttle_suite!(super::memcached);
    crate::limits_suite!(super::memcached);
}

mod dynamodb {
    crate::throttle_suite!(super::dynamodb);
    crate::limits_suite!(super::dynamodb);
}
