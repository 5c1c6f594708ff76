//! `flexible`: stale-while-revalidate.
//!
//! A value is stored for `stale`, next to a marker that lives for `fresh`. While the marker
//! lives the value is fresh; once it is gone the value is served as it is and one background
//! refresh — across every process sharing the backend, through a short refresh lock —
//! computes the next one.

use std::{future::Future, time::Duration};

use serde::{Serialize, de::DeserializeOwned};
use tracing::Instrument;

use super::{
    OpName,
    fill::{Keep, infallible},
    fresh,
    observe::{KeyHash, Op},
};
use crate::{
    Cache, EventKind, Result, keys,
    keys::{Record, StoreKey},
};

impl Cache {
    /// Stale-while-revalidate: the value at `key`, kept fresh for `fresh` and served stale up
    /// to `stale` after it was computed.
    ///
    /// - Within `fresh` of the last computation: the cached value.
    /// - Between `fresh` and `stale`: the cached value at once, and `load` runs once in the
    ///   background (one refresh across all processes sharing the backend) to replace it.
    /// - Past `stale`, or never computed: `load` runs now, like [`remember`](Self::remember).
    ///
    /// `stale` counts from the computation, like `fresh` (a `stale` shorter than `fresh` is
    /// taken as `fresh`). [`get`](Self::get) reads the value too; it lives for `stale`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use jtc_cache::{ArrayDriver, Cache};
    /// use std::time::Duration;
    ///
    /// let cache = Cache::new(ArrayDriver::new());
    /// let report: String = cache
    ///     .flexible("report", Duration::from_secs(60), Duration::from_secs(300), || async {
    ///         "expensive report".to_owned()
    ///     })
    ///     .await?;
    /// assert_eq!(report, "expensive report");
    /// assert_eq!(cache.get::<String>("report").await?.as_deref(), Some("expensive report"));
    /// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// As [`remember`](Self::remember) when `load` runs now. A failed background refresh is
    /// logged, not returned: the stale value stays until it expires.
    pub async fn flexible<T, F, Fut>(
        &self,
        key: &str,
        fresh: Duration,
        stale: Duration,
        load: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let at = keys::entry(key)?;
        let op = self.op(OpName::Flexible, key);
        let window = Window {
            fresh,
            stale: stale.max(fresh),
        };
        op.run(op.flexible(&at, window, load)).await
    }
}

/// How long a flexible value is fresh, and how long it is served at all.
#[derive(Debug, Clone, Copy)]
struct Window {
    fresh: Duration,
    stale: Duration,
}

impl Window {
    fn keep(self) -> Keep {
        Keep {
            ttl: Some(self.stale),
            fresh: Some(self.fresh),
        }
    }
}

impl Op<'_> {
    async fn flexible<T, F, Fut>(&self, at: &StoreKey<'_>, window: Window, load: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let found = self.many(&[at.clone(), fresh::marker(at)]).await?;
        let mut found = found.into_iter();
        let (value, marker_found) = (found.next().flatten(), found.next().flatten());
        if let Some(bytes) = value {
            match self.decode_logged::<T>(&bytes) {
                Some(value) => {
                    self.event(EventKind::Hit);
                    if marker_found.is_none() {
                        self.refresh_in_background(at, window, load).await;
                    }
                    return Ok(value);
                }
                None => {
                    self.forget(at).await?;
                }
            }
        }
        self.event(EventKind::Miss);
        self.fill(at, window.keep(), infallible(load)).await
    }

    /// Starts one refresh of a stale value, unless one is running anywhere already.
    async fn refresh_in_background<T, F, Fut>(&self, at: &StoreKey<'_>, window: Window, load: F)
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let lock_key = keys::internal(Record::Refresh, at.as_str());
        let owner = keys::token();
        // Held at most until the value would be stale anyway.
        let hold = window
            .stale
            .saturating_sub(window.fresh)
            .max(Duration::from_secs(1));
        match self.add(&lock_key, owner.clone().into(), Some(hold)).await {
            Ok(true) => {
                // A refresh may have finished between this read finding the value stale and
                // taking the lock: then the value is fresh again and there is nothing to do.
                if matches!(self.get(&fresh::marker(at)).await, Ok(Some(_))) {
                    self.release_quietly(&lock_key, &owner).await;
                    return;
                }
            }
            Ok(false) => return,
            Err(error) => {
                crate::outage::set_aside(
                    &error,
                    &KeyHash(self.key()),
                    "could not start a background refresh; serving the stale value",
                );
                return;
            }
        }
        let cache = self.cache().clone();
        let (at, key) = (at.clone().into_owned(), self.key().to_owned());
        let span = cache.op(OpName::Refresh, &key).span();
        let refresh = async move {
            let op = cache.op(OpName::Refresh, &key);
            let stored = op
                .load_and_store(&at, window.keep(), infallible(load))
                .await;
            if let Err(error) = stored {
                crate::outage::set_aside(
                    &error,
                    &KeyHash(&key),
                    "background refresh failed; the stale value stays until it expires",
                );
            }
            op.release_quietly(&lock_key, &owner).await;
        };
        tokio::spawn(refresh.instrument(span));
    }
}
