//! `prune` and `flush` on the file driver: a walk over every fan-out folder that removes
//! our expired (or all of our) entries and the left-overs of killed writers, and leaves
//! files it did not write alone.

use std::{fs, path::Path, sync::Arc};

use super::{
    EntryRef, FileDriver, Inner, blocking,
    disk::{
        is_entry_name, is_stale, is_temp_name, list_hex_dirs, read_dir, read_header, remove_file,
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

impl Inner {
    /// Visits every top-level fan-out folder, pruning or flushing entries.
    fn walk(&self, walk: Walk, mut progress: impl FnMut(usize, usize)) -> Result<u64> {
        let tops = list_hex_dirs(&self.root)?;
        let total = tops.len();
        let mut removed = 0;
        for (done, top) in tops.iter().enumerate() {
            for sub in list_hex_dirs(top)? {
                removed += self.walk_leaf(&sub, walk)?;
                let _ = fs::remove_dir(&sub); // only succeeds when empty
            }
            let _ = fs::remove_dir(top);
            progress(done + 1, total);
        }
        Ok(removed)
    }

    fn walk_leaf(&self, dir: &Path, walk: Walk) -> Result<u64> {
        let mut removed = 0;
        for item in read_dir(dir)? {
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
        let header = match read_header(path) {
            Ok(Some(header)) => header,
            Ok(None) => return Ok(false),
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
