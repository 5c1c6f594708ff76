//! `FileDriver`: one file per entry in a local folder. The default driver; no servers.
//!
//! # Layout
//!
//! A key is hashed with BLAKE3; its entry lives at `<root>/<h0h1>/<h2h3>/<hash>` (the first
//! two bytes of the hash fan the files out over 65,536 folders). Any key, `../`, unicode or
//! 10 kB long, becomes 64 hex digits inside the root: keys cannot escape the folder or collide.
//!
//! Each file is a 22-byte header, then the value:
//!
//! | bytes  | field                                         |
//! |--------|-----------------------------------------------|
//! | 0..4   | magic `jtcF`                                  |
//! | 4      | format version (1)                            |
//! | 5      | flags (0)                                     |
//! | 6..14  | expiry, Unix milliseconds, little endian; 0 = never |
//! | 14..18 | value length, little endian                   |
//! | 18..22 | CRC-32 of the value, little endian            |
//!
//! # Atomicity
//!
//! Every write goes to a temporary file in the entry's folder and is renamed over the entry,
//! so a reader sees the old entry or the new one, never half of one, even if the writer is
//! killed. Writes and read-modify-writes (`increment`, `add`, `hit`, `touch`, `pull`) also hold
//! a lock stripe — an in-process mutex plus an OS lock (`flock`) on `<root>/.locks/<n>` — so
//! they are atomic across threads and processes. Reads take no lock.

mod disk;
mod entries;
mod entry;
mod rate;
mod sweep;

pub use sweep::DEFAULT_SWEEP_INTERVAL;

use std::{
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;

use crate::{
    Clock, Error, ErrorKind, Hit, RateRule, RateVerdict, Result, SystemClock,
    clock::SharedClock,
    driver::{CacheDriver, DriverFuture, one_rate_at_a_time},
};

use self::{
    disk::{
        EntryRef, Opened, create_dirs, create_new, lock_file, make_dirs, open_entry, read_len,
        remove_file, remove_foreign,
    },
    entry::{decode_entry, encode_entry},
};

const LOCK_DIR: &str = ".locks";
const LOCK_STRIPES: usize = 128;
/// Temporary files older than this are left-overs of a killed writer; `prune` removes them.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);

/// A cache driver that keeps each entry in its own file under a folder.
///
/// It needs no server, survives restarts, and is shared by every process that opens the same
/// folder: `increment`, `add` and the other read-modify-write operations are exact across
/// processes. Files are created `0600` and folders `0700`.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use jtc_cache::{Cache, FileDriver};
/// use std::time::Duration;
///
/// let dir = tempfile::tempdir()?;
/// let cache = Cache::new(FileDriver::new(dir.path().join("cache"))?);
/// assert_eq!(cache.increment("visits", 1).await?, 1);
/// assert_eq!(cache.increment("visits", 1).await?, 2);
/// # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct FileDriver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    clock: SharedClock,
    stripes: Box<[Mutex<Option<File>>]>,
    temp_counter: AtomicU64,
}

/// Builds a [`FileDriver`] with a custom clock.
#[derive(Debug)]
#[must_use]
pub struct FileDriverBuilder {
    root: PathBuf,
    clock: SharedClock,
    sweep_interval: Duration,
}

impl FileDriverBuilder {
    /// The clock that decides expiry. Default: [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// How often the driver removes expired entries by itself, in the background: a walk of
    /// the folder on the blocking pool, at most 50,000 files a pass (a larger folder is swept
    /// over several passes), never holding up a request for longer than one entry's lock.
    /// `Duration::ZERO` turns it off. Default: [`DEFAULT_SWEEP_INTERVAL`] (60 s); the
    /// configuration reads `CACHE_FILE_SWEEP_INTERVAL` (seconds).
    ///
    /// The sweep runs on the Tokio runtime the driver is built in, and ends when the last
    /// handle to the driver is dropped; a driver built outside a runtime has none
    /// ([`prune`](crate::CacheDriver::prune) does the same walk on demand).
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// Creates the folder (and its parents) if needed, starts the background sweep and
    /// returns the driver.
    pub fn build(self) -> Result<FileDriver> {
        create_dirs(&self.root.join(LOCK_DIR))?;
        let stripes = (0..LOCK_STRIPES).map(|_| Mutex::new(None)).collect();
        let inner = Arc::new(Inner {
            root: self.root,
            clock: self.clock,
            stripes,
            temp_counter: AtomicU64::new(0),
        });
        sweep::start(&inner, self.sweep_interval);
        Ok(FileDriver { inner })
    }
}

impl FileDriver {
    /// A driver storing entries under `root`, which is created if missing.
    ///
    /// Fails with [`ErrorKind::Io`] when the folder cannot be created.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        Self::builder(root).build()
    }

    /// A builder for a driver with a custom clock or sweep interval.
    pub fn builder(root: impl Into<PathBuf>) -> FileDriverBuilder {
        FileDriverBuilder {
            root: root.into(),
            clock: Arc::new(SystemClock),
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        }
    }

    /// The folder holding the entries.
    pub fn path(&self) -> &Path {
        &self.inner.root
    }

    /// The file that holds (or would hold) `key`'s entry.
    pub fn entry_path(&self, key: &str) -> PathBuf {
        EntryRef::new(&self.inner.root, key).path
    }

    /// Runs one operation on `key`'s entry on the blocking thread pool.
    fn run<R: Send + 'static>(
        &self,
        key: &str,
        op: impl FnOnce(&Inner, &EntryRef) -> Result<R> + Send + 'static,
    ) -> DriverFuture<'static, R> {
        self.run_on(EntryRef::new(&self.inner.root, key), op)
    }

    fn run_on<R: Send + 'static>(
        &self,
        entry: EntryRef,
        op: impl FnOnce(&Inner, &EntryRef) -> Result<R> + Send + 'static,
    ) -> DriverFuture<'static, R> {
        let inner = Arc::clone(&self.inner);
        DriverFuture::new(blocking(move || op(&inner, &entry)))
    }
}

async fn blocking<R: Send + 'static>(f: impl FnOnce() -> Result<R> + Send + 'static) -> Result<R> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::from(ErrorKind::Task(e)))?
}

/// What a read found in an entry file.
enum Found {
    Missing,
    Expired,
    Corrupt(&'static str),
    /// Something that is not an entry file sits at the entry's name.
    Foreign(&'static str),
    Live {
        expires_at: Option<u64>,
        value: Bytes,
    },
}

impl Inner {
    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    /// Reads an entry file. Anything at its name that is not a regular file of at most an
    /// entry's size is never read: it is `Foreign`, and removed by the caller.
    fn read(&self, entry: &EntryRef) -> Result<Found> {
        let read = open_entry(&entry.path).and_then(|opened| {
            Ok(match opened {
                Opened::Missing => Found::Missing,
                Opened::Foreign(what) => Found::Foreign(what),
                Opened::TooLong => Found::Foreign("a file longer than any cache entry"),
                Opened::File(file, len) => self.classify(read_len(file, len)?),
            })
        });
        read.map_err(|e| Error::io(&entry.path, e))
    }

    fn classify(&self, bytes: Vec<u8>) -> Found {
        match decode_entry(bytes) {
            Err(reason) => Found::Corrupt(reason),
            Ok((Some(at), _)) if self.now() >= at => Found::Expired,
            Ok((expires_at, value)) => Found::Live { expires_at, value },
        }
    }

    /// Reads an entry; a corrupt or expired one is removed (under the lock, after checking it
    /// is still so) and reads as missing.
    fn get(&self, entry: &EntryRef) -> Result<Option<Bytes>> {
        match self.read(entry)? {
            Found::Live { value, .. } => Ok(Some(value)),
            Found::Missing => Ok(None),
            Found::Expired | Found::Corrupt(_) | Found::Foreign(_) => {
                self.locked(entry, |_| Ok(()))?;
                Ok(None)
            }
        }
    }

    /// Runs `f` holding the entry's lock stripe, after reading the entry fresh. Expired and
    /// corrupt entries are removed first and handed to `f` as missing.
    fn locked<R>(
        &self,
        entry: &EntryRef,
        f: impl FnOnce(Option<(Option<u64>, Bytes)>) -> Result<R>,
    ) -> Result<R> {
        let _lock = self.lock(entry.stripe)?;
        let live = match self.read(entry)? {
            Found::Live { expires_at, value } => Some((expires_at, value)),
            Found::Missing => None,
            Found::Expired => {
                remove_file(&entry.path)?;
                None
            }
            Found::Corrupt(reason) => {
                tracing::warn!(path = %entry.path.display(), reason, "removed an unreadable cache file");
                remove_file(&entry.path)?;
                None
            }
            Found::Foreign(what) => {
                remove_foreign(&entry.path, what)?;
                None
            }
        };
        f(live)
    }

    fn write(&self, entry: &EntryRef, expires_at: Option<u64>, value: &[u8]) -> Result<()> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = entry
            .dir()
            .join(format!(".{}.{}.{n}.tmp", entry.hash(), std::process::id()));
        let bytes = encode_entry(expires_at, value)?;
        let written = create_temp(entry.dir(), &temp)
            .and_then(|mut file| file.write_all(&bytes))
            .and_then(|()| fs::rename(&temp, &entry.path));
        written.map_err(|e| {
            let _ = fs::remove_file(&temp);
            Error::io(&entry.path, e)
        })
    }

    fn lock(&self, stripe: usize) -> Result<StripeLock<'_>> {
        let mut slot = self.stripes[stripe]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            let path = self.root.join(LOCK_DIR).join(format!("{stripe:03}"));
            let file = lock_file(&path).or_else(|e| {
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(e);
                }
                create_dirs(&self.root.join(LOCK_DIR)).map_err(|_| e)?;
                lock_file(&path)
            });
            *slot = Some(file.map_err(|e| Error::io(&path, e))?);
        }
        let file = slot.as_ref().expect("the lock file was opened above");
        file.lock().map_err(|e| Error::io(&self.root, e))?;
        Ok(StripeLock { slot })
    }
}

/// Creates the temporary file of a write in `dir`, making the folder when it is missing. The
/// background sweep removes fan-out folders it finds empty, so a folder made here (or its
/// parent, while the child is being made) can vanish again before the file is created in it;
/// once the file exists the folder is not empty and stays. A few tries settle that race; a
/// folder that keeps vanishing is an error.
fn create_temp(dir: &Path, temp: &Path) -> io::Result<File> {
    let mut tries = 0;
    loop {
        let vanished = match create_new(temp) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => e,
            created => return created,
        };
        tries += 1;
        if tries == 16 {
            return Err(vanished);
        }
        match make_dirs(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
}

/// Holds a stripe: the in-process mutex excludes this process's threads, the `flock` on the
/// stripe's file excludes other processes. Dropping it releases both.
struct StripeLock<'a> {
    slot: MutexGuard<'a, Option<File>>,
}

impl Drop for StripeLock<'_> {
    fn drop(&mut self) {
        if let Some(file) = self.slot.as_ref() {
            let _ = file.unlock();
        }
    }
}

impl CacheDriver for FileDriver {
    fn name(&self) -> &'static str {
        "file"
    }

    fn get<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        self.read_entry(key)
    }

    fn get_now(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        self.read_at_hand(&EntryRef::new(&self.inner.root, key))
    }

    fn many<'a>(&'a self, keys: &'a [&'a str]) -> DriverFuture<'a, Vec<Option<Bytes>>> {
        self.read_entries(keys)
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, ()> {
        self.write_entry(key, value, ttl)
    }

    fn add<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, bool> {
        self.add_entry(key, value, ttl)
    }

    fn increment<'a>(&'a self, key: &'a str, by: i64) -> DriverFuture<'a, i64> {
        self.increment_counter(key, by)
    }

    fn hit_by<'a>(&'a self, key: &'a str, window: Duration, by: u64) -> DriverFuture<'a, Hit> {
        self.hit_counter(key, window, by)
    }

    fn rate<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        consume: bool,
    ) -> DriverFuture<'a, Vec<RateVerdict>> {
        self.rate_on_disk(key, rules, consume)
    }

    fn rate_by<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        by: u64,
    ) -> DriverFuture<'a, Vec<Vec<RateVerdict>>> {
        one_rate_at_a_time("file", by, |consume| self.rate_on_disk(key, rules, consume))
    }

    fn forget<'a>(&'a self, key: &'a str) -> DriverFuture<'a, bool> {
        self.remove_entry(key)
    }

    fn forget_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> DriverFuture<'a, bool> {
        self.remove_entry_if(key, expected)
    }

    fn pull<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        self.take_entry(key)
    }

    fn touch<'a>(&'a self, key: &'a str, ttl: Option<Duration>) -> DriverFuture<'a, bool> {
        self.touch_entry(key, ttl)
    }

    fn flush(&self) -> DriverFuture<'_, ()> {
        DriverFuture::new(async move { self.flush_with_progress(|_, _| {}).await.map(drop) })
    }

    fn prune(&self) -> DriverFuture<'_, u64> {
        DriverFuture::new(self.prune_with_progress(|_, _| {}))
    }
}
