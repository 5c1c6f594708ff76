//! The memcached driver's settings: `MemcachedConfig`, from code or `MEMCACHED_*` variables.

use std::{fmt, sync::Arc, time::Duration};

use super::keys::check_prefix;
use crate::{Clock, ErrorKind, Result, SystemClock};

/// The key prefix unless configured otherwise.
pub(crate) const DEFAULT_PREFIX: &str = "jtc_cache:";

/// Where the memcached driver connects and how it behaves.
///
/// ```
/// use jtc_cache::MemcachedConfig;
/// use std::time::Duration;
///
/// let config = MemcachedConfig::new("10.0.0.1:11211,10.0.0.2:11211")
///     .prefix("shop:")
///     .timeout(Duration::from_millis(200))
///     .namespace_check(Duration::ZERO); // see every other instance's flush at once
/// assert_eq!(config.servers(), ["10.0.0.1:11211", "10.0.0.2:11211"]);
/// ```
#[derive(Clone)]
pub struct MemcachedConfig {
    pub(super) servers: Vec<String>,
    pub(super) prefix: String,
    pub(super) timeout: Duration,
    pub(super) max_connections: usize,
    pub(super) namespace_check: Duration,
    pub(super) clock: Arc<dyn Clock>,
}

impl fmt::Debug for MemcachedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedConfig")
            .field("servers", &self.servers)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("max_connections", &self.max_connections)
            .field("namespace_check", &self.namespace_check)
            .finish_non_exhaustive()
    }
}

impl PartialEq for MemcachedConfig {
    /// The same settings (the clock is not compared).
    fn eq(&self, other: &Self) -> bool {
        (
            &self.servers,
            &self.prefix,
            self.timeout,
            self.max_connections,
        ) == (
            &other.servers,
            &other.prefix,
            other.timeout,
            other.max_connections,
        ) && self.namespace_check == other.namespace_check
    }
}

impl Eq for MemcachedConfig {}

impl MemcachedConfig {
    /// `servers`: `host:port` entries separated by commas (`127.0.0.1:11211`); a host without
    /// a port takes 11211.
    pub fn new(servers: &str) -> Self {
        Self {
            servers: split_servers(servers),
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: Duration::from_millis(500),
            max_connections: 32,
            namespace_check: Duration::from_secs(1),
            clock: Arc::new(SystemClock),
        }
    }

    /// What every key is stored under (default `jtc_cache:`): printable ASCII without
    /// spaces, at most 64 bytes. Caches with different prefixes share servers without seeing
    /// each other's entries, and `flush` empties only its own prefix.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one call may wait for a server, connecting included (default 500 ms). A
    /// server slower than this fails only the calls for its keys.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connections per server at most (default 32); calls beyond wait for one.
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// How old the namespace version this process holds may get before it is read again
    /// (default 1 s): a `flush` by another process reaches this one within that time; this
    /// process's own `flush` is seen at once. `Duration::ZERO` reads it before every call (one
    /// more command per call).
    #[must_use]
    pub fn namespace_check(mut self, every: Duration) -> Self {
        self.namespace_check = every;
        self
    }

    /// The clock that decides expiry (default: the system's). Instances sharing servers need
    /// clocks in step.
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The servers, in order.
    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    /// Reads `MEMCACHED_SERVERS`, `MEMCACHED_PREFIX`, `MEMCACHED_TIMEOUT_MS` and
    /// `MEMCACHED_NAMESPACE_CHECK_MS`.
    pub(crate) fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let mut config =
            Self::new(&var("MEMCACHED_SERVERS").unwrap_or_else(|| "127.0.0.1:11211".to_owned()));
        if let Some(prefix) = var("MEMCACHED_PREFIX") {
            config.prefix = prefix;
        }
        if let Some(ms) = var("MEMCACHED_TIMEOUT_MS") {
            config.timeout =
                Duration::from_millis(crate::config::millis("MEMCACHED_TIMEOUT_MS", &ms)?);
        }
        if let Some(ms) = var("MEMCACHED_NAMESPACE_CHECK_MS") {
            config.namespace_check =
                Duration::from_millis(crate::config::millis("MEMCACHED_NAMESPACE_CHECK_MS", &ms)?);
        }
        config.check()?;
        Ok(config)
    }

    /// The settings checked: servers present and well formed, the prefix usable.
    pub(super) fn check(&self) -> Result<()> {
        let invalid = |variable: &'static str, value: &str, reason: String| -> crate::Error {
            ErrorKind::Config {
                variable,
                value: value.to_owned(),
                reason,
            }
            .into()
        };
        if self.servers.is_empty() {
            return Err(invalid(
                "MEMCACHED_SERVERS",
                "",
                "no server given; expected host:port[,host:port...]".to_owned(),
            ));
        }
        for server in &self.servers {
            if server.contains('@') {
                return Err(invalid(
                    "MEMCACHED_SERVERS",
                    server,
                    "memcached servers take no credentials (the text protocol has no \
                     authentication); expected host:port"
                        .to_owned(),
                ));
            }
            let port = server.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
            if !matches!(port, Some(Ok(p)) if p > 0) || server.contains(char::is_whitespace) {
                return Err(invalid(
                    "MEMCACHED_SERVERS",
                    server,
                    "expected host:port".to_owned(),
                ));
            }
        }
        if self.timeout.is_zero() {
            return Err(invalid(
                "MEMCACHED_TIMEOUT_MS",
                "0",
                "a zero timeout fails every call; expected 1 or more milliseconds".to_owned(),
            ));
        }
        check_prefix(&self.prefix)
            .map_err(|reason| invalid("MEMCACHED_PREFIX", &self.prefix, reason))
    }

    pub(crate) fn describe(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "Servers",
                self.servers
                    .iter()
                    .map(|server| crate::mask_url(server))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("Prefix", self.prefix.clone()),
            ("Timeout", format!("{} ms", self.timeout.as_millis())),
            (
                "Namespace Check",
                format!("{} ms", self.namespace_check.as_millis()),
            ),
        ]
    }
}

fn split_servers(servers: &str) -> Vec<String> {
    servers
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let bracketed_v6 = s.starts_with('[') && s.ends_with(']');
            if s.contains(':') && !bracketed_v6 && s.matches(':').count() == 1 || s.contains("]:") {
                s.to_owned()
            } else {
                format!("{s}:11211")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> Result<MemcachedConfig> {
        MemcachedConfig::from_lookup(&|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn servers_take_the_default_port() {
        let config = lookup(&[("MEMCACHED_SERVERS", " a:1 , b ,[::1]:2, [::1]")]).unwrap();
        assert_eq!(
            config.servers(),
            ["a:1", "b:11211", "[::1]:2", "[::1]:11211"]
        );
        assert_eq!(lookup(&[]).unwrap().servers(), ["127.0.0.1:11211"]);
    }

    #[test]
    fn bad_settings_name_their_variable() {
        for (vars, variable) in [
            (&[("MEMCACHED_SERVERS", "a:b")][..], "MEMCACHED_SERVERS"),
            (&[("MEMCACHED_SERVERS", "a:0")], "MEMCACHED_SERVERS"),
            (&[("MEMCACHED_SERVERS", ",")], "MEMCACHED_SERVERS"),
            (&[("MEMCACHED_PREFIX", "a b")], "MEMCACHED_PREFIX"),
            (&[("MEMCACHED_TIMEOUT_MS", "soon")], "MEMCACHED_TIMEOUT_MS"),
            (&[("MEMCACHED_TIMEOUT_MS", "0")], "MEMCACHED_TIMEOUT_MS"),
            (
                &[("MEMCACHED_SERVERS", "u:pw@h:11211")],
                "MEMCACHED_SERVERS",
            ),
            (
                &[("MEMCACHED_NAMESPACE_CHECK_MS", "-1")],
                "MEMCACHED_NAMESPACE_CHECK_MS",
            ),
        ] {
            let err = lookup(vars).unwrap_err();
            assert!(err.to_string().contains(variable), "{err}");
        }
    }
}
