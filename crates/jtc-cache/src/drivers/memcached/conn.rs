//! Connections to one memcached server: a bounded pool of TCP connections, each used by one
//! call at a time (the caller writes its commands and reads the replies itself, with no hop
//! through another task), every exchange under the timeout.
//!
//! A connection goes back to the pool only after a whole exchange: one whose call failed,
//! timed out or was cancelled half way is closed, so a late reply can never be read as the
//! answer to the next command.

use std::{sync::Mutex, time::Duration};

use bytes::BytesMut;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Semaphore,
};

use super::wire::{self, Refusal, Reply};
use crate::{ErrorKind, Result};

/// One server: its address and its idle connections.
#[derive(Debug)]
pub(super) struct Server {
    pub(super) addr: String,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
    timeout: Duration,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Server {
    pub(super) fn new(addr: String, max_connections: usize, timeout: Duration) -> Self {
        Self {
            addr,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(max_connections.max(1)),
            timeout,
        }
    }

    /// Sends the commands in `request` (written by `wire`) and reads `replies` replies, in
    /// order, on one connection: one round trip however many commands.
    pub(super) async fn exchange(
        &self,
        operation: &'static str,
        request: &[u8],
        replies: usize,
    ) -> Result<Vec<std::result::Result<Reply, Refusal>>> {
        let fail = |reason: String| -> crate::Error {
            ErrorKind::Memcached {
                operation,
                server: self.addr.clone(),
                reason,
            }
            .into()
        };
        let work = async {
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| "the pool is closed".to_owned())?;
            let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut conn = match idle {
                Some(conn) => conn,
                None => Conn::open(&self.addr).await?,
            };
            let answer = conn.exchange(request, replies).await?;
            self.idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
            Ok::<_, String>(answer)
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(reason)) => Err(fail(reason)),
            Err(_) => Err(fail(format!("no reply within {:?}", self.timeout))),
        }
    }

    /// As [`exchange`](Self::exchange) for one command; a refusal is an error.
    pub(super) async fn one(&self, operation: &'static str, request: &[u8]) -> Result<Reply> {
        let reply = self.exchange(operation, request, 1).await?.pop();
        match reply {
            Some(Ok(reply)) => Ok(reply),
            Some(Err(refusal)) => Err(self.refused(operation, &refusal)),
            None => Err(self.refused(operation, &Refusal("no reply".to_owned()))),
        }
    }

    /// The error for a command the server refused.
    pub(super) fn refused(&self, operation: &'static str, refusal: &Refusal) -> crate::Error {
        ErrorKind::Memcached {
            operation,
            server: self.addr.clone(),
            reason: refusal.0.clone(),
        }
        .into()
    }
}

impl Conn {
    async fn open(addr: &str) -> std::result::Result<Self, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
        Ok(Self {
            stream,
            buf: BytesMut::with_capacity(4096),
        })
    }

    async fn exchange(
        &mut self,
        request: &[u8],
        replies: usize,
    ) -> std::result::Result<Vec<std::result::Result<Reply, Refusal>>, String> {
        self.stream
            .write_all(request)
            .await
            .map_err(|e| format!("write failed: {e}"))?;
        let mut answer = Vec::with_capacity(replies);
        while answer.len() < replies {
            if let Some(reply) = wire::parse(&mut self.buf)? {
                answer.push(reply);
                continue;
            }
            let read = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| format!("read failed: {e}"))?;
            if read == 0 {
                return Err("the server closed the connection".to_owned());
            }
        }
        Ok(answer)
    }
}
