//! `RedisDriver`: entries in Redis, standalone or Cluster.
//!
//! # Connections
//!
//! A standalone server is reached through redis-rs's `ConnectionManager`: one multiplexed
//! connection that pipelines every concurrent request of the process over a single socket and
//! reconnects by itself after a failure. A cluster is reached through redis-rs's async cluster
//! connection, which keeps one multiplexed connection per node and follows slot moves. We chose
//! these over a pool (deadpool-redis): with 32 concurrent tasks a multiplexed connection
//! batches their commands into few writes and reads, so the server, not the client, is the
//! limit (see docs/benchmarks.md), and recovery needs no pool recycling.
//!
//! Every call is bounded by the command timeout (default 500 ms): while Redis is down, calls fail
//! with [`ErrorKind::Timeout`] or [`ErrorKind::Redis`] in that time instead of waiting for a
//! reconnect, and nothing is queued to be replayed later. The connection recovers by itself when Redis returns.
//!
//! # Keys and values
//!
//! Every key is stored under the prefix (default `jtc_cache:`). Values are stored as they are
//! given: integers as plain decimal text, so `INCRBY` works and `redis-cli GET` shows `42`.

use std::{fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use redis::{
    Cmd, FromRedisValue, Script, aio::ConnectionManager, cluster_async::ClusterConnection,
};

use self::{
    connection::{
        Connection, Live, PushSink, connect_cluster, connect_standalone, install_tls_provider,
    },
    sentinel::SentinelLink,
};

mod config;
mod connection;
mod describe;
mod entries;
mod flush;
mod near;
mod rate;
mod sentinel;

pub use config::RedisConfig;

use crate::{
    Error, ErrorKind, Hit, RateRule, RateVerdict, Result,
    driver::{CacheDriver, DriverFuture},
};

/// Increment a counter by ARGV[2], giving it the window (ARGV[1]) as TTL when it has none
/// (new, or left without a TTL by a plain `INCR`), and return the count and the milliseconds
/// left: one round trip.
const HIT_SCRIPT: &str = include_str!("hit.lua");

/// Make a live key persistent; `PERSIST` alone cannot tell a missing key from a key without TTL.
const PERSIST_SCRIPT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('PERSIST', KEYS[1])
return 1
";

/// Delete a key only if it holds the expected value: a lock's owner releasing it.
const FORGET_IF_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// A cache driver on a Redis server or a Redis Cluster.
///
/// Cheap to clone: clones share the connection.
///
/// ```no_run
/// # async fn run() -> jtc_cache::Result<()> {
/// use jtc_cache::{Cache, RedisDriver};
///
/// let cache = Cache::new(RedisDriver::connect("redis://127.0.0.1:6379/0", "jtc_cache:").await?);
/// cache.increment("visits", 1).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisDriver {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    connection: Connection,
    prefix: String,
    command_timeout: Duration,
    hit: Script,
    rate: Script,
    persist: Script,
    forget_if: Script,
    /// Where the driver connects, passwords masked: for `Debug` and logs.
    target: String,
    /// The near cache, when on (`RedisConfig::near_cache`).
    near: Option<Arc<near::Near>>,
}

impl fmt::Debug for RedisDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisDriver")
            .field("target", &self.inner.target)
            .field("prefix", &self.inner.prefix)
            .field("command_timeout", &self.inner.command_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisDriver {
    /// Connects to the server at `url` (`redis://` or, for TLS, `rediss://`) and stores keys
    /// under `prefix`. Fails if the server cannot be reached within the connect timeout (1 s).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        Self::from_config(&RedisConfig::from_url(url).prefix(prefix)).await
    }

    /// A driver over the app's own standalone connection, so the app and its cache share one
    /// multiplexed socket instead of opening a second. Keys are stored under `prefix`; every
    /// call is bounded by the default command timeout (500 ms; see
    /// [`with_command_timeout`](Self::with_command_timeout)). Reconnection is the manager's
    /// own, as the app configured it.
    ///
    /// ```no_run
    /// # async fn app() -> Result<(), Box<dyn std::error::Error>> {
    /// use jtc_cache::{Cache, RedisDriver};
    ///
    /// let client = redis::Client::open("redis://127.0.0.1:6379/0")?;
    /// let manager = redis::aio::ConnectionManager::new(client).await?;
    /// // The app keeps using `manager` for its own commands; the cache shares it.
    /// let cache = Cache::new(RedisDriver::from_connection_manager(manager.clone(), "app_cache:"));
    /// # Ok(()) }
    /// ```
    pub fn from_connection_manager(manager: ConnectionManager, prefix: &str) -> Self {
        Self::from_connection(
            Connection::Standalone(manager),
            prefix,
            "an existing connection",
        )
    }

    /// A driver over the app's own Redis Cluster connection; see
    /// [`from_connection_manager`](Self::from_connection_manager).
    ///
    /// ```no_run
    /// # async fn app() -> Result<(), Box<dyn std::error::Error>> {
    /// use jtc_cache::{Cache, RedisDriver};
    ///
    /// let client = redis::cluster::ClusterClient::new(vec!["redis://127.0.0.1:7000"])?;
    /// let connection = client.get_async_connection().await?;
    /// let cache = Cache::new(RedisDriver::from_cluster_connection(connection, "app_cache:"));
    /// # Ok(()) }
    /// ```
    pub fn from_cluster_connection(connection: ClusterConnection, prefix: &str) -> Self {
        Self::from_connection(
            Connection::Cluster(connection),
            prefix,
            "an existing cluster connection",
        )
    }

    /// The same driver with every call bounded by `timeout` instead.
    #[must_use]
    pub fn with_command_timeout(self, timeout: Duration) -> Self {
        let inner = Inner {
            command_timeout: timeout,
            ..(*self.inner).clone()
        };
        Self {
            inner: Arc::new(inner),
        }
    }

    fn from_connection(connection: Connection, prefix: &str, target: &str) -> Self {
        Self {
            inner: Arc::new(Inner::new(
                connection,
                prefix.to_owned(),
                config::DEFAULT_COMMAND_TIMEOUT,
                target.to_owned(),
            )),
        }
    }

    /// Connects as `config` says: standalone, or cluster when it lists cluster nodes.
    pub async fn from_config(config: &RedisConfig) -> Result<Self> {
        install_tls_provider();
        if config.near_cache.is_some() && !config.sentinel_nodes.is_empty() {
            return Err(ErrorKind::Config {
                variable: "REDIS_NEAR_CACHE",
                value: config.near_cache.unwrap_or_default().to_string(),
                reason: "the near cache works on a standalone server or a cluster, not \
                         through Sentinel (set it to 0)"
                    .to_owned(),
            }
            .into());
        }
        let near = config.near_cache.map(|entries| {
            Arc::new(near::Near::new(
                &config.prefix,
                entries,
                near::MAX_VALUE,
                config
                    .near_cache_max_age
                    .map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
            ))
        });
        let pushes = near.as_ref().map(|near| {
            let near = Arc::clone(near);
            let sink: PushSink = Arc::new(move |push: &redis::PushInfo| near.on_push(push));
            sink
        });
        let connect = async {
            if !config.sentinel_nodes.is_empty() {
                let link = SentinelLink::connect(config).await?;
                Ok(Connection::Sentinel(Arc::new(link)))
            } else if config.cluster_nodes.is_empty() {
                connect_standalone(config, pushes.clone()).await
            } else {
                connect_cluster(config, pushes.clone()).await
            }
        };
        let connection = tokio::time::timeout(config.connect_timeout, connect)
            .await
            .map_err(|_| {
                Error::from(ErrorKind::Timeout {
                    operation: "connect",
                    after: config.connect_timeout,
                })
            })??;
        let mut inner = Inner::new(
            connection,
            config.prefix.clone(),
            config.command_timeout,
            config.target(),
        );
        inner.near = near;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// The prefix every key is stored under.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// Whether the driver talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.connection, Connection::Cluster(_))
    }
}

impl Inner {
    fn new(
        connection: Connection,
        prefix: String,
        command_timeout: Duration,
        target: String,
    ) -> Self {
        Self {
            connection,
            prefix,
            command_timeout,
            hit: Script::new(HIT_SCRIPT),
            rate: Script::new(rate::SCRIPT),
            persist: Script::new(PERSIST_SCRIPT),
            forget_if: Script::new(FORGET_IF_SCRIPT),
            target,
            near: None,
        }
    }

    /// `key` under the driver's prefix, as one command argument.
    fn key<'k>(&'k self, key: &'k str) -> FullKey<'k> {
        FullKey {
            prefix: &self.prefix,
            key,
        }
    }

    /// The command `name` on `key` (under the driver's prefix), its buffers made once for the
    /// `more` arguments of `more_bytes` in all that follow: built by `redis::cmd` and `arg`,
    /// the buffers grew (a reallocation or two) on every command.
    fn command(&self, name: &str, key: &str, more: usize, more_bytes: usize) -> Cmd {
        let bytes = name.len() + self.prefix.len() + key.len() + more_bytes;
        let mut cmd = Cmd::with_capacity(2 + more, bytes);
        cmd.arg(name).arg(self.key(key));
        cmd
    }

    /// Runs `call` on a live connection, bounded by the command timeout (finding the master
    /// through Sentinel included).
    async fn within<T, F, Fut>(&self, operation: &'static str, call: F) -> Result<T>
    where
        F: FnOnce(Live) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async { call(self.connection.live().await?).await };
        match tokio::time::timeout(self.command_timeout, attempt).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                self.connection.failed(Some(&error));
                Err(Error::redis(operation, error))
            }
            Err(_) => {
                self.connection.failed(None);
                Err(ErrorKind::Timeout {
                    operation,
                    after: self.command_timeout,
                }
                .into())
            }
        }
    }

    async fn query<T: FromRedisValue>(&self, operation: &'static str, cmd: Cmd) -> Result<T> {
        let written = self.written_key(operation, &cmd);
        self.forget_near(written.as_deref());
        let value = self
            .within(operation, |mut live| async move {
                cmd.query_async(&mut live).await
            })
            .await;
        self.forget_near(written.as_deref());
        value
    }

    async fn run_script<T: FromRedisValue>(
        &self,
        operation: &'static str,
        script: &Script,
        key: &str,
        arg: impl redis::ToRedisArgs + Send,
    ) -> Result<T> {
        self.forget_near(Some(key.as_bytes()));
        let value = self
            .within(operation, |mut connection| async move {
                let mut invocation = script.key(self.key(key));
                invocation.arg(arg);
                invocation.invoke_async(&mut connection).await
            })
            .await;
        self.forget_near(Some(key.as_bytes()));
        value
    }
}

/// A key under the driver's prefix, written straight into the command's buffer as one
/// argument: no `Vec` of its own per command.
#[derive(Clone, Copy)]
struct FullKey<'k> {
    prefix: &'k str,
    key: &'k str,
}

impl redis::ToRedisArgs for FullKey<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write as _;
        let mut arg = out.writer_for_next_arg();
        // Writing into the command's own buffer cannot fail.
        let _ = arg.write_all(self.prefix.as_bytes());
        let _ = arg.write_all(self.key.as_bytes());
    }
}

impl CacheDriver for RedisDriver {
    fn name(&self) -> &'static str {
        "redis"
    }

    #[inline]
    fn get<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        if self.inner.near.is_some() {
            return DriverFuture::held(self, key);
        }
        DriverFuture::new(self.inner.get(key))
    }

    fn get_now(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        let held = self.inner.near.as_ref()?.lookup(key)?;
        Some(Ok(Some(held)))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, ()> {
        DriverFuture::new(self.inner.put(key, value, ttl))
    }

    fn add<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.inner.add(key, value, ttl))
    }

    fn increment<'a>(&'a self, key: &'a str, by: i64) -> DriverFuture<'a, i64> {
        DriverFuture::new(self.inner.increment(key, by))
    }

    fn hit_by<'a>(&'a self, key: &'a str, window: Duration, by: u64) -> DriverFuture<'a, Hit> {
        DriverFuture::new(self.inner.hit(key, window, by.max(1)))
    }

    fn rate<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        consume: bool,
    ) -> DriverFuture<'a, Vec<RateVerdict>> {
        DriverFuture::new(self.inner.rate(key, rules, consume))
    }

    fn rate_by<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        by: u64,
    ) -> DriverFuture<'a, Vec<Vec<RateVerdict>>> {
        DriverFuture::new(self.inner.rate_by(key, rules, by))
    }

    fn forget<'a>(&'a self, key: &'a str) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.inner.forget(key))
    }

    fn forget_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.inner.forget_if(key, expected))
    }

    fn pull<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        DriverFuture::new(self.inner.pull(key))
    }

    fn touch<'a>(&'a self, key: &'a str, ttl: Option<Duration>) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.inner.touch(key, ttl))
    }

    fn flush(&self) -> DriverFuture<'_, ()> {
        DriverFuture::new(self.inner.flush())
    }

    fn many<'a>(&'a self, keys: &'a [&'a str]) -> DriverFuture<'a, Vec<Option<Bytes>>> {
        DriverFuture::new(self.inner.many(keys))
    }

    fn put_many<'a>(
        &'a self,
        entries: &'a [(&'a str, Bytes)],
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, ()> {
        DriverFuture::new(self.inner.put_many(entries, ttl))
    }

    fn stats(&self) -> crate::DriverStats {
        self.near_cache_stats()
            .map(crate::DriverStats::with_near_cache)
            .unwrap_or_default()
    }
}
