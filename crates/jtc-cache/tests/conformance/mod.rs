//! The semantic cases every driver must pass, written once.
//!
//! A driver's test file builds a [`Subject`] (a fresh, empty cache plus a way to move its
//! time) and calls [`conformance_tests!`] with a function that makes one; the macro expands to
//! one `#[tokio::test]` per case, so a failure names the driver and the case. The cases live
//! inside the macros of the files below, one file per behaviour; a new case is written once,
//! there, and runs on every driver.

mod counters;
mod fills;
mod locks;
mod observe;
mod rates;
mod tags;
mod values;

use std::{
    any::Any,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use std::{future::Future, pin::Pin, sync::Mutex};

use bytes::Bytes;
use jtc_cache::{Cache, CacheDriver, DriverFuture, Hit, ManualClock, Result};
use serde::{Deserialize, Serialize};
use tracing::{
    Subscriber,
    field::{Field, Visit},
    span::{Attributes, Id},
};
use tracing_subscriber::{layer::Context, prelude::*};

/// What the cases use, imported by each group of cases.
pub(crate) mod prelude {
    pub(crate) use std::{
        sync::{
            Arc, Mutex,
            atomic::{AtomicUsize, Ordering},
        },
        time::{Duration, Instant},
    };

    pub(crate) use bytes::Bytes;
    pub(crate) use jtc_cache::{
        Cache, CacheDriver, CacheStats, Codec, Error, ErrorKind, EventKind, RateKind, RateRule,
        RateVerdict,
    };
}

/// A cache under test and the means to move its time.
pub(crate) struct Subject {
    pub(crate) cache: Cache,
    /// `Some` for drivers on a [`ManualClock`]: time moves exactly. `None`: real time passes
    /// (the server decides expiry), so boundary checks leave `slack` either side.
    pub(crate) clock: Option<ManualClock>,
    /// Whatever must live as long as the cache (a temporary folder, a server).
    #[allow(
        dead_code,
        reason = "held, never read: it keeps a folder or server alive"
    )]
    pub(crate) guard: Box<dyn Any + Send>,
}

impl Subject {
    pub(crate) async fn advance(&self, by: Duration) {
        match &self.clock {
            Some(clock) => clock.advance(by),
            None => tokio::time::sleep(by).await,
        }
    }

    /// How far from a TTL boundary checks stay when time is real.
    pub(crate) fn slack(&self) -> Duration {
        match self.clock {
            Some(_) => Duration::ZERO,
            None => Duration::from_millis(250),
        }
    }

    /// A span long enough to call "forever" for this subject.
    pub(crate) fn long_time(&self) -> Duration {
        match self.clock {
            Some(_) => Duration::from_secs(10 * 365 * 24 * 3600),
            None => Duration::from_millis(1_500),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct User {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) email: Option<String>,
}

pub(crate) fn user(id: u64) -> User {
    User {
        id,
        name: format!("user {id} — ünïcødé"),
        tags: vec!["a".into(), "b".into()],
        email: None,
    }
}

pub(crate) const MINUTE: Duration = Duration::from_secs(60);

/// Expands to one test per case for the subject made by `$make` (an async fn at the test
/// crate's root), grouped in one module per file of cases: `values::ttl_has_millisecond_precision`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:ident) => {
        mod values {
            #[allow(unused_imports)]
            use $crate::conformance::{prelude::*, *};
            $crate::conformance_values!($make);
        }
        mod counters {
            #[allow(unused_imports)]
            use $crate::conformance::{prelude::*, *};
            $crate::conformance_counters!($make);
        }
        mod fills {
            #[allow(unused_imports)]
            use $crate::conformance::{prelude::*, *};
            $crate::conformance_fills!($make);
        }
        mod locks {
            #[allow(unused_imports)]
            use $crate::conformance::{prelude::*, *};
            $crate::conformance_locks!($make);
        }
        mod tags {
            #[allow(unused_imports)]
            use $crate::conformance::{prelude::*, *};
            $crate::conformance_tags!($make);
        }
        mod rates {
            #[allow(unused_imports)]
            use $crate::conformance::{prelude::*, *};
            $crate::conformance_rates!($make);
        }
        mod observe {
            #[allow(unused_imports)]
            use $crate::conformance::{prelude::*, *};
            $crate::conformance_observe!($make);
        }
    };
}

/// A loader that counts its calls and takes 300 ms to return `value`.
pub(crate) fn slow_loader(
    value: i32,
    calls: &Arc<AtomicUsize>,
) -> impl FnOnce() -> Pin<Box<dyn Future<Output = i32> + Send>> + Send + use<> {
    let calls = Arc::clone(calls);
    move || {
        Box::pin(async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(300)).await;
            value
        })
    }
}

/// Sixteen concurrent `flexible` reads of `f`; each one's value and how long it took.
pub(crate) async fn read_flexible_16_times<L>(
    cache: &Cache,
    fresh: Duration,
    stale: Duration,
    mut loader: impl FnMut() -> L,
) -> Vec<(i32, Duration)>
where
    L: FnOnce() -> Pin<Box<dyn Future<Output = i32> + Send>> + Send + 'static,
{
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (cache, load) = (cache.clone(), loader());
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let v: i32 = cache.flexible("f", fresh, stale, load).await.unwrap();
                (v, started.elapsed())
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

/// Polls `key` until it holds `value` (a background refresh landing), for at most 10 s.
pub(crate) async fn wait_for_value(cache: &Cache, key: &str, value: i32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cache.get::<i32>(key).await.unwrap() != Some(value) {
        assert!(
            std::time::Instant::now() < deadline,
            "the value {value} never landed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Keys that break naive file paths or protocols.
pub(crate) fn hostile_keys() -> Vec<String> {
    vec![
        String::new(),
        " ".into(),
        "../../etc/passwd".into(),
        "..".into(),
        "/absolute/path".into(),
        "a/b\\c".into(),
        "with space and\ttab\nnewline".into(),
        "NUL\0byte".into(),
        "ünïcødé 🚀 日本語".into(),
        "Case".into(),
        "case".into(),
        "{hash}tag".into(),
        "*".into(),
        "x".repeat(10_000),
        format!("{}y", "x".repeat(9_999)),
    ]
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Page {
    pub(crate) users: Vec<User>,
    pub(crate) next: Option<String>,
}

pub(crate) fn page(n: u64) -> Page {
    Page {
        users: (0..n).map(user).collect(),
        next: Some("/users?cursor=abcdef".to_owned()),
    }
}

pub(crate) fn rmp_size<T: Serialize>(value: &T) -> usize {
    rmp_serde::to_vec_named(value).unwrap().len()
}

/// A driver that counts the calls made through it, forwarding to the real one.
#[derive(Debug)]
pub(crate) struct Counting {
    inner: Arc<dyn CacheDriver>,
    calls: AtomicUsize,
}

impl Counting {
    pub(crate) fn new(inner: Arc<dyn CacheDriver>) -> Self {
        Self {
            inner,
            calls: AtomicUsize::new(0),
        }
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }
}

impl CacheDriver for Counting {
    fn name(&self) -> &'static str {
        "counting"
    }
    fn get<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        self.count();
        self.inner.get(key)
    }
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, ()> {
        self.count();
        self.inner.put(key, value, ttl)
    }
    fn add<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, bool> {
        self.count();
        self.inner.add(key, value, ttl)
    }
    fn increment<'a>(&'a self, key: &'a str, by: i64) -> DriverFuture<'a, i64> {
        self.count();
        self.inner.increment(key, by)
    }
    fn hit_by<'a>(&'a self, key: &'a str, window: Duration, by: u64) -> DriverFuture<'a, Hit> {
        self.count();
        self.inner.hit_by(key, window, by)
    }
    fn forget<'a>(&'a self, key: &'a str) -> DriverFuture<'a, bool> {
        self.count();
        self.inner.forget(key)
    }
    fn forget_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> DriverFuture<'a, bool> {
        self.count();
        self.inner.forget_if(key, expected)
    }
    fn pull<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        self.count();
        self.inner.pull(key)
    }
    fn touch<'a>(&'a self, key: &'a str, ttl: Option<Duration>) -> DriverFuture<'a, bool> {
        self.count();
        self.inner.touch(key, ttl)
    }
    fn flush(&self) -> DriverFuture<'_, ()> {
        self.count();
        self.inner.flush()
    }
    fn many<'a>(&'a self, keys: &'a [&'a str]) -> DriverFuture<'a, Vec<Option<Bytes>>> {
        self.count();
        self.inner.many(keys)
    }
}

/// Checks one public operation at a time: that it opens a `cache` span named after it
/// (recorded on this thread) and changes the cache's stats.
///
/// Spans are recorded by one process-wide subscriber into the sink of the thread that opened
/// them. A subscriber set per test (`set_default`) missed spans now and then: tracing caches
/// each callsite's interest for every thread, and a callsite first reached by a test with no
/// subscriber while another test registered its own could be cached as uninteresting.
pub(crate) struct Check<'a> {
    cache: &'a Cache,
    ops: Arc<Mutex<Vec<String>>>,
    _sink: SinkGuard,
    _fallback: Option<tracing::subscriber::DefaultGuard>,
}

std::thread_local! {
    static SINK: std::cell::RefCell<Option<Arc<Mutex<Vec<String>>>>> =
        const { std::cell::RefCell::new(None) };
}

/// Empties this thread's sink when the check ends.
struct SinkGuard;

impl Drop for SinkGuard {
    fn drop(&mut self) {
        SINK.with(|sink| sink.borrow_mut().take());
    }
}

impl<'a> Check<'a> {
    pub(crate) fn new(cache: &'a Cache) -> Self {
        static GLOBAL: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let global = *GLOBAL.get_or_init(|| {
            tracing::subscriber::set_global_default(
                tracing_subscriber::registry().with(SpanRecorder),
            )
            .is_ok()
        });
        let ops = Arc::new(Mutex::new(Vec::new()));
        SINK.with(|sink| *sink.borrow_mut() = Some(Arc::clone(&ops)));
        // Another global subscriber was there first: record through one of our own.
        let fallback = (!global).then(|| {
            tracing::subscriber::set_default(tracing_subscriber::registry().with(SpanRecorder))
        });
        Self {
            cache,
            ops,
            _sink: SinkGuard,
            _fallback: fallback,
        }
    }

    fn counted(&self) -> u64 {
        let s = self.cache.stats();
        s.hits + s.misses + s.writes + s.deletes + s.errors
    }

    /// Runs `operation`, which must open the span `op` and count in the stats.
    pub(crate) async fn op<T>(&self, op: &str, operation: impl Future<Output = Result<T>>) -> T {
        let before = self.counted();
        let out = self.span_only(op, operation).await;
        assert!(self.counted() > before, "{op} counts nothing in stats");
        out
    }

    /// Runs `operation`, which must open the span `op`.
    pub(crate) async fn span_only<T>(
        &self,
        op: &str,
        operation: impl Future<Output = Result<T>>,
    ) -> T {
        self.ops.lock().unwrap().clear();
        let out = operation
            .await
            .unwrap_or_else(|e| panic!("{op} failed: {e}"));
        let seen = self.ops.lock().unwrap().clone();
        assert!(
            seen.iter().any(|s| s == op),
            "{op} opened no span of its own: {seen:?}"
        );
        out
    }
}

/// Records the `op` field of every `cache` span into the sink of the thread that opened it.
struct SpanRecorder;

impl<S: Subscriber> tracing_subscriber::Layer<S> for SpanRecorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, _id: &Id, _ctx: Context<'_, S>) {
        if attrs.metadata().name() != "cache" {
            return;
        }
        let mut op = OpField(None);
        attrs.record(&mut op);
        if let Some(op) = op.0 {
            SINK.with(|sink| {
                if let Some(ops) = &*sink.borrow() {
                    ops.lock().unwrap().push(op);
                }
            });
        }
    }
}

struct OpField(Option<String>);

impl Visit for OpField {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "op" {
            self.0 = Some(value.to_owned());
        }
    }

    fn record_debug(&mut self, _field: &Field, _value: &dyn std::fmt::Debug) {}
}
