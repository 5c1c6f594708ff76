//! `prune` and `flush` on the file driver: a walk over every fan-out folder that removes
//! our expired (or all of our) entries and the left-overs of killed writers, and leaves
//! files it did not write alone. The background sweep is the same walk, a bounded part of it
//! per interval, on the blocking pool.

use std::{fs, path::Path, sync::Arc, time::Duration};

use super::{
    EntryRef, FileDriver, Inner, blocking,
    disk::{
        Opened, is_entry_name, is_stale, is_temp_name, list_hex_dirs, open_entry, read_dir,
        read_header, remove_file, remove_foreign,
    },
    entry::{is_ours, parse_header},
};
use crate::{Error, Result};

impl FileDriver {
    /// Removes expired entries and the left-overs of killed writers, calling `progress(done,
    /// total)` after each of the 256 top-level folders. Returns how many entries it removed.
    pub async fn prune_with_progress(
        &self,
        progress: impl FnMut(usize, usize) + Send + 'static,
    ) -> Result<u64> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.walk(Walk::Prune, progress)).await
    }

    /// Removes every entry of this cache, calling `progress(done, total)` after each of the 256
    /// top-level folders. Files the driver did not write are left alone. Returns how many
    /// entries it removed.
    pub async fn flush_with_progress(
        &self,
        progress: impl FnMut(usize, usize) + Send + 'static,
    ) -> Result<u64> {
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.walk(Walk::Flush, progress)).await
    }
}

/// How often a file driver built inside a Tokio runtime removes expired entries by itself,
/// unless told otherwise ([`FileDriverBuilder::sweep_interval`](super::FileDriverBuilder::sweep_interval),
/// `CACHE_FILE_SWEEP_INTERVAL`).
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The most entry files one pass of the background sweep looks at; the next pass goes on
/// from the folder where this one stopped. At ~2 µs a file (a header read), a pass costs a
/// blocking thread at most a tenth of a second or so.
const SWEEP_BUDGET: usize = 50_000;

/// Starts the background sweep of `inner`'s folder, every `interval`, on the current Tokio
/// runtime. It holds the driver weakly: it ends when the last handle to the driver is dropped.
/// Without a runtime (a driver built outside one) there is no sweep; `prune` still works.
pub(super) fn start(inner: &Arc<Inner>, interval: Duration) {
    if interval.is_zero() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::debug!(
            path = %inner.root.display(),
            "file cache built outside a Tokio runtime: no background sweep (call prune)"
        );
        return;
    };
    let driver = Arc::downgrade(inner);
    runtime.spawn(async move {
        let start = tokio::time::Instant::now() + interval;
        let mut ticks = tokio::time::interval_at(start, interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cursor = 0;
        loop {
            ticks.tick().await;
            let Some(inner) = driver.upgrade() else {
                return;
            };
            let root = inner.root.clone();
            let pass = tokio::task::spawn_blocking(move || inner.sweep(cursor, SWEEP_BUDGET));
            match pass.await {
                Ok(Ok((next, removed))) => {
                    cursor = next;
                    tracing::debug!(path = %root.display(), removed, "file cache sweep");
                }
                Ok(Err(error)) => tracing::warn!(
                    path = %root.display(),
                    error = %crate::error::chain(&error),
                    "the file cache's background sweep failed; trying again next interval"
                ),
                Err(_) => return, // the runtime is shutting down
            }
        }
    });
}

impl Inner {
    /// One pass of the background sweep: prunes the top-level folders from number `cursor` on
    /// until `budget` entry files have been looked at. Returns where the next pass starts (0
    /// after the last folder) and how many entries it removed.
    fn sweep(&self, cursor: usize, budget: usize) -> Result<(usize, u64)> {
        let tops = list_hex_dirs(&self.root)?;
        let (mut examined, mut removed) = (0, 0);
        for (index, top) in tops.iter().enumerate().skip(cursor) {
            for sub in list_hex_dirs(top)? {
                removed += self.walk_leaf(&sub, Walk::Prune, &mut examined)?;
                let _ = fs::remove_dir(&sub);
            }
            let _ = fs::remove_dir(top);
            if examined >= budget {
                return Ok((index + 1, removed));
            }
        }
        Ok((0, removed))
    }

    /// Visits every top-level fan-out folder, pruning or flushing entries.
    fn walk(&self, walk: Walk, mut progress: impl FnMut(usize, usize)) -> Result<u64> {
        let tops = list_hex_dirs(&self.root)?;
        let total = tops.len();
        let mut removed = 0;
        for (done, top) in tops.iter().enumerate() {
            for sub in list_hex_dirs(top)? {
                removed += self.walk_leaf(&sub, walk, &mut 0)?;
                let _ = fs::remove_dir(&sub); // only succeeds when empty
            }
            let _ = fs::remove_dir(top);
            progress(done + 1, total);
        }
        Ok(removed)
    }

    /// Prunes or flushes one leaf folder, adding the files it looked at to `examined`.
    fn walk_leaf(&self, dir: &Path, walk: Walk, examined: &mut usize) -> Result<u64> {
        let mut removed = 0;
        let items = read_dir(dir)?;
        *examined += items.len();
        for item in items {
            let path = item.path();
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if is_entry_name(name) {
                if self.remove_if(&path, name, walk)? {
                    removed += 1;
                }
            } else if is_temp_name(name) && (walk == Walk::Flush || is_stale(&path)) {
                remove_file(&path)?;
            }
        }
        Ok(removed)
    }

    /// Removes an entry file found by a walk if it is ours and (when pruning) expired.
    fn remove_if(&self, path: &Path, hash: &str, walk: Walk) -> Result<bool> {
        let entry = EntryRef::at(path, hash);
        let _lock = self.lock(entry.stripe)?;
        let header = match open_entry(path) {
            Ok(Opened::File(file, _)) => read_header(file).map_err(|e| Error::io(path, e))?,
            Ok(Opened::Missing) => return Ok(false),
            // Not an entry, at an entry's name: never read, always removed.
            Ok(Opened::Foreign(what)) => {
                remove_foreign(path, what)?;
                return Ok(true);
            }
            Ok(Opened::TooLong) => {
                remove_foreign(path, "a file longer than any cache entry")?;
                return Ok(true);
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        let ours = is_ours(&header);
        let expired =
            parse_header(&header).map_or(ours, |(at, _, _)| at.is_some_and(|at| self.now() >= at));
        let remove = ours && (walk == Walk::Flush || expired);
        if remove {
            remove_file(path)?;
        }
        Ok(remove)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    Prune,
    Flush,
}
