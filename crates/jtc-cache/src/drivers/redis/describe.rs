//! How the Redis settings are shown: `jtc cache config`, `Debug` and logs, passwords masked.

use redis::{ConnectionAddr, ConnectionInfo};

use super::config::{MASK, RedisConfig};
use crate::mask_url;

impl RedisConfig {
    /// Where the driver connects, for logs: no password.
    pub(crate) fn target(&self) -> String {
        if !self.sentinel_nodes.is_empty() {
            let nodes: Vec<String> = self.sentinel_nodes.iter().map(|n| mask_url(n)).collect();
            let master = self.sentinel_master.as_deref().unwrap_or("mymaster");
            return format!("sentinel {master} via {}", nodes.join(","));
        }
        if !self.cluster_nodes.is_empty() {
            return format!(
                "cluster {}",
                self.cluster_nodes
                    .iter()
                    .map(|n| mask_url(n))
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
        match &self.url {
            Some(url) => mask_url(url),
            None => format!("redis://{}:{}/{}", self.host, self.port, self.db),
        }
    }

    /// The settings as (name, value) rows, the password masked.
    ///
    /// ```
    /// use jtc_cache::RedisConfig;
    ///
    /// let rows = RedisConfig::from_url("redis://:s3cret@cache.internal:6380/2").describe();
    /// assert!(rows.contains(&("Port", "6380".to_owned())));
    /// assert!(!format!("{rows:?}").contains("s3cret"));
    /// ```
    pub fn describe(&self) -> Vec<(&'static str, String)> {
        let info = self.connection_info().ok();
        let settings = info.as_ref().map(ConnectionInfo::redis_settings);
        let db = settings.map_or(self.db, |s| s.db());
        let username = settings
            .and_then(|s| s.username())
            .or(self.username.as_deref());
        let password = settings
            .and_then(|s| s.password())
            .or(self.password.as_deref());
        let (mut rows, tls) = self.endpoint_rows(info.as_ref(), db);
        rows.extend([
            ("Username", username.unwrap_or("(none)").to_owned()),
            ("Password", password.map_or("(none)", |_| MASK).to_owned()),
            ("TLS", if tls { "yes" } else { "no" }.to_owned()),
            ("Prefix", self.prefix.clone()),
            (
                "Connect Timeout",
                format!("{} ms", self.connect_timeout.as_millis()),
            ),
            (
                "Command Timeout",
                format!("{} ms", self.command_timeout.as_millis()),
            ),
            (
                "Near Cache",
                match (self.near_cache, self.near_cache_max_age) {
                    (None, _) => "off".to_owned(),
                    (Some(n), None) => format!("{n} entries"),
                    (Some(n), Some(age)) => {
                        format!("{n} entries, kept {} ms at most", age.as_millis())
                    }
                },
            ),
        ]);
        rows
    }

    /// The rows that say where the driver connects (Sentinel, cluster or one server), and
    /// whether over TLS.
    fn endpoint_rows(
        &self,
        info: Option<&ConnectionInfo>,
        db: i64,
    ) -> (Vec<(&'static str, String)>, bool) {
        let masked = |nodes: &[String]| -> String {
            nodes
                .iter()
                .map(|n| mask_url(n))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.sentinel_nodes.is_empty() {
            let master = self.sentinel_master.as_deref().unwrap_or("mymaster");
            let rows = vec![
                ("Sentinel Nodes", masked(&self.sentinel_nodes)),
                ("Sentinel Master", master.to_owned()),
                ("Database", db.to_string()),
            ];
            return (rows, false);
        }
        if !self.cluster_nodes.is_empty() {
            // In cluster mode the nodes are all there is: a REDIS_URL is not used.
            let tls = self
                .cluster_nodes
                .iter()
                .any(|n| n.starts_with("rediss://"));
            return (vec![("Cluster Nodes", masked(&self.cluster_nodes))], tls);
        }
        let (host, port, tls) = match info.map(ConnectionInfo::addr) {
            Some(ConnectionAddr::Tcp(host, port)) => (host.clone(), port.to_string(), false),
            Some(ConnectionAddr::TcpTls { host, port, .. }) => {
                (host.clone(), port.to_string(), true)
            }
            Some(other) => (other.to_string(), "-".to_owned(), false),
            None => (self.host.clone(), self.port.to_string(), false),
        };
        let mut rows = Vec::new();
        if let Some(url) = &self.url {
            rows.push(("URL", mask_url(url)));
        }
        rows.extend([("Host", host), ("Port", port), ("Database", db.to_string())]);
        (rows, tls)
    }
}
