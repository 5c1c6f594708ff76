//! `RedisConfig`: where the Redis driver connects and how long it waits.

use std::{fmt, time::Duration};

use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};

use crate::mask_url;
use crate::{Error, ErrorKind, Result};

/// The key prefix unless configured otherwise.
pub(crate) const DEFAULT_PREFIX: &str = "jtc_cache:";
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
pub(super) const MASK: &str = crate::secrets::MASK;

/// Settings of the Redis driver.
///
/// `Debug`, [`describe`](Self::describe) and every error mask the password, including one
/// inside `url`.
///
/// ```
/// use jtc_cache::RedisConfig;
/// use std::time::Duration;
///
/// let config = RedisConfig::from_url("redis://:s3cret@cache.internal:6380/2")
///     .prefix("shop:")
///     .command_timeout(Duration::from_millis(200));
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// A full URL, `redis://[user:password@]host[:port][/db]` or `rediss://...` for TLS
    /// (`REDIS_URL`). When set, host, port and database come from it. Default: none.
    pub url: Option<String>,
    /// The server's host (`REDIS_HOST`). Default: `127.0.0.1`.
    pub host: String,
    /// The server's port (`REDIS_PORT`). Default: 6379.
    pub port: u16,
    /// The database number (`REDIS_DB`). Default: 0.
    pub db: i64,
    /// The ACL user (`REDIS_USERNAME`); used when the URL names none. Default: none.
    pub username: Option<String>,
    /// The password (`REDIS_PASSWORD`); used when the URL has none. Default: none.
    pub password: Option<String>,
    /// What every key is stored under (`REDIS_CACHE_PREFIX`). Default: `jtc_cache:`.
    pub prefix: String,
    /// `host:port` (or URL) of cluster nodes (`REDIS_CLUSTER_NODES`, comma separated); when
    /// non-empty the driver runs in cluster mode. Default: empty.
    pub cluster_nodes: Vec<String>,
    /// How long connecting may take (`REDIS_CONNECT_TIMEOUT_MS`). Default: 1 s.
    pub connect_timeout: Duration,
    /// How long one cache call may wait for Redis (`REDIS_COMMAND_TIMEOUT_MS`). A cache slower
    /// than this is treated as down: the call fails rather than stall the request. Default:
    /// 500 ms.
    pub command_timeout: Duration,
    /// Connect to `host` and `port` over TLS, as a `rediss://` URL does. Default: no.
    pub tls: bool,
    /// `host:port` of Redis Sentinels (`REDIS_SENTINEL_NODES`, comma separated); when
    /// non-empty the driver asks them for the master and follows failovers. Default: empty.
    pub sentinel_nodes: Vec<String>,
    /// The name the Sentinels monitor the master under (`REDIS_SENTINEL_MASTER`). Default:
    /// `mymaster`.
    pub sentinel_master: Option<String>,
    /// The near cache's size in entries (`REDIS_NEAR_CACHE`): reads are kept in process and
    /// invalidated by the server (RESP3 client tracking); see [`RedisConfig::near_cache`].
    /// Default: off.
    pub near_cache: Option<usize>,
    /// How long the near cache may keep a value at most (`REDIS_NEAR_CACHE_MAX_AGE_MS`), on
    /// top of the key's own TTL on the server. Default: no limit (the server's invalidations
    /// and the key's TTL decide).
    pub near_cache_max_age: Option<Duration>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            host: "127.0.0.1".to_owned(),
            port: 6379,
            db: 0,
            username: None,
            password: None,
            prefix: DEFAULT_PREFIX.to_owned(),
            cluster_nodes: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            tls: false,
            sentinel_nodes: Vec::new(),
            sentinel_master: None,
            near_cache: None,
            near_cache_max_age: None,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.url.as_deref().map(mask_url))
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| MASK))
            .field("prefix", &self.prefix)
            .field("cluster_nodes", &self.cluster_nodes)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("tls", &self.tls)
            .field("near_cache", &self.near_cache)
            .field("near_cache_max_age", &self.near_cache_max_age)
            .field("sentinel_nodes", &self.sentinel_nodes)
            .field("sentinel_master", &self.sentinel_master)
            .finish()
    }
}

impl RedisConfig {
    /// Settings for the server at `url`, everything else default.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: Some(url.into()),
            ..Self::default()
        }
    }

    /// Settings for a cluster reached through any of `nodes` (`host:port`).
    pub fn cluster<S: Into<String>>(nodes: impl IntoIterator<Item = S>) -> Self {
        Self {
            cluster_nodes: nodes.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Connects to `host` (with [`port`](Self::port)) instead of a URL.
    ///
    /// ```
    /// use jtc_cache::RedisConfig;
    ///
    /// let config = RedisConfig::default().host("cache.internal").port(6380).db(2).tls(true);
    /// assert_eq!((config.host.as_str(), config.port, config.db, config.tls), ("cache.internal", 6380, 2, true));
    /// ```
    #[must_use]
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// The server's port, with [`host`](Self::host).
    #[must_use]
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The database number, with [`host`](Self::host) (a URL names its own).
    #[must_use]
    pub fn db(mut self, db: i64) -> Self {
        self.db = db;
        self
    }

    /// The ACL user, used when the URL names none.
    ///
    /// ```
    /// use jtc_cache::RedisConfig;
    ///
    /// let config = RedisConfig::default().username("app").password("s3cret");
    /// assert_eq!(config.username.as_deref(), Some("app"));
    /// assert!(!format!("{config:?}").contains("s3cret"));
    /// ```
    #[must_use]
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// TLS to [`host`](Self::host) and [`port`](Self::port), as a `rediss://` URL asks for. The
    /// server's certificate is checked against the system's roots (or `SSL_CERT_FILE`).
    #[must_use]
    pub fn tls(mut self, enabled: bool) -> Self {
        self.tls = enabled;
        self
    }

    /// The master the Sentinels at `nodes` monitor as `master`: the driver asks them where
    /// it is, and again after a failover. Database, credentials and timeouts apply to the
    /// master as usual.
    ///
    /// ```
    /// use jtc_cache::RedisConfig;
    ///
    /// let config = RedisConfig::sentinel(["10.0.0.1:26379", "10.0.0.2:26379"], "cache").db(1);
    /// assert_eq!(config.sentinel_master.as_deref(), Some("cache"));
    /// ```
    pub fn sentinel<S: Into<String>>(
        nodes: impl IntoIterator<Item = S>,
        master: impl Into<String>,
    ) -> Self {
        Self {
            sentinel_nodes: nodes.into_iter().map(Into::into).collect(),
            sentinel_master: Some(master.into()),
            ..Self::default()
        }
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the password.
    #[must_use]
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Sets how long connecting may take.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long one call may wait for Redis.
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Keeps up to `max_entries` values read from Redis in this process (a near cache): a
    /// read of a held key costs no network at all. Coherent through Redis's server-assisted
    /// client-side caching (RESP3 `CLIENT TRACKING`, Redis 6+): when any client changes a key
    /// this process holds, the server tells it, and the copy is dropped; a lost connection
    /// drops them all. Standalone and Cluster; not with Sentinel. Off by default; `0` turns
    /// it off. See docs/drivers.md for the exact guarantee.
    #[must_use]
    pub fn near_cache(mut self, max_entries: usize) -> Self {
        self.near_cache = (max_entries > 0).then_some(max_entries);
        self
    }

    /// The longest the near cache keeps a value (the key's TTL on the server is always an
    /// upper bound too): a safety net for copies of keys no one changes for a long time.
    #[must_use]
    pub fn near_cache_max_age(mut self, max_age: Duration) -> Self {
        self.near_cache_max_age = Some(max_age);
        self
    }

    /// Reads the `REDIS_*` variables through `var` (unset or empty: default).
    pub(crate) fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let mut config = Self {
            url: var("REDIS_URL"),
            username: var("REDIS_USERNAME"),
            password: var("REDIS_PASSWORD"),
            ..Self::default()
        };
        if let Some(url) = &config.url {
            url.as_str()
                .into_connection_info()
                .map_err(|e| ErrorKind::Config {
                    variable: "REDIS_URL",
                    value: mask_url(url),
                    reason: format!(
                        "not a Redis URL ({e}); expected redis://host:port/db or rediss://..."
                    ),
                })?;
        }
        if let Some(host) = var("REDIS_HOST") {
            config.host = host;
        }
        if let Some(port) = var("REDIS_PORT") {
            config.port = parse(&port)
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("REDIS_PORT", &port, "a port number from 1 to 65535"))?;
        }
        if let Some(db) = var("REDIS_DB") {
            config.db = parse(&db)
                .filter(|db: &i64| *db >= 0)
                .ok_or_else(|| invalid("REDIS_DB", &db, "a database number, 0 or more"))?;
        }
        if let Some(prefix) = var("REDIS_CACHE_PREFIX") {
            config.prefix = prefix;
        }
        if let Some(nodes) = var("REDIS_CLUSTER_NODES") {
            config.cluster_nodes = parse_nodes("REDIS_CLUSTER_NODES", &nodes)?;
        }
        if let Some(nodes) = var("REDIS_SENTINEL_NODES") {
            config.sentinel_nodes = parse_nodes("REDIS_SENTINEL_NODES", &nodes)?;
        }
        config.sentinel_master = var("REDIS_SENTINEL_MASTER");
        if let Some(entries) = var("REDIS_NEAR_CACHE") {
            let entries: usize = parse(&entries).ok_or_else(|| {
                invalid("REDIS_NEAR_CACHE", &entries, "a number of entries (0: off)")
            })?;
            config = config.near_cache(entries);
        }
        if let Some(ms) = var("REDIS_NEAR_CACHE_MAX_AGE_MS") {
            let ms: u64 = parse(&ms).ok_or_else(|| {
                invalid(
                    "REDIS_NEAR_CACHE_MAX_AGE_MS",
                    &ms,
                    "a number of milliseconds",
                )
            })?;
            config = config.near_cache_max_age(Duration::from_millis(ms));
        }
        for (variable, field) in [
            ("REDIS_CONNECT_TIMEOUT_MS", &mut config.connect_timeout),
            ("REDIS_COMMAND_TIMEOUT_MS", &mut config.command_timeout),
        ] {
            if let Some(ms) = var(variable) {
                let ms: u64 = parse(&ms)
                    .filter(|ms| *ms > 0)
                    .ok_or_else(|| invalid(variable, &ms, "a number of milliseconds, 1 or more"))?;
                *field = Duration::from_millis(ms);
            }
        }
        Ok(config)
    }

    /// What a standalone connection uses: the URL, or host, port and database, plus the
    /// credentials the URL lacks.
    pub(crate) fn connection_info(&self) -> Result<ConnectionInfo> {
        let info = match &self.url {
            Some(url) => url.as_str().into_connection_info(),
            None if self.tls => ConnectionAddr::TcpTls {
                host: self.host.clone(),
                port: self.port,
                insecure: false,
                tls_params: None,
            }
            .into_connection_info(),
            None => ConnectionAddr::Tcp(self.host.clone(), self.port).into_connection_info(),
        }
        .map_err(|e| Error::redis("connect", e))?;
        let mut settings = info.redis_settings().clone();
        if self.url.is_none() {
            settings = settings.set_db(self.db);
        }
        if let (Some(username), None) = (&self.username, settings.username()) {
            settings = settings.set_username(username);
        }
        if let (Some(password), None) = (&self.password, settings.password()) {
            settings = settings.set_password(password);
        }
        if self.near_cache.is_some() {
            // Invalidations arrive as RESP3 pushes on the connection that reads.
            settings = settings.set_protocol(redis::ProtocolVersion::RESP3);
        }
        Ok(info.set_redis_settings(settings))
    }

    /// The seed nodes of a cluster.
    pub(crate) fn cluster_connection_infos(&self) -> Result<Vec<ConnectionInfo>> {
        node_infos(&self.cluster_nodes)
    }

    /// The Sentinels to ask for the master.
    pub(crate) fn sentinel_connection_infos(&self) -> Result<Vec<ConnectionInfo>> {
        node_infos(&self.sentinel_nodes)
    }
}

/// `host:port` (or full URLs) as connection infos.
fn node_infos(nodes: &[String]) -> Result<Vec<ConnectionInfo>> {
    nodes
        .iter()
        .map(|node| {
            let url = if node.contains("://") {
                node.clone()
            } else {
                format!("redis://{node}")
            };
            url.as_str()
                .into_connection_info()
                .map_err(|e| Error::redis("connect", e))
        })
        .collect()
}

fn parse<T: std::str::FromStr>(value: &str) -> Option<T> {
    value.trim().parse().ok()
}

fn invalid(variable: &'static str, value: &str, expected: &str) -> Error {
    ErrorKind::Config {
        variable,
        value: value.to_owned(),
        reason: format!("expected {expected}"),
    }
    .into()
}

fn parse_nodes(variable: &'static str, nodes: &str) -> Result<Vec<String>> {
    nodes
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|node| {
            let address = node.rsplit('@').next().unwrap_or(node);
            let address = address.split("://").last().unwrap_or(address);
            let valid = address.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
            });
            if valid {
                Ok(node.to_owned())
            } else {
                Err(invalid(
                    variable,
                    &mask_url(node),
                    "host:port entries separated by commas",
                ))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_reach_the_connection() {
        let config = RedisConfig::default()
            .host("cache.internal")
            .port(6380)
            .db(3)
            .username("app")
            .password("pw")
            .tls(true);
        let info = config.connection_info().unwrap();
        assert!(matches!(
            info.addr(),
            ConnectionAddr::TcpTls { host, port: 6380, .. } if host == "cache.internal"
        ));
        let settings = info.redis_settings();
        assert_eq!((settings.db(), settings.username()), (3, Some("app")));
        let rows = config.describe();
        assert!(rows.contains(&("TLS", "yes".to_owned())), "{rows:?}");
        assert!(!format!("{rows:?}").contains("pw\""), "{rows:?}");
    }

    #[test]
    fn a_cluster_describes_its_nodes_not_an_unused_url() {
        let mut config =
            RedisConfig::cluster(["rediss://:pw@10.0.0.1:7000", "rediss://10.0.0.2:7000"]);
        config.url = Some("redis://ignored:6379".to_owned());
        let rows = config.describe();
        let text = format!("{rows:?}");
        assert!(
            !text.contains("ignored") && !text.contains(":pw@"),
            "{text}"
        );
        assert!(rows.contains(&("TLS", "yes".to_owned())), "{text}");
        assert!(
            rows.iter().any(|(name, _)| *name == "Cluster Nodes"),
            "{text}"
        );
    }

    fn from(vars: &[(&str, &str)]) -> Result<RedisConfig> {
        RedisConfig::from_lookup(&|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn reads_every_variable() {
        let config = from(&[
            ("REDIS_HOST", "cache.internal"),
            ("REDIS_PORT", "6380"),
            ("REDIS_DB", "3"),
            ("REDIS_USERNAME", "app"),
            ("REDIS_PASSWORD", "hunter2"),
            ("REDIS_CACHE_PREFIX", "shop:"),
            ("REDIS_CONNECT_TIMEOUT_MS", "250"),
            ("REDIS_COMMAND_TIMEOUT_MS", "100"),
            ("REDIS_NEAR_CACHE", "5000"),
        ])
        .unwrap();
        assert_eq!(
            (config.host.as_str(), config.port, config.db),
            ("cache.internal", 6380, 3)
        );
        assert_eq!(config.near_cache, Some(5_000));
        let resp3 = config.connection_info().unwrap();
        assert_eq!(
            resp3.redis_settings().protocol(),
            redis::ProtocolVersion::RESP3
        );
        assert_eq!(from(&[("REDIS_NEAR_CACHE", "0")]).unwrap().near_cache, None);
        assert_eq!(config.prefix, "shop:");
        assert_eq!(config.command_timeout, Duration::from_millis(100));
        let info = config.connection_info().unwrap();
        assert_eq!(info.redis_settings().password(), Some("hunter2"));
        assert_eq!(info.redis_settings().db(), 3);
    }

    #[test]
    fn bad_values_name_the_variable_and_never_echo_a_password() {
        for (name, value, expected) in [
            ("REDIS_PORT", "70000", "REDIS_PORT"),
            ("REDIS_DB", "-1", "REDIS_DB"),
            (
                "REDIS_COMMAND_TIMEOUT_MS",
                "soon",
                "REDIS_COMMAND_TIMEOUT_MS",
            ),
            ("REDIS_CLUSTER_NODES", "a:1,b", "REDIS_CLUSTER_NODES"),
            ("REDIS_NEAR_CACHE", "lots", "REDIS_NEAR_CACHE"),
            ("REDIS_URL", "http://:topsecret@host", "REDIS_URL"),
        ] {
            let err = from(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert!(!err.contains("topsecret"), "{err}");
        }
    }

    #[test]
    fn passwords_are_masked_everywhere() {
        let config =
            RedisConfig::from_url("redis://app:topsecret@10.0.0.5:6390/4").password("other");
        let shown = format!("{config:?} {:?} {}", config.describe(), config.target());
        assert!(
            !shown.contains("topsecret") && !shown.contains("other"),
            "{shown}"
        );
        let rows = config.describe();
        let row = |name| {
            rows.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(row("Host").as_deref(), Some("10.0.0.5"));
        assert_eq!(row("Port").as_deref(), Some("6390"));
        assert_eq!(row("Database").as_deref(), Some("4"));
        assert_eq!(row("Password").as_deref(), Some(MASK));
        assert_eq!(row("TLS").as_deref(), Some("no"));
        let tls = RedisConfig::from_url("rediss://cache.example:6380").describe();
        assert!(tls.contains(&("TLS", "yes".to_owned())));
    }

    #[test]
    fn cluster_nodes_are_a_comma_list() {
        let config = from(&[("REDIS_CLUSTER_NODES", " 10.0.0.1:7000, 10.0.0.2:7001 ,")]).unwrap();
        assert_eq!(config.cluster_nodes, ["10.0.0.1:7000", "10.0.0.2:7001"]);
        assert_eq!(config.cluster_connection_infos().unwrap().len(), 2);
    }
}
