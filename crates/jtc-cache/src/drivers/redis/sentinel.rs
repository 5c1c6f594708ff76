//! Redis behind Sentinel: the master's address comes from the Sentinels, and is asked again
//! when the master stops being one.
//!
//! The driver keeps one multiplexed connection to the master Sentinel names. A call that
//! fails because that connection broke, or because the server it reaches answers `READONLY`
//! (it was demoted to a replica by a failover), or that times out, drops the connection; the
//! next call asks the Sentinels for the master again and connects there. During a failover
//! calls fail cleanly within the command timeout; once Sentinel has promoted the replica, they
//! succeed again on the same `Cache`, without a restart.

use std::sync::Mutex;

use redis::{
    AsyncConnectionConfig, RedisError, RedisResult,
    aio::MultiplexedConnection,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};

use super::config::RedisConfig;
use crate::{Error, Result};

/// The master as Sentinel last named it, and how to ask again.
pub(super) struct SentinelLink {
    client: tokio::sync::Mutex<SentinelClient>,
    current: Mutex<Option<MultiplexedConnection>>,
    connection: AsyncConnectionConfig,
}

impl SentinelLink {
    /// A link to the master `config.sentinel_master` names, through `config.sentinel_nodes`;
    /// connects once, so that a wrong setting fails at start-up.
    pub(super) async fn connect(config: &RedisConfig) -> Result<Self> {
        let sentinels = config.sentinel_connection_infos()?;
        let node = SentinelNodeConnectionInfo::default()
            .set_redis_connection_info(config.connection_info()?.redis_settings().clone());
        let master = config.sentinel_master.as_deref().unwrap_or("mymaster");
        let client =
            SentinelClient::build(sentinels, master, Some(node), SentinelServerType::Master)
                .map_err(|e| Error::redis("connect", e))?;
        let link = Self {
            client: tokio::sync::Mutex::new(client),
            current: Mutex::new(None),
            connection: AsyncConnectionConfig::new()
                .set_connection_timeout(Some(config.connect_timeout))
                .set_response_timeout(Some(config.command_timeout)),
        };
        link.master()
            .await
            .map_err(|e| Error::redis("connect", e))?;
        Ok(link)
    }

    /// The connection to the current master: the one held, or a new one to the master the
    /// Sentinels name now.
    pub(super) async fn master(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(connection) = self.held().clone() {
            return Ok(connection);
        }
        let mut client = self.client.lock().await;
        // Another call may have connected while this one waited for the client.
        if let Some(connection) = self.held().clone() {
            return Ok(connection);
        }
        let master = client.async_get_client().await?;
        let connection = master
            .get_multiplexed_async_connection_with_config(&self.connection)
            .await?;
        *self.held() = Some(connection.clone());
        Ok(connection)
    }

    /// Drops the held connection after `error` if it says the master is gone or demoted.
    pub(super) fn failed(&self, error: &RedisError) {
        let master_gone = error.is_connection_dropped()
            || error.is_io_error()
            || error.is_timeout()
            || error.is_connection_refusal()
            || error.code() == Some("READONLY");
        if master_gone {
            self.forget_master();
        }
    }

    /// Drops the held connection: the next call asks the Sentinels again.
    pub(super) fn forget_master(&self) {
        *self.held() = None;
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<MultiplexedConnection>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
