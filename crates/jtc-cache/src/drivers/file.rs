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

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;

use crate::{
    Clock, Error, ErrorKind, Hit, Result, SystemClock,
    clock::{SharedClock, duration_ms, expiry_at},
    codec::{format_integer, incremented},
    driver::{CacheDriver, DriverFuture},
};

const MAGIC: &[u8; 4] = b"jtcF";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 22;
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
}

impl FileDriverBuilder {
    /// The clock that decides expiry. Default: [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Creates the folder (and its parents) if needed and returns the driver.
    pub fn build(self) -> Result<FileDriver> {
        create_dirs(&self.root.join(LOCK_DIR))?;
        let stripes = (0..LOCK_STRIPES).map(|_| Mutex::new(None)).collect();
        Ok(FileDriver {
            inner: Arc::new(Inner {
                root: self.root,
                clock: self.clock,
                stripes,
                temp_counter: AtomicU64::new(0),
            }),
        })
    }
}

impl FileDriver {
    /// A driver storing entries under `root`, which is created if missing.
    ///
    /// Fails with [`ErrorKind::Io`] when the folder cannot be created.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self> {
        Self::builder(root).build()
    }

    /// A builder for a driver with a custom clock.
    pub fn builder(root: impl Into<PathBuf>) -> FileDriverBuilder {
        FileDriverBuilder {
            root: root.into(),
            clock: Arc::new(SystemClock),
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

/// Where one key's entry lives.
/// Where an entry lives: `<root>/<h0h1>/<h2h3>/<hash>`, the hash in lowercase hex.
#[derive(Debug)]
struct EntryRef {
    path: PathBuf,
    stripe: usize,
}

impl EntryRef {
    fn new(root: &Path, key: &str) -> Self {
        let digest = blake3::hash(key.as_bytes());
        let bytes = digest.as_bytes();
        let hash = digest.to_hex();
        // One allocation for the whole path, on every read.
        let mut path = PathBuf::with_capacity(root.as_os_str().len() + 8 + hash.len());
        path.push(root);
        path.push(&hash[0..2]);
        path.push(&hash[2..4]);
        path.push(hash.as_str());
        let stripe = usize::from(u16::from_le_bytes([bytes[4], bytes[5]])) % LOCK_STRIPES;
        Self { path, stripe }
    }

    /// An entry found on disk by a walk.
    fn at(path: &Path, hash: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            stripe: stripe_of_hash(hash),
        }
    }

    /// The folder holding the entry.
    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(&self.path)
    }

    /// The entry's file name: its key's hash.
    fn hash(&self) -> &str {
        self.path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
    }
}

/// What a read found in an entry file.
enum Found {
    Missing,
    Expired,
    Corrupt(&'static str),
    Live {
        expires_at: Option<u64>,
        value: Bytes,
    },
}

impl Inner {
    fn now(&self) -> u64 {
        self.clock.now_ms()
    }

    fn read(&self, entry: &EntryRef) -> Result<Found> {
        match fs::read(&entry.path) {
            Ok(bytes) => Ok(self.classify(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Found::Missing),
            Err(e) => Err(Error::io(&entry.path, e)),
        }
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
            Found::Expired | Found::Corrupt(_) => {
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
        };
        f(live)
    }

    fn write(&self, entry: &EntryRef, expires_at: Option<u64>, value: &[u8]) -> Result<()> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let temp = entry
            .dir()
            .join(format!(".{}.{}.{n}.tmp", entry.hash(), std::process::id()));
        let bytes = encode_entry(expires_at, value)?;
        let written = create_new(&temp)
            .or_else(|e| {
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(e);
                }
                create_dirs(entry.dir()).map_err(|_| e)?;
                create_new(&temp)
            })
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
        let ours = header.starts_with(MAGIC);
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
        let entry = EntryRef::new(&self.inner.root, key);
        match read_cached(&entry.path) {
            Some(Ok(None)) => return DriverFuture::ready(Ok(None)),
            Some(Ok(Some(bytes))) => {
                if let Found::Live { value, .. } = self.inner.classify(bytes) {
                    return DriverFuture::ready(Ok(Some(value)));
                }
                // Expired or damaged: removing it takes the lock, on the blocking pool.
            }
            Some(Err(e)) => return DriverFuture::ready(Err(Error::io(&entry.path, e))),
            None => {} // not in the page cache: read it on the blocking pool
        }
        self.run_on(entry, |inner, entry| inner.get(entry))
    }

    fn many<'a>(&'a self, keys: &'a [&'a str]) -> DriverFuture<'a, Vec<Option<Bytes>>> {
        let inner = Arc::clone(&self.inner);
        let entries: Vec<_> = keys.iter().map(|k| EntryRef::new(&inner.root, k)).collect();
        DriverFuture::new(blocking(move || {
            entries.iter().map(|e| inner.get(e)).collect()
        }))
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, ()> {
        self.run(key, move |inner, entry| {
            let _lock = inner.lock(entry.stripe)?;
            match ttl {
                Some(ttl) if ttl.is_zero() => remove_file(&entry.path),
                _ => inner.write(entry, expiry_at(&*inner.clock, ttl), &value),
            }
        })
    }

    fn add<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, bool> {
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

    fn increment<'a>(&'a self, key: &'a str, by: i64) -> DriverFuture<'a, i64> {
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

    fn hit<'a>(&'a self, key: &'a str, window: Duration) -> DriverFuture<'a, Hit> {
        let owned = key.to_owned();
        self.run(key, move |inner, entry| {
            inner.locked(entry, |live| {
                let now = inner.now();
                let (expires_at, stored) = live.unzip();
                let count = incremented(&owned, stored.as_deref(), 1)?;
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

    fn forget<'a>(&'a self, key: &'a str) -> DriverFuture<'a, bool> {
        self.run(key, |inner, entry| {
            inner.locked(entry, |live| {
                if live.is_some() {
                    remove_file(&entry.path)?;
                }
                Ok(live.is_some())
            })
        })
    }

    fn forget_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> DriverFuture<'a, bool> {
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

    fn pull<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        self.run(key, |inner, entry| {
            inner.locked(entry, |live| {
                if live.is_some() {
                    remove_file(&entry.path)?;
                }
                Ok(live.map(|(_, value)| value))
            })
        })
    }

    fn touch<'a>(&'a self, key: &'a str, ttl: Option<Duration>) -> DriverFuture<'a, bool> {
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

    fn flush(&self) -> DriverFuture<'_, ()> {
        DriverFuture::new(async move { self.flush_with_progress(|_, _| {}).await.map(drop) })
    }

    fn prune(&self) -> DriverFuture<'_, u64> {
        DriverFuture::new(self.prune_with_progress(|_, _| {}))
    }
}

fn encode_entry(expires_at: Option<u64>, value: &[u8]) -> Result<Vec<u8>> {
    let len = u32::try_from(value.len()).map_err(|_| ErrorKind::Encode {
        key: String::new(),
        source: "a file cache value must be smaller than 4 GiB".into(),
    })?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + value.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&[VERSION, 0]);
    bytes.extend_from_slice(&expires_at.unwrap_or(0).to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(value).to_le_bytes());
    bytes.extend_from_slice(value);
    Ok(bytes)
}

/// Splits a header into (expiry, value length, CRC), or says what is wrong with it.
fn parse_header(header: &[u8]) -> Result<(Option<u64>, usize, u32), &'static str> {
    if header.len() < HEADER_LEN {
        return Err("shorter than its header");
    }
    if &header[0..4] != MAGIC {
        return Err("not a jtc cache file");
    }
    if header[4] != VERSION {
        return Err("written by another format version");
    }
    let field = |range: std::ops::Range<usize>| {
        header[range]
            .iter()
            .rev()
            .fold(0u64, |acc, b| acc << 8 | u64::from(*b))
    };
    let expires_at = Some(field(6..14)).filter(|&at| at != 0);
    Ok((expires_at, field(14..18) as usize, field(18..22) as u32))
}

/// Checks a whole entry file and returns its expiry and value.
fn decode_entry(bytes: Vec<u8>) -> Result<(Option<u64>, Bytes), &'static str> {
    let (expires_at, len, crc) = parse_header(&bytes)?;
    if bytes.len() != HEADER_LEN + len {
        return Err("truncated or padded");
    }
    if crc32fast::hash(&bytes[HEADER_LEN..]) != crc {
        return Err("checksum mismatch");
    }
    Ok((expires_at, Bytes::from(bytes).slice(HEADER_LEN..)))
}

/// Entries larger than this are always read on the blocking pool.
const INLINE_READ_LIMIT: u64 = 256 * 1024;

/// Reads a whole entry file on the calling thread if that cannot wait on the disk: the file
/// is read with `RWF_NOWAIT`, which fails instead of blocking when the data is not in the page
/// cache. `None` means "read it on the blocking pool instead"; `Some(Ok(None))`, that the file
/// does not exist. Hot entries, the common case for a cache, then cost one `open` and one read
/// instead of a round trip through a blocking thread.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
fn read_cached(path: &Path) -> Option<io::Result<Option<Vec<u8>>>> {
    use rustix::io::{Errno, ReadWriteFlags, preadv2};
    use std::io::IoSliceMut;

    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(Ok(None)),
        Err(e) => return Some(Err(e)),
    };
    let len = file.metadata().ok()?.len();
    if len > INLINE_READ_LIMIT {
        return None;
    }
    // The file's length as it was opened: entries are replaced by renaming a new file over
    // them, never rewritten in place, so an open entry keeps its length. (Bytes a foreign
    // writer appends later are not read; what is read is checked against its header's length
    // and checksum like any other read.) Reading exactly that many bytes takes one call, where
    // reading up to the end of the file takes a second one to see the end.
    let mut buf = vec![0u8; len as usize];
    let mut filled = 0;
    while filled < buf.len() {
        let mut slices = [IoSliceMut::new(&mut buf[filled..])];
        match preadv2(&file, &mut slices, filled as u64, ReadWriteFlags::NOWAIT) {
            Ok(0) => break, // shorter than it was: the header check finds it truncated
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(_) => return None, // EAGAIN (not cached), EOPNOTSUPP (file system): fall back
        }
    }
    buf.truncate(filled);
    Some(Ok(Some(buf)))
}

#[cfg(not(all(target_os = "linux", not(target_env = "musl"))))]
fn read_cached(_path: &Path) -> Option<io::Result<Option<Vec<u8>>>> {
    None
}

/// The first bytes of a file, enough for its header; `None` if the file is gone.
fn read_header(path: &Path) -> io::Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut header = Vec::with_capacity(HEADER_LEN);
    file.take(HEADER_LEN as u64).read_to_end(&mut header)?;
    Ok(Some(header))
}

fn stripe_of_hash(hash: &str) -> usize {
    let byte =
        |i: usize| u8::from_str_radix(hash.get(i * 2..i * 2 + 2).unwrap_or("00"), 16).unwrap_or(0);
    usize::from(u16::from_le_bytes([byte(4), byte(5)])) % LOCK_STRIPES
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn is_entry_name(name: &str) -> bool {
    name.len() == 64 && is_hex(name)
}

/// `.<hash>.<pid>.<n>.tmp`, the names `write` gives its temporary files.
fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) else {
        return false;
    };
    let mut parts = rest.split('.');
    let digits =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    parts.next().is_some_and(is_entry_name)
        && digits(parts.next())
        && digits(parts.next())
        && parts.next().is_none()
}

fn is_stale(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .is_some_and(|age| age > STALE_TEMP_AGE)
}

/// The two-hex-digit folders directly under `dir`.
fn list_hex_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = read_dir(dir)?
        .into_iter()
        .filter(|item| {
            let name = item.file_name();
            let name = name.to_str().unwrap_or("");
            name.len() == 2 && is_hex(name) && item.file_type().is_ok_and(|t| t.is_dir())
        })
        .map(|item| item.path())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(items) => items
            .collect::<io::Result<_>>()
            .map_err(|e| Error::io(dir, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

fn create_dirs(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| Error::io(dir, e))
}

fn create_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn lock_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_files_round_trip_and_reject_damage() {
        let bytes = encode_entry(Some(1234), b"value").unwrap();
        assert_eq!(
            decode_entry(bytes.clone()),
            Ok((Some(1234), Bytes::from_static(b"value")))
        );
        assert_eq!(
            decode_entry(encode_entry(None, b"").unwrap()),
            Ok((None, Bytes::new()))
        );

        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode_entry(flipped), Err("checksum mismatch"));
        assert_eq!(
            decode_entry(bytes[..bytes.len() - 1].to_vec()),
            Err("truncated or padded")
        );
        assert_eq!(
            decode_entry(bytes[..10].to_vec()),
            Err("shorter than its header")
        );
        assert_eq!(decode_entry(b"x".repeat(40)), Err("not a jtc cache file"));
    }

    #[test]
    fn names_of_our_files_are_recognised_and_nothing_else() {
        let hash = "ab".repeat(32);
        assert!(is_entry_name(&hash));
        assert!(is_temp_name(&format!(".{hash}.12.3.tmp")));
        for foreign in [
            "notes.txt",
            ".gitignore",
            &hash[1..],
            &format!(".{hash}.x.3.tmp"),
        ] {
            assert!(
                !is_entry_name(foreign) && !is_temp_name(foreign),
                "{foreign}"
            );
        }
    }

    #[test]
    fn the_stripe_of_a_path_matches_the_stripe_of_its_key() {
        let entry = EntryRef::new(Path::new("/c"), "some key");
        assert_eq!(stripe_of_hash(entry.hash()), entry.stripe);
        let hash = entry.hash();
        assert!(is_entry_name(hash), "{hash}");
        let expected = Path::new("/c")
            .join(&hash[0..2])
            .join(&hash[2..4])
            .join(hash);
        assert_eq!(entry.path, expected);
        assert_eq!(entry.dir(), expected.parent().unwrap());
    }
}
