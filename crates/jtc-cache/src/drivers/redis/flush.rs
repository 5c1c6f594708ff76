//! `flush` on Redis: `SCAN` every master for keys under the prefix, `UNLINK` them in batches.
//! Never `FLUSHDB`: keys of other applications in the same database stay.

use redis::{
    Cmd, FromRedisValue, Value,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
};

use super::{Connection, Inner, Live};
use crate::{Error, ErrorKind, Result};

/// How many keys one `SCAN` step asks for, and one `UNLINK` removes, during `flush`.
const FLUSH_BATCH: usize = 1_000;

impl Inner {
    /// Deletes every key under the prefix: `SCAN` each master, `UNLINK` what it finds.
    pub(super) async fn flush(&self) -> Result<()> {
        self.clear_near();
        let flushed = self.unlink_prefix().await;
        self.clear_near();
        flushed
    }

    async fn unlink_prefix(&self) -> Result<()> {
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
    /// In a cluster, an error unless the masters that answer own every slot: a flush that
    /// skipped a master would leave its entries behind and still say it flushed.
    async fn masters(&self) -> Result<Vec<Option<(String, u16)>>> {
        if !matches!(self.connection, Connection::Cluster(_)) {
            return Ok(vec![None]);
        }
        let nodes: String = self
            .query("flush", redis::cmd("CLUSTER").arg("NODES").clone())
            .await?;
        let masters = cluster_masters(&nodes);
        let covered: u32 = masters.iter().filter(|m| !m.failing).map(|m| m.slots).sum();
        if covered < SLOTS {
            let mut unreached: Vec<String> = masters
                .iter()
                .filter(|m| m.failing && m.slots > 0)
                .map(|m| format!("{}:{} ({}, {} slots)", m.host, m.port, m.flags, m.slots))
                .collect();
            if unreached.is_empty() {
                unreached.push("unassigned slots".to_owned());
            }
            return Err(ErrorKind::IncompleteFlush {
                covered,
                unreached: unreached.join(", "),
            }
            .into());
        }
        Ok(masters
            .into_iter()
            .filter(|m| !m.failing)
            .map(|m| Some((m.host, m.port)))
            .collect())
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
                let Live::Cluster(mut c) = connection else {
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

/// The slots of a Redis Cluster.
const SLOTS: u32 = 16_384;

/// A master as `CLUSTER NODES` describes it.
#[derive(Debug, PartialEq, Eq)]
struct Master {
    host: String,
    port: u16,
    /// Its flags as the node asked sees them (`master`, `master,fail?`, ...).
    flags: String,
    /// Flagged `fail?` or `fail`: not to be counted on.
    failing: bool,
    /// How many slots it serves.
    slots: u32,
}

/// Every master in `CLUSTER NODES` output, with its slot count.
fn cluster_masters(nodes: &str) -> Vec<Master> {
    nodes.lines().filter_map(parse_master).collect()
}

/// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
fn parse_master(line: &str) -> Option<Master> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let flags = *fields.get(2)?;
    if !flags.split(',').any(|f| f == "master") {
        return None;
    }
    let address = fields.get(1)?.split('@').next()?;
    let (host, port) = address.rsplit_once(':')?;
    let slots = fields.iter().skip(8).map(|range| slot_count(range)).sum();
    Some(Master {
        host: host.to_owned(),
        port: port.parse().ok()?,
        flags: flags.to_owned(),
        failing: flags.split(',').any(|f| f == "fail" || f == "fail?"),
        slots,
    })
}

/// Slots in one entry of a slot list: `0-5460`, `5461`; migrating (`[...]`) ones count 0.
fn slot_count(range: &str) -> u32 {
    if range.starts_with('[') {
        return 0;
    }
    match range.split_once('-') {
        Some((start, end)) => match (start.parse::<u32>(), end.parse::<u32>()) {
            (Ok(start), Ok(end)) if end >= start => end - start + 1,
            _ => 0,
        },
        None => u32::from(range.parse::<u32>().is_ok()),
    }
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
        let masters = cluster_masters(nodes);
        let summary: Vec<(u16, bool, u32)> = masters
            .iter()
            .map(|m| (m.port, m.failing, m.slots))
            .collect();
        assert_eq!(
            summary,
            vec![
                (30002, false, 5462),
                (30003, false, 5461),
                (30001, false, 5461),
                (30009, true, 0),
            ]
        );
        let paused = nodes.replace("myself,master -", "myself,master,fail? -");
        let covered: u32 = cluster_masters(&paused)
            .iter()
            .filter(|m| !m.failing)
            .map(|m| m.slots)
            .sum();
        assert_eq!(covered, 16_384 - 5461);
        assert_eq!(slot_count("[93->-292f]"), 0);
        assert_eq!(slot_count("17"), 1);
    }
}
