//! The file driver's operations, one entry each, on the blocking pool (a read of a hot entry
//! first tries the calling thread: see `disk::read_cached`). `CacheDriver for FileDriver`
//! forwards to them.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;

use super::{
    EntryRef, FileDriver, Found, blocking,
    disk::{read_cached, remove_file},
};
use crate::{
    Error, Hit,
    clock::{duration_ms, expiry_at},
    counter::{format_integer, incremented},
    driver::DriverFuture,
};

impl FileDriver {
    pub(super) fn read_entry(&self, key: &str) -> DriverFuture<'static, Option<Bytes>> {
        let entry = EntryRef::new(&self.inner.root, key);
        if let Some(read) = self.read_at_hand(&entry) {
            return DriverFuture::ready(read);
        }
        self.run_on(entry, |inner, entry| inner.get(entry))
    }

    /// A read answered from the page cache without blocking: a live entry, or none at all.
    /// `None` when the file must be read from disk, or is expired or damaged (removing it
    /// takes the lock): both on the blocking pool.
    pub(super) fn read_at_hand(&self, entry: &EntryRef) -> Option<crate::Result<Option<Bytes>>> {
        match read_cached(&entry.path)? {
            Ok(None) => Some(Ok(None)),
            Ok(Some(bytes)) => match self.inner.classify(bytes) {
                Found::Live { value, .. } => Some(Ok(Some(value))),
                _ => None,
            },
            Err(e) => Some(Err(Error::io(&entry.path, e))),
        }
    }

    pub(super) fn read_entries(&self, keys: &[&str]) -> DriverFuture<'static, Vec<Option<Bytes>>> {
        let inner = Arc::clone(&self.inner);
        let entries: Vec<_> = keys.iter().map(|k| EntryRef::new(&inner.root, k)).collect();
        DriverFuture::new(blocking(move || {
            entries.iter().map(|e| inner.get(e)).collect()
        }))
    }

    pub(super) fn write_entry(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'static, ()> {
        self.run(key, move |inner, entry| {
            let _lock = inner.lock(entry.stripe)?;
            match ttl {
                Some(ttl) if ttl.is_zero() => remove_file(&entry.path),
                _ => inner.write(entry, expiry_at(&*inner.clock, ttl), &value),
            }
        })
    }

    pub(super) fn add_entry(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'static, bool> {
        self.run(key, move |inner, entry| {
            inner.locked(entry, |live| {
                if live.is_some() || ttl.is_some_and(|t| t.is_zero()) {
                    return Ok(false);
                }
                inner.write(entry, expiry_at(&*inner.clock, ttl), &value)?;
                Ok(true)
            })
        })
    }

    pub(super) fn increment_counter(&self, key: &str, by: i64) -> DriverFuture<'static, i64> {
        let owned = key.to_owned();
        self.run(key, move |inner, entry| {
            inner.locked(entry, |live| {
                let (expires_at, stored) = live.unzip();
                let next = incremented(&owned, stored.as_deref(), by)?;
                inner.write(entry, expires_at.flatten(), &format_integer(next))?;
                Ok(next)
            })
        })
    }

    pub(super) fn hit_counter(
        &self,
        key: &str,
        window: Duration,
        by: u64,
    ) -> DriverFuture<'static, Hit> {
        let owned = key.to_owned();
        let by = i64::try_from(by.max(1)).unwrap_or(i64::MAX);
        self.run(key, move |inner, entry| {
            inner.locked(entry, |live| {
                let now = inner.now();
                let (expires_at, stored) = live.unzip();
                let count = incremented(&owned, stored.as_deref(), by)?;
                let expires_at = expires_at
                    .flatten()
                    .unwrap_or_else(|| now.saturating_add(duration_ms(window)));
                inner.write(entry, Some(expires_at), &format_integer(count))?;
                Ok(Hit {
                    count,
                    expires_in: Duration::from_millis(expires_at.saturating_sub(now)),
                })
            })
        })
    }

    pub(super) fn remove_entry(&self, key: &str) -> DriverFuture<'static, bool> {
        self.run(key, |inner, entry| {
            inner.locked(entry, |live| {
                if live.is_some() {
                    remove_file(&entry.path)?;
                }
                Ok(live.is_some())
            })
        })
    }

    pub(super) fn remove_entry_if(
        &self,
        key: &str,
        expected: &[u8],
    ) -> DriverFuture<'static, bool> {
        let expected = expected.to_vec();
        self.run(key, move |inner, entry| {
            inner.locked(entry, |live| {
                let matches = live.is_some_and(|(_, value)| value.as_ref() == expected);
                if matches {
                    remove_file(&entry.path)?;
                }
                Ok(matches)
            })
        })
    }

    pub(super) fn take_entry(&self, key: &str) -> DriverFuture<'static, Option<Bytes>> {
        self.run(key, |inner, entry| {
            inner.locked(entry, |live| {
                if live.is_some() {
                    remove_file(&entry.path)?;
                }
                Ok(live.map(|(_, value)| value))
            })
        })
    }

    pub(super) fn touch_entry(
        &self,
        key: &str,
        ttl: Option<Duration>,
    ) -> DriverFuture<'static, bool> {
        self.run(key, move |inner, entry| {
            inner.locked(entry, |live| {
                let Some((_, value)) = live else {
                    return Ok(false);
                };
                match ttl {
                    Some(ttl) if ttl.is_zero() => remove_file(&entry.path)?,
                    _ => inner.write(entry, expiry_at(&*inner.clock, ttl), &value)?,
                }
                Ok(true)
            })
        })
    }
}
