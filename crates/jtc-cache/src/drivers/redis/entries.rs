//! The Redis driver's entry operations, one command (or script) each: reads, writes, `add`,
//! counters, removal and `touch`, and the mapping of Redis's counter errors.

use std::time::Duration;

use bytes::Bytes;

use super::Inner;
use crate::{Error, ErrorKind, Hit, Result, clock::duration_ms};

/// The bytes of a `PX <milliseconds>` pair at most.
const MILLIS_ARGS: usize = 2 + 20;

impl Inner {
    pub(super) async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        if let Some(near) = &self.near {
            return Box::pin(self.get_near(near, key)).await;
        }
        let cmd = self.command("GET", key, 0, 0);
        let value: Option<Vec<u8>> = self.query("get", cmd).await?;
        Ok(value.map(Bytes::from))
    }

    pub(super) async fn put(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<()> {
        if ttl.is_some_and(|t| t.is_zero()) {
            return self.forget(key).await.map(drop);
        }
        let mut cmd = self.command("SET", key, 3, value.len() + MILLIS_ARGS);
        cmd.arg(value.as_ref());
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(duration_ms(ttl));
        }
        self.query::<()>("put", cmd).await
    }

    pub(super) async fn add(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<bool> {
        if ttl.is_some_and(|t| t.is_zero()) {
            return Ok(false);
        }
        let mut cmd = self.command("SET", key, 4, value.len() + 2 + MILLIS_ARGS);
        cmd.arg(value.as_ref()).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(duration_ms(ttl));
        }
        let stored: Option<String> = self.query("add", cmd).await?;
        Ok(stored.is_some())
    }

    pub(super) async fn increment(&self, key: &str, by: i64) -> Result<i64> {
        let mut cmd = self.command("INCRBY", key, 1, 20);
        cmd.arg(by);
        self.query("increment", cmd)
            .await
            .map_err(|e| counter_error(key, e))
    }

    pub(super) async fn hit(&self, key: &str, window: Duration, by: u64) -> Result<Hit> {
        let window_ms = duration_ms(window).max(1);
        let (count, ttl_ms): (i64, i64) = self
            .run_script("hit", &self.hit, key, (window_ms, by))
            .await
            .map_err(|e| counter_error(key, e))?;
        Ok(Hit {
            count,
            expires_in: Duration::from_millis(ttl_ms.max(0).unsigned_abs()),
        })
    }

    pub(super) async fn forget(&self, key: &str) -> Result<bool> {
        let cmd = self.command("UNLINK", key, 0, 0);
        let removed: i64 = self.query("forget", cmd).await?;
        Ok(removed > 0)
    }

    pub(super) async fn forget_if(&self, key: &str, expected: &[u8]) -> Result<bool> {
        let removed: i64 = self
            .run_script("forget_if", &self.forget_if, key, expected)
            .await?;
        Ok(removed > 0)
    }

    pub(super) async fn pull(&self, key: &str) -> Result<Option<Bytes>> {
        let cmd = self.command("GETDEL", key, 0, 0);
        let value: Option<Vec<u8>> = self.query("pull", cmd).await?;
        Ok(value.map(Bytes::from))
    }

    pub(super) async fn touch(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        match ttl {
            Some(ttl) if ttl.is_zero() => self.forget(key).await,
            Some(ttl) => {
                let mut cmd = self.command("PEXPIRE", key, 1, 20);
                cmd.arg(duration_ms(ttl));
                Ok(self.query::<i64>("touch", cmd).await? == 1)
            }
            None => Ok(self
                .run_script::<i64>("touch", &self.persist, key, 0)
                .await?
                == 1),
        }
    }

    /// One `SET` per entry, all in flight at once: the multiplexed connection pipelines them
    /// (on a Cluster each goes to its own node, so keys of any slots mix). Not atomic: on an
    /// error some entries may be written.
    pub(super) async fn put_many(
        &self,
        entries: &[(&str, Bytes)],
        ttl: Option<Duration>,
    ) -> Result<()> {
        futures_util::future::try_join_all(
            entries
                .iter()
                .map(|(key, value)| self.put(key, value.clone(), ttl)),
        )
        .await
        .map(drop)
    }

    pub(super) async fn many(&self, keys: &[&str]) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(near) = &self.near {
            let held: Vec<Option<Bytes>> = keys.iter().map(|key| near.lookup(key)).collect();
            if held.iter().all(Option::is_some) {
                return Ok(held);
            }
        }
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            cmd.arg(self.key(key));
        }
        let values: Vec<Option<Vec<u8>>> = self.query("many", cmd).await?;
        Ok(values.into_iter().map(|v| v.map(Bytes::from)).collect())
    }
}

/// Maps Redis's complaints about a counter to the driver-independent errors.
fn counter_error(key: &str, error: Error) -> Error {
    let ErrorKind::Redis { source, .. } = error.kind() else {
        return error;
    };
    let message = source.to_string();
    if message.contains("not an integer") {
        ErrorKind::NotAnInteger {
            key: key.to_owned(),
        }
        .into()
    } else if message.contains("overflow") {
        ErrorKind::Overflow {
            key: key.to_owned(),
        }
        .into()
    } else {
        error
    }
}
