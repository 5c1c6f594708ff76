//! `ObjectStoreDriver`: the cache on object storage (S3 and S3-compatible stores, the local
//! filesystem, memory; GCS and Azure through `object_store`'s own features).
//!
//! The handle, its constructors and the trait's forwards are here; how an entry is stored in
//! an object and every operation in `entries.rs`.

mod entries;

pub(crate) use entries::backend;

use std::{
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use bytes::Bytes;
use object_store::{ObjectStore, path::Path};

use crate::{
    CacheDriver, Clock, DriverFuture, ErrorKind, Hit, RateRule, RateVerdict, Result, SystemClock,
    contention::Turns, driver::one_rate_at_a_time,
};

/// The cache on object storage (feature `object-store`): S3 and S3-compatible stores (MinIO,
/// R2), the local filesystem, memory — any [`ObjectStore`] of the `object_store` crate.
///
/// - **One object per key** under the prefix, named by a digest of the key (any key is safe:
///   `../`, unicode, 60 kB), holding the entry's expiry and its value.
/// - **Expiry to the millisecond, decided on read**; bucket lifecycle rules (day-grained) only
///   clean up, and [`prune`](CacheDriver::prune) removes expired objects.
/// - **Conditional writes for what must be atomic**: `add` and lock acquisition create the
///   object only if absent (`PutMode::Create`, S3's `If-None-Match: *`) or replace an expired
///   one only if unchanged (`PutMode::Update`, `If-Match` on its ETag); a lock is released only
///   by its owner, by a conditional write on the version it read. `increment`, `hit` and
///   `Cache::rate` are compare-and-swap loops on the object's version: exact, but each step
///   is a read and a write (two requests), so they are for occasional counters, not a busy
///   rate limiter — keep those on Redis or DynamoDB.
/// - **`flush` lists the prefix and deletes in batches**, never an object outside it.
///
/// Values of any size (tens of megabytes) are stored; there is no item limit.
///
/// ```no_run
/// # async fn run() -> jtc_cache::Result<()> {
/// use jtc_cache::{Cache, ObjectStoreDriver};
/// // Credentials, region and endpoint from AWS_* variables.
/// let cache = Cache::new(ObjectStoreDriver::from_url("s3://my-bucket/cache", "app").await?);
/// cache.put("report:7", &"a large rendered report", std::time::Duration::from_secs(600)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ObjectStoreDriver {
    store: Arc<dyn ObjectStore>,
    /// Every object lives under this path.
    root: Path,
    clock: Arc<dyn Clock>,
    /// Compare-and-swap loops of this process on one key take turns here.
    turns: Turns,
    /// The store refused a conditional update (the local filesystem has none): read-modify-
    /// writes run under a guard object.
    guarded: AtomicBool,
}

impl ObjectStoreDriver {
    /// A driver over `store`, keeping its objects under `prefix` (a path: `cache`,
    /// `apps/shop/cache`; empty for the store's root).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            store,
            root: Path::from(prefix.trim_matches('/')),
            clock: Arc::new(SystemClock),
            turns: Turns::default(),
            guarded: AtomicBool::new(false),
        }
    }

    /// A driver on the store at `url` — `s3://bucket/path`, `gs://bucket/path`,
    /// `az://container/path` (with those `object_store` features), `file:///absolute/path`,
    /// `memory://` — keeping its objects under the URL's path and then `prefix`. For S3 the
    /// settings come from the standard environment: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL` (S3-compatible servers,
    /// path-style), `AWS_ALLOW_HTTP=true` for a plain-HTTP test server.
    pub async fn from_url(url: &str, prefix: &str) -> Result<Self> {
        Self::from_url_of("CACHE_OBJECT_STORE_URL", url, prefix)
    }

    /// [`from_url`](Self::from_url), naming `variable` in a configuration error.
    pub(crate) fn from_url_of(variable: &'static str, url: &str, prefix: &str) -> Result<Self> {
        let (store, path) = store_from_url(variable, url)?;
        let joined = [path.as_ref(), prefix.trim_matches('/')]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        Ok(Self::new(store, &joined))
    }

    /// The clock that decides expiry (default: the system's).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The store this driver writes to.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The path every object of this driver lives under (`bucket path/prefix`, no slashes
    /// at either end): what [`new`](Self::new) or [`from_url`](Self::from_url) joined.
    pub fn prefix(&self) -> &str {
        self.root.as_ref()
    }

    /// The store and the path every object of this driver lives under.
    pub(crate) fn into_parts(self) -> (Arc<dyn ObjectStore>, Path) {
        (self.store, self.root)
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }
}

/// The store a URL names, and the path inside it.
fn store_from_url(variable: &'static str, url: &str) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let invalid = |reason: String| -> crate::Error {
        ErrorKind::Config {
            variable,
            value: url.to_owned(),
            reason,
        }
        .into()
    };
    let parsed = url::Url::parse(url).map_err(|e| {
        invalid(format!(
            "{e}; expected s3://bucket/path, file:///path or memory://"
        ))
    })?;
    let path = Path::from(parsed.path().trim_matches('/'));
    let store: Arc<dyn ObjectStore> = match parsed.scheme() {
        "s3" | "s3a" => {
            let bucket = parsed.host_str().filter(|b| !b.is_empty()).ok_or_else(|| {
                invalid("an s3:// URL names a bucket: s3://bucket/path".to_owned())
            })?;
            let mut builder =
                object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            // AWS_ENDPOINT_URL (the name every AWS SDK reads) for S3-compatible servers;
            // object_store itself reads AWS_ENDPOINT.
            if let Ok(endpoint) =
                std::env::var("AWS_ENDPOINT_URL_S3").or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            {
                builder = builder.with_endpoint(endpoint);
            }
            Arc::new(builder.build().map_err(|e| invalid(e.to_string()))?)
        }
        "file" => {
            let store = object_store::local::LocalFileSystem::new_with_prefix(parsed.path())
                .map_err(|e| invalid(e.to_string()))?;
            return Ok((Arc::new(store), Path::default()));
        }
        "memory" => Arc::new(object_store::memory::InMemory::new()),
        other => {
            return Err(invalid(format!(
                "the {other}:// scheme is not built in; expected s3://, file:// or memory://"
            )));
        }
    };
    Ok((store, path))
}

impl CacheDriver for ObjectStoreDriver {
    fn name(&self) -> &'static str {
        "object-store"
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
        one_rate_at_a_time("object-store", by, |consume| self.rate(key, rules, consume))
    }

    fn forget<'a>(&'a self, key: &'a str) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.remove_entry(key))
    }

    fn forget_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.remove_entry_if(key, expected))
    }

    fn pull<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        DriverFuture::new(self.take_entry(key))
    }

    fn touch<'a>(&'a self, key: &'a str, ttl: Option<Duration>) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.touch_entry(key, ttl))
    }

    fn flush(&self) -> DriverFuture<'_, ()> {
        DriverFuture::new(self.delete_all())
    }

    fn prune(&self) -> DriverFuture<'_, u64> {
        DriverFuture::new(self.prune_dead())
    }
}
