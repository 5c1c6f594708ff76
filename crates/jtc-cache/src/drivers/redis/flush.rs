//! `flush` on Redis: `SCAN` every master for keys under the prefix, `UNLINK` them in batches.
//! Never `FLUSHDB`: keys of other applications in the same database stay.

use redis::{
    Cmd, FromRedisValue, Value,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
};

use super::{Connection, Inner};
use crate::{Error, Result};

/// How many keys one `SCAN` step asks for, and one `UNLINK` removes, during `flush`.
const FLUSH_BATCH: usize = 1_000;

impl Inner {
    /// Deletes every key under the prefix: `SCAN` each master, `UNLINK` what it finds.
    pub(super) async fn flush(&self) -> Result<()> {
        let pattern = format!("{}*", glob_escape(&self.prefix));
        for node in self.masters().await? {
            let mut cursor = 0u64;
            loop {
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(FLUSH_BATCH);
                let (next, keys): (u64, Vec<Vec<u8>>) = self.on_node(&node, scan).await?;
                for batch in keys.chunks(FLUSH_BATCH) {
                    let mut unlink = redis::cmd("UNLINK");
                    unlink.arg(batch);
                    self.query::<i64>("flush", unlink).await?;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The nodes that hold keys: the one server, or every cluster master as `(host, port)`.
    async fn masters(&self) -> Result<Vec<Option<(String, u16)>>> {
        if matches!(self.connection, Connection::Standalone(_)) {
            return Ok(vec![None]);
        }
        let nodes: String = self
            .query("flush", redis::cmd("CLUSTER").arg("NODES").clone())
            .await?;
        Ok(cluster_masters(&nodes).into_iter().map(Some).collect())
    }

    async fn on_node<T: FromRedisValue>(
        &self,
        node: &Option<(String, u16)>,
        cmd: Cmd,
    ) -> Result<T> {
        let Some((host, port)) = node.clone() else {
            return self.query("flush", cmd).await;
        };
        let value: Value = self
            .within("flush", |connection| async move {
                let Connection::Cluster(mut c) = connection else {
                    unreachable!("node addresses exist only in cluster mode")
                };
                let routing =
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port });
                c.route_command(cmd, routing).await
            })
            .await?;
        redis::from_redis_value(value).map_err(|e| Error::redis("flush", e.into()))
    }
}

/// Escapes the glob characters of `SCAN MATCH` so a prefix matches only itself.
fn glob_escape(prefix: &str) -> String {
    let mut escaped = String::with_capacity(prefix.len() + 4);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// The `host:port` of every reachable master in `CLUSTER NODES` output.
fn cluster_masters(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                return None;
            }
            // `ip:port@cport[,hostname]`
            let address = fields.get(1)?.split('@').next()?;
            let (host, port) = address.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_escaped_for_scan_patterns() {
        assert_eq!(glob_escape("app:"), "app:");
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }

    #[test]
    fn masters_are_read_from_cluster_nodes() {
        let nodes = "\
07c3 127.0.0.1:30004@40004 slave e7d1 0 1426238317239 4 connected
67ed 127.0.0.1:30002@40002 master - 0 1426238316232 2 connected 5461-10922
292f 127.0.0.1:30003@40003,host.example master - 0 1426238318243 3 connected 10923-16383
e7d1 127.0.0.1:30001@40001 myself,master - 0 0 1 connected 0-5460
aaaa 127.0.0.1:30009@40009 master,fail - 0 0 1 disconnected
";
        assert_eq!(
            cluster_masters(nodes),
            vec![
                ("127.0.0.1".to_owned(), 30002),
                ("127.0.0.1".to_owned(), 30003),
                ("127.0.0.1".to_owned(), 30001),
            ]
        );
    }
}
