//! The ways the driver reaches Redis — one multiplexed connection (standalone), one per node
//! (cluster), or the master Sentinel names — and `Live`, the connection one call uses.

use std::{sync::Arc, time::Duration};

use redis::{
    Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager, MultiplexedConnection},
    cluster_async::ClusterConnection,
};

use super::{RedisConfig, sentinel::SentinelLink};
use crate::{Error, Result};

/// How the driver reaches Redis.
#[derive(Clone)]
pub(super) enum Connection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    /// The master Sentinel names, asked again after a failover.
    Sentinel(Arc<SentinelLink>),
}

/// A connection ready for one call.
pub(super) enum Live {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

impl Connection {
    /// The connection for one call. Standalone and cluster connections are at hand; only a
    /// Sentinel link may have to find its master first, and that wait is boxed: every call's
    /// future holds this one's state, and the Sentinel lookup's would make each several
    /// kilobytes (copied into its box and allocated on every command; docs/benchmarks.md).
    pub(super) async fn live(&self) -> redis::RedisResult<Live> {
        Ok(match self {
            Self::Standalone(c) => Live::Standalone(c.clone()),
            Self::Cluster(c) => Live::Cluster(c.clone()),
            Self::Sentinel(link) => Live::Sentinel(Box::pin(link.master()).await?),
        })
    }

    /// Tells a Sentinel link that a call failed, so that it asks for the master again.
    pub(super) fn failed(&self, error: Option<&redis::RedisError>) {
        if let Self::Sentinel(link) = self {
            match error {
                Some(error) => link.failed(error),
                None => link.forget_master(),
            }
        }
    }
}

impl ConnectionLike for Live {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
        }
    }
}

/// How long data sent on a standalone connection may stay unacknowledged before the kernel
/// drops the connection, so that the manager reconnects: a server that vanished without
/// closing its socket (a host gone, a partition).
const DEAD_PEER_AFTER: Duration = Duration::from_secs(10);

/// One multiplexed connection that reconnects by itself (a few quick retries, then errors).
/// With a near cache, the connection speaks RESP3, hands the server's pushes to it, and has
/// client tracking on (OPTIN).
///
/// Each call is bounded by the driver's own command timeout, which covers waiting for a
/// reconnection as well as the reply; the connection has no response timeout of its own. A
/// second timer per command cost a tenth of the driver's throughput at 1,024 tasks
/// (docs/benchmarks.md), and a reply that is merely slow (a server stalled by a fork) no longer
/// drops the connection and every call in flight on it. A server that is gone is found by
/// the kernel instead (`TCP_USER_TIMEOUT`, [`DEAD_PEER_AFTER`]), or by the socket closing.
pub(super) async fn connect_standalone(
    config: &RedisConfig,
    near: Option<PushSink>,
) -> Result<Connection> {
    let info = config.connection_info()?;
    #[cfg(any(target_os = "android", target_os = "fuchsia", target_os = "linux"))]
    let info = {
        let tcp = info
            .tcp_settings()
            .clone()
            .set_user_timeout(DEAD_PEER_AFTER);
        info.set_tcp_settings(tcp)
    };
    let client = redis::Client::open(info).map_err(|e| Error::redis("connect", e))?;
    let mut manager = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(config.connect_timeout))
        .set_response_timeout(None)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(1))
        .set_number_of_retries(3);
    if let Some(near) = &near {
        manager = manager.set_push_sender(push_handler(Arc::clone(near)));
    }
    let manager = ConnectionManager::new_with_config(client, manager)
        .await
        .map_err(|e| Error::redis("connect", e))?;
    if near.is_some() {
        turn_tracking_on(Live::Standalone(manager.clone()))
            .await
            .map_err(|e| Error::redis("connect", e))?;
    }
    Ok(Connection::Standalone(manager))
}

/// A cluster connection: one multiplexed connection per node, following slot moves; with a
/// near cache, RESP3, pushes to it and tracking on at every node.
pub(super) async fn connect_cluster(
    config: &RedisConfig,
    near: Option<PushSink>,
) -> Result<Connection> {
    let mut builder = redis::cluster::ClusterClientBuilder::new(config.cluster_connection_infos()?)
        .connection_timeout(config.connect_timeout)
        .response_timeout(config.command_timeout)
        .retries(2);
    if let Some(username) = &config.username {
        builder = builder.username(username);
    }
    if let Some(password) = &config.password {
        builder = builder.password(password);
    }
    if let Some(near) = &near {
        builder = builder
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(push_handler(Arc::clone(near)));
    }
    let client = builder.build().map_err(|e| Error::redis("connect", e))?;
    let connection = client
        .get_async_connection()
        .await
        .map_err(|e| Error::redis("connect", e))?;
    if near.is_some() {
        turn_tracking_on(Live::Cluster(connection.clone()))
            .await
            .map_err(|e| Error::redis("connect", e))?;
    }
    Ok(Connection::Cluster(connection))
}

/// Where the server's pushes (client-tracking invalidations) go: the near cache's handler,
/// called on the client library's own task.
pub(super) type PushSink = Arc<dyn Fn(&redis::PushInfo) + Send + Sync>;

fn push_handler(sink: PushSink) -> impl Fn(redis::PushInfo) -> std::result::Result<(), ()> {
    move |push| {
        sink(&push);
        Ok(())
    }
}

/// Sends the tracked read `pipe` of `key`. On a cluster the pipeline goes to the key's master
/// as a whole (`CLIENT CACHING` names no key, and must come right before the read).
pub(super) async fn tracked_read(
    mut live: Live,
    pipe: Pipeline,
    key: &[u8],
) -> redis::RedisResult<Vec<redis::RedisResult<Value>>> {
    match &mut live {
        Live::Cluster(cluster) => {
            use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
            let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
            let values = cluster.route_pipeline(pipe, 0, 3, route).await?;
            Ok(values
                .into_iter()
                .map(|value| match value {
                    Value::ServerError(error) => Err(error.into()),
                    other => Ok(other),
                })
                .collect())
        }
        other => pipe.query_async(other).await,
    }
}

/// `CLIENT TRACKING ON OPTIN` on `live` (on every node of a cluster).
pub(super) async fn turn_tracking_on(mut live: Live) -> redis::RedisResult<()> {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("TRACKING").arg("ON").arg("OPTIN");
    match &mut live {
        Live::Cluster(cluster) => {
            use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
            let all = RoutingInfo::MultiNode((
                MultipleNodeRoutingInfo::AllNodes,
                Some(ResponsePolicy::AllSucceeded),
            ));
            cluster.route_command(cmd, all).await.map(drop)
        }
        other => cmd.query_async(other).await,
    }
}

/// rustls needs a process-wide crypto provider for `rediss://`; install ring's unless the
/// application installed one already. An application that wants post-quantum key exchange
/// (rustls's aws-lc-rs provider, `X25519MLKEM768`) installs that provider before the first
/// connection, and the driver uses it.
pub(super) fn install_tls_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange. We
        // keep ring on purpose: aws-lc-rs needs a C toolchain (and cmake) in every user's
        // build, and a classical X25519 / P-256 exchange is what Redis servers speak today.
        // (`allow` is a no-op on the earlier 0.23 releases a lock file may hold.)
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        // Losing this race to another thread is fine: a provider is installed either way.
        let _ = provider.install_default();
    }
}
