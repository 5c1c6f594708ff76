//! Refresh ahead: warmed entries rewritten before they expire, in the background.

use std::{fmt, sync::Arc, time::Duration};

use tokio::{sync::Semaphore, task::JoinSet};

use super::Job;
use crate::{Cache, cache::observe::KeyHash};

/// The shortest wait before retrying a failed refresh.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// The background refresh of a warmer's entries ([`Warmer::refresh_ahead`]). Refreshing stops
/// when this handle is dropped (or [`stop`](Self::stop)ped).
///
/// [`Warmer::refresh_ahead`]: super::Warmer::refresh_ahead
pub struct RefreshAhead {
    tasks: JoinSet<()>,
    entries: usize,
}

impl fmt::Debug for RefreshAhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshAhead")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl RefreshAhead {
    /// Refreshes each of `jobs` that has a TTL after `fraction` of it, again and again, with at
    /// most `concurrency` loaders running at once.
    pub(super) fn start(cache: &Cache, jobs: &[Job], fraction: f64, concurrency: usize) -> Self {
        let permits = Arc::new(Semaphore::new(concurrency));
        let mut tasks = JoinSet::new();
        let mut entries = 0;
        for job in jobs {
            let Some(ttl) = job.ttl.filter(|ttl| !ttl.is_zero()) else {
                continue;
            };
            entries += 1;
            let (cache, job, permits) = (cache.clone(), job.clone(), Arc::clone(&permits));
            let every = ttl.mul_f64(fraction);
            tasks.spawn(async move {
                let mut wait = every;
                let mut retry = FIRST_RETRY;
                loop {
                    tokio::time::sleep(wait).await;
                    let Ok(_permit) = permits.acquire().await else {
                        return;
                    };
                    match job.fill(&cache).await {
                        Ok(()) => {
                            wait = every;
                            retry = FIRST_RETRY;
                        }
                        Err(error) => {
                            // The old value is served meanwhile; try again sooner, backing off
                            // up to the refresh interval.
                            tracing::warn!(
                                cache = cache.name(),
                                key_hash = %KeyHash(&job.key),
                                %error,
                                "refreshing a warmed entry failed; retrying"
                            );
                            wait = retry.min(every);
                            retry = (retry * 2).min(every);
                        }
                    }
                }
            });
        }
        Self { tasks, entries }
    }

    /// How many entries are being refreshed.
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Stops refreshing (as dropping the handle does).
    pub fn stop(mut self) {
        self.tasks.abort_all();
    }
}
