//! `MemcachedDriver`: the cache on one or more memcached servers, over the meta protocol.
//!
//! The handle, its constructors and the namespace are here; the protocol in `wire.rs`,
//! connections in `conn.rs`, which server holds a key in `ring.rs`, wire keys in `keys.rs`,
//! stored formats in `item.rs`, entry operations in `entries.rs`, counters and
//! `Cache::rate` in `counters.rs`.

mod config;
mod conn;
mod counters;
mod entries;
mod item;
mod keys;
mod ring;
mod wire;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;

pub use config::MemcachedConfig;
use conn::Server;
use ring::Ring;
use wire::Status;

use crate::{
    CacheDriver, Clock, DriverFuture, ErrorKind, Hit, RateRule, RateVerdict, Result,
    contention::Turns, driver::one_rate_at_a_time, held::Held,
};

/// The cache on memcached servers (feature `memcached`).
///
/// - **Several servers**: keys are spread by consistent hashing (ketama-style), so adding a
///   server moves about 1/N of the keys; a server that is down fails only the calls for its
///   keys, within the timeout.
/// - **Flush by namespace**: every key carries this cache's namespace version, and
///   [`flush`](CacheDriver::flush) writes a new one. Only this prefix's entries go; other
///   applications on the same servers keep theirs (`flush_all` is never sent).
/// - **Exact counters**: `increment` and the rate limiter's `hit` are one native `ma`
///   command each, a missing counter created with `add`, race-free; TTLs keep millisecond
///   precision (memcached's own clock has whole seconds).
/// - **Any key**: keys that memcached cannot take (spaces, control characters, unicode, over
///   250 bytes) are sent as a hash; no key can inject a command.
///
/// Values above memcached's item limit (1 MiB by default) are refused with
/// [`ErrorKind::ValueTooLarge`](crate::ErrorKind::ValueTooLarge); the `Cache` compresses large
/// values first.
///
/// ```no_run
/// # async fn run() -> jtc_cache::Result<()> {
/// use jtc_cache::{Cache, MemcachedDriver};
/// let cache = Cache::new(MemcachedDriver::connect("127.0.0.1:11211,127.0.0.1:11212", "app:").await?);
/// cache.put("greeting", &"hello", std::time::Duration::from_secs(60)).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MemcachedDriver {
    servers: Vec<Server>,
    /// One namespace per server, at the same index: adding a server, or losing one, leaves
    /// the versions on the others alone.
    namespaces: Vec<Held>,
    ring: Ring,
    prefix: String,
    clock: Arc<dyn Clock>,
    /// Compare-and-set loops of this process on one key take turns here.
    turns: Turns,
}

/// Where a key lives: its server and its wire key.
#[derive(Debug)]
struct At<'a> {
    server: &'a Server,
    wire: Vec<u8>,
    /// The key as the caller gave it, for errors.
    key: &'a str,
}

impl MemcachedDriver {
    /// Connects to `servers` (`host:port` separated by commas) with key prefix `prefix`, the
    /// other settings at their defaults. Reads the namespace versions, so a setup where no
    /// server answers fails here.
    pub async fn connect(servers: &str, prefix: &str) -> Result<Self> {
        Self::from_config(&MemcachedConfig::new(servers).prefix(prefix)).await
    }

    /// Connects with `config`.
    pub async fn from_config(config: &MemcachedConfig) -> Result<Self> {
        config.check()?;
        let driver = Self {
            servers: config
                .servers
                .iter()
                .map(|addr| Server::new(addr.clone(), config.max_connections, config.timeout))
                .collect(),
            namespaces: config
                .servers
                .iter()
                .map(|_| Held::new(config.namespace_check))
                .collect(),
            ring: Ring::new(&config.servers),
            prefix: config.prefix.clone(),
            clock: Arc::clone(&config.clock),
            turns: Turns::default(),
        };
        let mut first_error = None;
        for index in 0..driver.servers.len() {
            match driver.version(index).await {
                Ok(_) => return Ok(driver),
                Err(err) => first_error = first_error.or(Some(err)),
            }
        }
        Err(first_error.expect("at least one server"))
    }

    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// The server holding `key` and its wire key under that server's namespace.
    async fn route<'a>(&'a self, key: &'a str) -> Result<At<'a>> {
        let index = self.ring.server_of(key.as_bytes());
        let version = self.version(index).await?;
        Ok(At {
            server: &self.servers[index],
            wire: keys::wire_key(&self.prefix, &version, key),
            key,
        })
    }

    /// The namespace version on server `index`: the one held if it is recent enough, else
    /// read from the server (and created there if missing).
    async fn version(&self, index: usize) -> Result<Arc<str>> {
        self.namespaces[index]
            .get(|| self.read_version(&self.servers[index]))
            .await
    }

    async fn read_version(&self, server: &Server) -> Result<Arc<str>> {
        let key = keys::namespace_key(&self.prefix);
        loop {
            let mut request = Vec::new();
            wire::get(&mut request, &key, "v");
            let reply = server.one("namespace", &request).await?;
            if let Some(value) = reply.value.filter(|v| !v.is_empty()) {
                return Ok(String::from_utf8_lossy(&value).into());
            }
            // None yet (a new prefix or server, or evicted): add one; if another process
            // added one first, read that.
            let version = new_version();
            let mut request = Vec::new();
            let parts: [&[u8]; 1] = [version.as_bytes()];
            wire::set(&mut request, &key, &parts, 0, 0, wire::Mode::Add, None);
            if server.one("namespace", &request).await?.status == Status::Done {
                return Ok(version.into());
            }
        }
    }

    /// Starts a new namespace on every server: every entry of this prefix is out of reach at
    /// once. A server that cannot be reached keeps its entries, and the flush is an error
    /// naming it.
    async fn flush_namespace(&self) -> Result<()> {
        let key = keys::namespace_key(&self.prefix);
        let mut unreached = Vec::new();
        for (server, namespace) in self.servers.iter().zip(&self.namespaces) {
            let version = new_version();
            let mut request = Vec::new();
            let parts: [&[u8]; 1] = [version.as_bytes()];
            wire::set(&mut request, &key, &parts, 0, 0, wire::Mode::Set, None);
            match server.one("flush", &request).await {
                Ok(_) => namespace.hold(version.into()),
                Err(err) => unreached.push(err.to_string()),
            }
        }
        if unreached.is_empty() {
            return Ok(());
        }
        Err(ErrorKind::Memcached {
            operation: "flush",
            server: unreached.len().to_string() + " server(s)",
            reason: unreached.join("; "),
        }
        .into())
    }
}

/// A namespace version: 12 random hex digits, so an evicted version is never reused.
fn new_version() -> String {
    crate::keys::token()[..12].to_owned()
}

impl CacheDriver for MemcachedDriver {
    fn name(&self) -> &'static str {
        "memcached"
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
        one_rate_at_a_time("memcached", by, |consume| self.rate(key, rules, consume))
    }

    fn forget<'a>(&'a self, key: &'a str) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.remove_entry(key))
    }

    fn forget_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.remove_entry_if(key, expected))
    }

    fn pull<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        DriverFuture::new(self.take(key, "pull", |_| true))
    }

    fn touch<'a>(&'a self, key: &'a str, ttl: Option<Duration>) -> DriverFuture<'a, bool> {
        DriverFuture::new(self.touch_entry(key, ttl))
    }

    fn flush(&self) -> DriverFuture<'_, ()> {
        DriverFuture::new(self.flush_namespace())
    }

    fn many<'a>(&'a self, keys: &'a [&'a str]) -> DriverFuture<'a, Vec<Option<Bytes>>> {
        DriverFuture::new(self.get_many(keys))
    }
}
