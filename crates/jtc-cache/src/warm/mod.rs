//! Cache warming: fill the cache before traffic arrives, keep hot keys from ever missing, and
//! say when the app is ready.
//!
//! A [`Warmer`] holds entries — a key, a TTL and a loader each — and [`run`](Warmer::run)s
//! their loaders with bounded concurrency, skipping entries already present, within an
//! optional time limit, reporting progress as it goes and a [`WarmReport`] at the end. A
//! failing loader is reported and never stops the others.
//!
//! - **A fleet** starting together: [`once_per`](Warmer::once_per) takes a lock per entry in
//!   the cache, so that one instance loads each entry and the others wait for its value
//!   (`fleet.rs`).
//! - **Refresh ahead**: [`refresh_ahead`](Warmer::refresh_ahead) re-runs the loaders in the
//!   background before the entries expire, so hot keys never miss (`refresh.rs`).
//! - **Readiness**: [`Warmer::readiness`] is a [`Readiness`] handle that turns ready when the
//!   first run ends; with the `axum` feature it answers `/ready` and holds routes back with
//!   503 until then (`ready.rs`).
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use jtc_cache::{ArrayDriver, Cache, warm::Warmer};
//! use std::{convert::Infallible, time::Duration};
//!
//! let cache = Cache::new(ArrayDriver::new());
//! let hour = Duration::from_secs(3600);
//! let report = Warmer::new(&cache)
//!     .entry("config:app", hour, || async { Ok::<_, Infallible>("dark mode") })
//!     .entries(["user:1", "user:2"], hour, |key| async move {
//!         if key == "user:2" { Err("the database said no") } else { Ok(key.len()) }
//!     })
//!     .concurrency(8)
//!     .run()
//!     .await;
//! assert_eq!((report.loaded, report.skipped), (2, 0));
//! assert_eq!(report.failed.len(), 1);
//! assert_eq!(report.failed[0].0, "user:2");
//! assert_eq!(cache.get::<String>("config:app").await?.as_deref(), Some("dark mode"));
//! # Ok::<_, jtc_cache::Error>(()) }).unwrap();
//! ```

mod fleet;
mod ready;
mod refresh;

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use serde::Serialize;

pub use self::{ready::Readiness, refresh::RefreshAhead};
use crate::{Cache, Error, ErrorKind, Result};

#[cfg(feature = "axum")]
pub use self::ready::{ReadinessLayer, ReadinessService};

/// How many keys one presence check reads (`Cache::has_many`) before a run.
const PRESENT_CHUNK: usize = 1_000;

/// How many loaders run at once, by default.
pub const DEFAULT_CONCURRENCY: usize = 8;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Filled = Pin<Box<dyn Future<Output = Result<()>> + Send>>;
/// Loads one entry's value and writes it: `(cache, key, ttl)`.
type Fill = Arc<dyn Fn(Cache, Arc<str>, Option<Duration>) -> Filled + Send + Sync>;
type OnProgress = Arc<dyn Fn(Progress) + Send + Sync>;

/// One entry to warm.
#[derive(Clone)]
pub(crate) struct Job {
    key: Arc<str>,
    ttl: Option<Duration>,
    fill: Fill,
}

impl Job {
    /// Runs the loader and writes its value.
    async fn fill(&self, cache: &Cache) -> Result<()> {
        (self.fill)(cache.clone(), Arc::clone(&self.key), self.ttl).await
    }
}

/// How far a run has got: entries done (loaded, skipped or failed) of the total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Progress {
    /// Entries finished, whatever the outcome.
    pub done: usize,
    /// Entries in the run.
    pub total: usize,
    /// Entries whose loader ran and whose value was written.
    pub loaded: usize,
    /// Entries already present (and not reloaded), or loaded by another instance.
    pub skipped: usize,
    /// Entries whose loader or write failed.
    pub failed: usize,
}

/// What a [`Warmer::run`] did.
#[non_exhaustive]
pub struct WarmReport {
    /// Entries whose loader ran and whose value was written.
    pub loaded: usize,
    /// Entries already present and fresh (not reloaded unless [`Warmer::overwrite`]), or
    /// loaded by another instance ([`Warmer::once_per`]).
    pub skipped: usize,
    /// Entries that failed, with why: [`ErrorKind::Loader`] for a loader's error, the cache's
    /// error for a failed write, [`ErrorKind::Timeout`] for the entries the run's
    /// [`timeout`](Warmer::timeout) left unfinished. In the order the entries were given.
    pub failed: Vec<(String, Error)>,
    /// How long the run took.
    pub took: Duration,
    /// The background refresh ([`Warmer::refresh_ahead`]); refreshing stops when it is
    /// dropped — keep it for as long as the app runs.
    pub refresh: Option<RefreshAhead>,
}

impl fmt::Debug for WarmReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WarmReport")
            .field("loaded", &self.loaded)
            .field("skipped", &self.skipped)
            .field("failed", &self.failed)
            .field("took", &self.took)
            .field("refresh", &self.refresh.is_some())
            .finish()
    }
}

/// Warms a cache: see the [module](self).
pub struct Warmer {
    cache: Cache,
    jobs: Vec<Job>,
    concurrency: usize,
    timeout: Option<Duration>,
    on_progress: Option<OnProgress>,
    overwrite: bool,
    once_per: Option<Duration>,
    refresh_ahead: Option<f64>,
    readiness: Readiness,
}

impl fmt::Debug for Warmer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Warmer")
            .field("cache", &self.cache.name())
            .field("entries", &self.jobs.len())
            .field("concurrency", &self.concurrency)
            .field("timeout", &self.timeout)
            .field("overwrite", &self.overwrite)
            .field("once_per", &self.once_per)
            .field("refresh_ahead", &self.refresh_ahead)
            .finish_non_exhaustive()
    }
}

/// Writes `value` at `key` for `ttl` (`None`: forever).
async fn write<T: Serialize + ?Sized>(
    cache: &Cache,
    key: &str,
    value: &T,
    ttl: Option<Duration>,
) -> Result<()> {
    match ttl {
        Some(ttl) => cache.put(key, value, ttl).await,
        None => cache.forever(key, value).await,
    }
}

/// Awaits a loader, then writes its value at `key`: one entry's fill.
fn filled<T, E>(
    cache: Cache,
    key: Arc<str>,
    ttl: Option<Duration>,
    loading: impl Future<Output = std::result::Result<T, E>> + Send + 'static,
) -> Filled
where
    T: Serialize + Send + Sync + 'static,
    E: Into<BoxError>,
{
    Box::pin(async move {
        let value = loading.await.map_err(|e| loader_error(&key, e))?;
        write(&cache, &key, &value, ttl).await
    })
}

fn loader_error(key: &str, error: impl Into<BoxError>) -> Error {
    ErrorKind::Loader {
        key: key.to_owned(),
        source: error.into(),
    }
    .into()
}

impl Warmer {
    /// A warmer for `cache`, with no entries yet.
    pub fn new(cache: &Cache) -> Self {
        Self {
            cache: cache.clone(),
            jobs: Vec::new(),
            concurrency: DEFAULT_CONCURRENCY,
            timeout: None,
            on_progress: None,
            overwrite: false,
            once_per: None,
            refresh_ahead: None,
            readiness: Readiness::new(),
        }
    }

    /// One entry: `key`, kept for `ttl` (a `Duration`, or `None` for no expiry), loaded by
    /// `load`. The loader returns a `Result`; its error is reported as
    /// [`ErrorKind::Loader`] and the other entries go on.
    #[must_use]
    pub fn entry<T, E, F, Fut>(
        mut self,
        key: impl Into<String>,
        ttl: impl Into<Option<Duration>>,
        load: F,
    ) -> Self
    where
        T: Serialize + Send + Sync + 'static,
        E: Into<BoxError>,
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
    {
        let fill: Fill = Arc::new(move |cache, key, ttl| filled(cache, key, ttl, load()));
        self.jobs.push(Job {
            key: Arc::from(key.into()),
            ttl: ttl.into(),
            fill,
        });
        self
    }

    /// Many entries with one loader, called with each key.
    #[must_use]
    pub fn entries<K, T, E, F, Fut>(
        mut self,
        keys: impl IntoIterator<Item = K>,
        ttl: impl Into<Option<Duration>>,
        load: F,
    ) -> Self
    where
        K: Into<String>,
        T: Serialize + Send + Sync + 'static,
        E: Into<BoxError>,
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<T, E>> + Send + 'static,
    {
        let ttl = ttl.into();
        let fill: Fill = Arc::new(move |cache, key: Arc<str>, ttl| {
            let loading = load(key.to_string());
            filled(cache, key, ttl, loading)
        });
        self.jobs.extend(keys.into_iter().map(|key| Job {
            key: Arc::from(key.into()),
            ttl,
            fill: Arc::clone(&fill),
        }));
        self
    }

    /// How many loaders run at once (default [`DEFAULT_CONCURRENCY`]; at least 1). The same
    /// bound holds for the background refresh.
    #[must_use]
    pub fn concurrency(mut self, loaders: usize) -> Self {
        self.concurrency = loaders.max(1);
        self
    }

    /// A limit on the whole run: when it passes, the loaders still running are cancelled and
    /// every unfinished entry is reported failed with [`ErrorKind::Timeout`].
    #[must_use]
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Calls `report` after each entry finishes, with the run's [`Progress`] so far. It runs in
    /// the loader's task: keep it short.
    #[must_use]
    pub fn on_progress(mut self, report: impl Fn(Progress) + Send + Sync + 'static) -> Self {
        self.on_progress = Some(Arc::new(report));
        self
    }

    /// Reloads entries that are already present (default: `false`, they are skipped).
    #[must_use]
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Across a fleet: each entry is loaded at most once per `period` by all the instances
    /// warming it. Before loading an entry an instance takes a lock on it in the cache for
    /// `period` (kept after the load: an instance starting later in the period skips the
    /// entry); an instance that finds the lock taken waits for the value — polling, at most
    /// until the lock expires — and counts the entry skipped. A loader that fails releases the
    /// lock, so another instance tries. Costs a lock per entry (one `add` on the backend).
    #[must_use]
    pub fn once_per(mut self, period: Duration) -> Self {
        self.once_per = Some(period);
        self
    }

    /// Keeps warmed entries fresh: after `fraction` of an entry's TTL (0.8: at 80 %), its
    /// loader runs again in the background and rewrites it, so a hot key never misses.
    /// Entries without a TTL are not refreshed. Failures are logged and retried with back-off
    /// while the old value is served. The handle is [`WarmReport::refresh`]; refreshing stops
    /// when it is dropped. `fraction` is clamped to 0.05–0.95.
    #[must_use]
    pub fn refresh_ahead(mut self, fraction: f64) -> Self {
        self.refresh_ahead = Some(fraction.clamp(0.05, 0.95));
        self
    }

    /// A handle that turns ready when this warmer's run ends (whatever its outcome), with the
    /// run's progress meanwhile. Take it before [`run`](Self::run).
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// How many entries this warmer holds.
    pub fn len(&self) -> usize {
        self.jobs.len()
    }

    /// Whether this warmer holds no entries.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Runs every loader (at most [`concurrency`](Self::concurrency) at once) and reports.
    /// Never fails as a whole: each entry's error is in [`WarmReport::failed`].
    pub async fn run(self) -> WarmReport {
        // tokio's clock: a test on paused time sees the time it moved.
        let started = tokio::time::Instant::now();
        let jobs: Arc<[Job]> = Arc::from(self.jobs);
        let run = Arc::new(Run {
            cache: self.cache.clone(),
            jobs: Arc::clone(&jobs),
            next: AtomicUsize::new(0),
            outcomes: Mutex::new(jobs.iter().map(|_| None).collect()),
            present: std::sync::OnceLock::new(),
            overwrite: self.overwrite,
            once_per: self.once_per,
            on_progress: self.on_progress,
            readiness: self.readiness.clone(),
        });
        self.readiness.update(Progress {
            total: jobs.len(),
            ..Progress::default()
        });
        let mut workers = tokio::task::JoinSet::new();
        let all = async {
            if !self.overwrite {
                run.check_present().await;
            }
            for _ in 0..self.concurrency.min(jobs.len()) {
                workers.spawn(Arc::clone(&run).work());
            }
            while let Some(joined) = workers.join_next().await {
                if let Err(error) = joined
                    && error.is_panic()
                {
                    tracing::error!(%error, "a cache warming loader panicked");
                }
            }
        };
        let timed_out = match self.timeout {
            Some(limit) => tokio::time::timeout(limit, all).await.is_err(),
            None => {
                all.await;
                false
            }
        };
        workers.abort_all();
        let mut report = run.report(self.timeout.filter(|_| timed_out), started.elapsed());
        self.readiness.set_ready();
        if let Some(fraction) = self.refresh_ahead {
            report.refresh = Some(RefreshAhead::start(
                &self.cache,
                &jobs,
                fraction,
                self.concurrency,
            ));
        }
        report
    }
}

/// What happened to one entry.
enum Outcome {
    Loaded,
    Skipped,
    Failed(Error),
}

/// One run's shared state.
struct Run {
    cache: Cache,
    jobs: Arc<[Job]>,
    next: AtomicUsize,
    outcomes: Mutex<Vec<Option<Outcome>>>,
    /// Which entries were present before the run, read in chunks; unset when that read
    /// failed (each entry is then checked on its own).
    present: std::sync::OnceLock<Vec<bool>>,
    overwrite: bool,
    once_per: Option<Duration>,
    on_progress: Option<OnProgress>,
    readiness: Readiness,
}

impl Run {
    /// Reads which entries are already present, `PRESENT_CHUNK` keys a backend call.
    async fn check_present(&self) {
        let mut present = Vec::with_capacity(self.jobs.len());
        for chunk in self.jobs.chunks(PRESENT_CHUNK) {
            let keys: Vec<&str> = chunk.iter().map(|job| &*job.key).collect();
            match self.cache.has_many(&keys).await {
                Ok(found) => present.extend(found),
                Err(error) => {
                    tracing::debug!(%error, "reading which entries are present failed; checking each");
                    return;
                }
            }
        }
        let _ = self.present.set(present);
    }

    /// One worker: takes the next entry until none is left.
    async fn work(self: Arc<Self>) {
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(job) = self.jobs.get(index) else {
                return;
            };
            let outcome = match self.warm(job, index).await {
                Ok(outcome) => outcome,
                Err(error) => Outcome::Failed(error),
            };
            self.record(index, outcome);
        }
    }

    async fn warm(&self, job: &Job, index: usize) -> Result<Outcome> {
        if !self.overwrite {
            let present = match self.present.get().and_then(|p| p.get(index)) {
                Some(known) => *known,
                None => self.cache.has(&job.key).await?,
            };
            if present {
                return Ok(Outcome::Skipped);
            }
        }
        match self.once_per {
            Some(period) => fleet::once(&self.cache, job, period).await,
            None => job.fill(&self.cache).await.map(|()| Outcome::Loaded),
        }
    }

    fn record(&self, index: usize, outcome: Outcome) {
        let progress = self.readiness.step(|progress| {
            progress.done += 1;
            match &outcome {
                Outcome::Loaded => progress.loaded += 1,
                Outcome::Skipped => progress.skipped += 1,
                Outcome::Failed(_) => progress.failed += 1,
            }
        });
        if let Some(slot) = self
            .outcomes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_mut(index)
        {
            *slot = Some(outcome);
        }
        if let Some(report) = &self.on_progress {
            report(progress);
        }
    }

    /// The report; entries without an outcome timed out after `limit`.
    fn report(&self, limit: Option<Duration>, took: Duration) -> WarmReport {
        let mut outcomes = self
            .outcomes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut report = WarmReport {
            loaded: 0,
            skipped: 0,
            failed: Vec::new(),
            took,
            refresh: None,
        };
        for (job, outcome) in self.jobs.iter().zip(outcomes.iter_mut()) {
            match outcome.take() {
                Some(Outcome::Loaded) => report.loaded += 1,
                Some(Outcome::Skipped) => report.skipped += 1,
                Some(Outcome::Failed(error)) => report.failed.push((job.key.to_string(), error)),
                None => {
                    let after = limit.unwrap_or(took);
                    let error = ErrorKind::Timeout {
                        operation: "warm",
                        after,
                    };
                    report.failed.push((job.key.to_string(), error.into()));
                }
            }
        }
        report
    }
}
