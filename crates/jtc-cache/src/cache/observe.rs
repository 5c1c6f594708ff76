//! The one door between the cache's operations and its driver.
//!
//! Every public operation — of [`Cache`], of [`TaggedCache`](crate::TaggedCache), of
//! [`Lock`](crate::Lock), and of the fill and refresh machinery — starts an [`Op`]: its name
//! and the key the caller gave. The operation runs inside the op's span ([`Op::run`]), reaches
//! the driver only through the op's methods (which count a failed call in
//! [`stats`](Cache::stats)), and reports what happened with [`Op::event`]. Driver calls take a
//! [`StoreKey`], which only `keys.rs` builds, so a raw user key cannot reach a driver.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use pin_project_lite::pin_project;

use super::{Inner, OpName, meters::Started};
use crate::{Cache, DriverFuture, EventKind, Hit, RateRule, RateVerdict, Result, keys::StoreKey};

/// One operation of a cache in progress: which, on which key, and the door to the driver.
#[derive(Clone, Copy)]
pub(crate) struct Op<'a> {
    cache: &'a Cache,
    name: OpName,
    key: &'a str,
}

impl fmt::Debug for Op<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Op")
            .field("name", &self.name)
            .field("key_hash", &format_args!("{}", KeyHash(self.key)))
            .finish()
    }
}

impl Cache {
    /// Starts the operation `name` on `key` (the key as the caller gave it: a user's key, a
    /// lock's name, a tag; empty for whole-cache operations).
    #[inline]
    pub(crate) fn op<'a>(&'a self, name: OpName, key: &'a str) -> Op<'a> {
        Op {
            cache: self,
            name,
            key,
        }
    }
}

impl<'a> Op<'a> {
    /// The cache this operation runs on.
    #[inline]
    pub(crate) fn cache(&self) -> &'a Cache {
        self.cache
    }

    /// The key as the caller gave it.
    #[inline]
    pub(crate) fn key(&self) -> &'a str {
        self.key
    }

    /// `work` inside this operation's span, timed for the duration metric when sampled.
    #[inline]
    pub(crate) fn run<F: Future>(&self, work: F) -> Timed<'a, F> {
        let inner = self.inner();
        Timed {
            work,
            span: self.span(),
            inner,
            name: self.name,
            started: inner.meters.start(self.name),
        }
    }

    /// `work` done at once, as [`run`](Self::run) does it over time: inside the span, timed
    /// when sampled. `work` says `None` when it must wait after all (it is then not timed).
    pub(crate) fn now<T>(&self, work: impl FnOnce() -> Option<T>) -> Option<T> {
        let inner = self.inner();
        let _entered = self.span().entered();
        let started = inner.meters.start(self.name);
        let done = work()?;
        if started.is_some() {
            inner.meters.finish(self.name, started);
        }
        Some(done)
    }

    /// The span of this operation: the cache's name, the operation and the key's hash, never
    /// the key or a value.
    ///
    /// Made only when a subscriber wants `debug` spans: a disabled span still runs the `log`
    /// crate's level check on every poll (axum turns on tracing's `log` feature).
    pub(crate) fn span(&self) -> tracing::Span {
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug_span!(
                "cache",
                cache = %self.inner().name,
                op = self.name.as_str(),
                key_hash = %KeyHash(self.key)
            )
        } else {
            tracing::Span::none()
        }
    }

    /// Counts `kind` for this operation's key and tells the listeners.
    #[inline]
    pub(crate) fn event(&self, kind: EventKind) {
        self.event_on(kind, self.key);
    }

    /// Counts `kind` for another key of this operation (each tag of a tag flush).
    #[inline]
    pub(crate) fn event_on(&self, kind: EventKind, key: &str) {
        let inner = self.inner();
        let meters = &inner.meters;
        let count = inner.settings.count;
        match kind {
            EventKind::Hit | EventKind::Miss => meters.read(&inner.observer, &inner.driver),
            EventKind::Written => meters.written(self.name),
            EventKind::Forgotten | EventKind::Flushed => meters.deleted(1),
            EventKind::LockAcquired | EventKind::LockReleased => {}
        }
        // Metrics publish the read counters: reads are counted for them even with stats off.
        inner.observer.event((count, meters.enabled()), kind, key);
    }

    /// A read's event: a hit when it found a value, else a miss.
    #[inline]
    pub(crate) fn read_event(&self, found: bool) {
        self.event(if found {
            EventKind::Hit
        } else {
            EventKind::Miss
        });
    }

    /// Counts `removed` entries as deletes (a prune), without telling listeners: no key was
    /// named.
    pub(crate) fn count_deletes(&self, removed: u64) {
        let inner = self.inner();
        inner.observer.deletes(inner.settings.count, removed);
        if removed > 0 {
            inner.meters.deleted(removed);
        }
    }

    #[inline]
    fn inner(&self) -> &'a Inner {
        &self.cache.inner
    }

    #[inline]
    fn observed<'k, T>(&self, call: DriverFuture<'k, T>) -> Observed<'k, T>
    where
        'a: 'k,
    {
        Observed {
            call,
            inner: self.inner(),
            operation: self.name,
        }
    }

    // ---- the driver's operations, each counted when it fails ----

    #[inline]
    pub(crate) fn get<'k>(&self, at: &'k StoreKey<'_>) -> Observed<'k, Option<Bytes>>
    where
        'a: 'k,
    {
        self.observed(self.inner().driver.get(at.as_str()))
    }

    /// A read of `at` when the driver answers it without waiting (an in-memory driver, a
    /// copy in a near cache), counted as [`get`](Self::get) counts it; `None` when it must
    /// wait (nothing was asked of the store).
    pub(crate) fn get_now(&self, at: &StoreKey<'_>) -> Option<Result<Option<Bytes>>> {
        let result = self.inner().driver.get_now(at.as_str())?;
        if let Err(error) = &result {
            failed(self.inner(), self.name, error);
        }
        Some(result)
    }

    pub(crate) fn put<'k>(
        &self,
        at: &'k StoreKey<'_>,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Observed<'k, ()>
    where
        'a: 'k,
    {
        self.observed(self.inner().driver.put(at.as_str(), value, ttl))
    }

    pub(crate) fn add<'k>(
        &self,
        at: &'k StoreKey<'_>,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Observed<'k, bool>
    where
        'a: 'k,
    {
        self.observed(self.inner().driver.add(at.as_str(), value, ttl))
    }

    pub(crate) fn increment<'k>(&self, at: &'k StoreKey<'_>, by: i64) -> Observed<'k, i64>
    where
        'a: 'k,
    {
        self.observed(self.inner().driver.increment(at.as_str(), by))
    }

    pub(crate) fn hit<'k>(
        &self,
        at: &'k StoreKey<'_>,
        window: Duration,
        by: u64,
    ) -> Observed<'k, Hit>
    where
        'a: 'k,
    {
        self.observed(self.inner().driver.hit_by(at.as_str(), window, by))
    }

    pub(crate) fn rate<'k>(
        &self,
        at: &'k StoreKey<'_>,
        rules: &'k [RateRule],
        consume: bool,
    ) -> Observed<'k, Vec<RateVerdict>>
    where
        'a: 'k,
    {
        self.observed(self.inner().driver.rate(at.as_str(), rules, consume))
    }

    pub(crate) fn rate_by<'k>(
        &self,
        at: &'k StoreKey<'_>,
        rules: &'k [RateRule],
        by: u64,
    ) -> Observed<'k, Vec<Vec<RateVerdict>>>
    where
        'a: 'k,
    {
        self.observed(self.inner().driver.rate_by(at.as_str(), rules, by))
    }

    pub(crate) fn forget<'k>(&self, at: &'k StoreKey<'_>) -> Observed<'k, bool>
    where
        'a: 'k,
    {
        self.observed(self.inner().driver.forget(at.as_str()))
    }

    pub(crate) fn forget_if<'k>(
        &self,
        at: &'k StoreKey<'_>,
        expected: &'k [u8],
    ) -> Observed<'k, bool>
    where
        'a: 'k,
    {
        self.observed(self.inner().driver.forget_if(at.as_str(), expected))
    }

    pub(crate) fn pull<'k>(&self, at: &'k StoreKey<'_>) -> Observed<'k, Option<Bytes>>
    where
        'a: 'k,
    {
        self.observed(self.inner().driver.pull(at.as_str()))
    }

    pub(crate) fn touch<'k>(
        &self,
        at: &'k StoreKey<'_>,
        ttl: Option<Duration>,
    ) -> Observed<'k, bool>
    where
        'a: 'k,
    {
        self.observed(self.inner().driver.touch(at.as_str(), ttl))
    }

    /// The stored bytes of several keys, in order.
    pub(crate) async fn many(&self, at: &[StoreKey<'_>]) -> Result<Vec<Option<Bytes>>> {
        let keys: Vec<&str> = at.iter().map(StoreKey::as_str).collect();
        self.observed(self.inner().driver.many(&keys)).await
    }

    /// Stores several entries with one TTL.
    pub(crate) async fn put_many(
        &self,
        entries: Vec<(StoreKey<'_>, Bytes)>,
        ttl: Option<Duration>,
    ) -> Result<()> {
        let entries: Vec<(&str, Bytes)> = entries
            .iter()
            .map(|(at, bytes)| (at.as_str(), bytes.clone()))
            .collect();
        self.observed(self.inner().driver.put_many(&entries, ttl))
            .await
    }

    pub(crate) fn flush(&self) -> Observed<'a, ()> {
        self.observed(self.inner().driver.flush())
    }

    pub(crate) fn prune(&self) -> Observed<'a, u64> {
        self.observed(self.inner().driver.prune())
    }
}

pin_project! {
    /// A public operation in progress, inside its span; records its duration when it was
    /// sampled.
    ///
    /// The span is entered only when it is one (a subscriber wanted it): `tracing`'s
    /// `Instrumented` enters and leaves even a disabled span on every poll and again to drop
    /// the work, which every operation paid with no subscriber at all.
    #[must_use = "futures do nothing unless awaited"]
    pub(crate) struct Timed<'a, F> {
        #[pin]
        work: F,
        span: tracing::Span,
        inner: &'a Inner,
        name: OpName,
        started: Started,
    }
}

impl<F: Future> Future for Timed<'_, F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _entered = (!this.span.is_none()).then(|| this.span.enter());
        let output = ready!(this.work.poll(cx));
        if this.started.is_some() {
            this.inner.meters.finish(*this.name, this.started.take());
        }
        Poll::Ready(output)
    }
}

/// A driver call whose failure is counted in the cache's stats.
#[must_use = "futures do nothing unless awaited"]
pub(crate) struct Observed<'a, T> {
    call: DriverFuture<'a, T>,
    inner: &'a Inner,
    operation: OpName,
}

impl<T> Future for Observed<'_, T> {
    type Output = Result<T>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let result = ready!(Pin::new(&mut self.call).poll(cx));
        if let Err(error) = &result {
            self.failed(error);
        }
        Poll::Ready(result)
    }
}

impl<T> Observed<'_, T> {
    #[cold]
    fn failed(&self, error: &crate::Error) {
        failed(self.inner, self.operation, error);
    }
}

/// Counts a failed driver call of `operation` and logs it (at most once a second per cache).
#[cold]
fn failed(inner: &Inner, operation: OpName, error: &crate::Error) {
    inner.observer.error(inner.settings.count);
    inner.meters.failed(operation, error.kind().code());
    if error.is_backend() {
        let (cache, driver) = (&*inner.name, inner.driver.name());
        inner
            .observer
            .outage
            .failed(cache, driver, operation.as_str(), error);
    }
}

/// Displays a short, stable fingerprint of a key for logs: keys may hold personal data, logs
/// must not. Computed only when a log line or span actually records it.
pub(crate) struct KeyHash<'a>(pub(crate) &'a str);

impl fmt::Display for KeyHash<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&blake3::hash(self.0.as_bytes()).to_hex()[..16])
    }
}
