//! `once_per`: one instance of a fleet loads each entry; the others wait for its value.
//!
//! The lock is `jtc:warm:<key>` in the cache itself, held for the whole period and kept after
//! a successful load (so an instance that starts later in the period skips the entry without
//! loading it), released after a failed one (so another instance tries).

use std::time::Duration;

use super::{Job, Outcome};
use crate::{Cache, Result};

/// How often a waiting instance looks for the value, at first and at most.
const FIRST_LOOK: Duration = Duration::from_millis(10);
const LAST_LOOK: Duration = Duration::from_millis(200);

/// Loads `job` if this instance wins its lock for `period`; otherwise waits for the winner's
/// value (skipped) — or for the lock to go, and then tries again.
pub(super) async fn once(cache: &Cache, job: &Job, period: Duration) -> Result<Outcome> {
    let lock = cache.lock(&format!("jtc:warm:{}", job.key), period);
    let mut look = FIRST_LOOK;
    loop {
        if let Some(guard) = lock.try_acquire().await? {
            return match job.fill(cache).await {
                Ok(()) => {
                    guard.keep();
                    Ok(Outcome::Loaded)
                }
                Err(error) => {
                    // Another instance may try; this one reports its own failure.
                    let _ = guard.release().await;
                    Err(error)
                }
            };
        }
        if cache.has(&job.key).await? {
            return Ok(Outcome::Skipped);
        }
        // The holder is loading (or died holding the lock: it expires within `period`).
        tokio::time::sleep(look).await;
        look = (look * 2).min(LAST_LOOK);
    }
}
