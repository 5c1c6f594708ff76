//! Serving the app the way a server facing the internet should: headers read within a bound,
//! and a cap on open connections, so a client that opens connections and trickles its headers
//! (slowloris) cannot hold sockets, file descriptors or memory for everyone else.
//!
//! `axum::serve` gives hyper no timer, so it waits for a request's headers forever; this loop
//! is `axum::serve` plus those two bounds, on hyper's own HTTP/1 connection builder.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{Router, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tower::ServiceExt;

/// The bounds of [`serve`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// A connection whose request headers have not all arrived this long after it began to
    /// send them (or, between requests, after it went idle) is closed (`APP_HEADER_TIMEOUT_MS`).
    pub(crate) header_read_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog until one closes
    /// (`APP_MAX_CONNECTIONS`). Keep it under the process's open-file limit.
    pub(crate) max_connections: usize,
}

impl Limits {
    /// From `APP_HEADER_TIMEOUT_MS` (default 10,000) and `APP_MAX_CONNECTIONS` (default 512).
    pub(crate) fn from_env() -> anyhow::Result<Self> {
        let read = |name: &str, default: u64| -> anyhow::Result<u64> {
            match std::env::var(name) {
                Ok(value) if !value.trim().is_empty() => value
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| {
                        format!("invalid {name}={value:?}: expected a number above 0")
                    }),
                _ => Ok(default),
            }
        };
        Ok(Self {
            header_read_timeout: Duration::from_millis(read("APP_HEADER_TIMEOUT_MS", 10_000)?),
            max_connections: usize::try_from(read("APP_MAX_CONNECTIONS", 512)?)?,
        })
    }
}

/// Serves `app` on `listener` with the peer address in each request (`ConnectInfo`, which
/// the rate limiter reads), within `limits`, until `shutdown` completes; then lets open
/// connections finish their requests for up to 10 s.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.context("the connection cap closed")?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait a moment instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = app.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request
                .extensions_mut()
                .insert(ConnectInfo::<SocketAddr>(peer));
            let router = router.clone();
            async move { router.oneshot(request).await }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that hangs up or sends garbage ends its own connection; nothing to say.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections were still open 10 s after shutdown began");
    }
    Ok(())
}
