//! The file system under the driver: reads that avoid the blocking pool, the names of our
//! files, folders and lock files.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read},
    path::{Path, PathBuf},
};

use crate::{Error, Result};

use super::{LOCK_STRIPES, STALE_TEMP_AGE, entry::HEADER_LEN};

/// Entries larger than this are always read on the blocking pool.
pub(super) const INLINE_READ_LIMIT: u64 = 256 * 1024;

/// The longest file that can be an entry: the header and the longest value its 32-bit length
/// field describes. A longer file at an entry's name is refused before a byte of it is read.
pub(super) const MAX_ENTRY_FILE: u64 = HEADER_LEN as u64 + u32::MAX as u64;

/// What is at an entry's (or lock file's) name, opened without following a symbolic link and
/// without waiting on a FIFO's writer, then looked at with `fstat` on the open file.
pub(super) enum Opened {
    Missing,
    /// Not a regular file: a symbolic link, a FIFO, a socket, a device, a folder. Never read.
    Foreign(&'static str),
    /// A regular file longer than any entry ([`MAX_ENTRY_FILE`]).
    TooLong,
    /// A regular file and its length as opened.
    File(File, u64),
}

/// Flags that keep an `open` from following a symlink another account planted, and from
/// blocking on a FIFO (or a device) until someone writes to it.
fn guarded(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
    );
    options
}

/// Whether an `open` failed because the name is a symlink (`O_NOFOLLOW`) or a socket.
fn refused_as_foreign(error: &io::Error) -> Option<&'static str> {
    #[cfg(unix)]
    match error.raw_os_error() {
        Some(libc::ELOOP | libc::EMLINK) => return Some("a symbolic link"),
        Some(libc::ENXIO) => return Some("a socket"),
        _ => {}
    }
    let _ = error;
    None
}

fn kind_of(meta: &fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let kind = meta.file_type();
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_socket() {
            return "a socket";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
    }
    if meta.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// Opens what is at an entry's name for reading: see [`Opened`].
pub(super) fn open_entry(path: &Path) -> io::Result<Opened> {
    let file = match guarded(OpenOptions::new().read(true)).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Opened::Missing),
        Err(e) => return refused_as_foreign(&e).map(Opened::Foreign).ok_or(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(Opened::Foreign(kind_of(&meta)));
    }
    if meta.len() > MAX_ENTRY_FILE {
        return Ok(Opened::TooLong);
    }
    Ok(Opened::File(file, meta.len()))
}

/// The first `len` bytes of an open entry file (fewer if it is shorter now).
pub(super) fn read_len(file: File, len: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Removes what is at an entry's name that is not an entry (a symlink, a FIFO, a file too long
/// to be one), and says so in the log. A folder cannot be removed this way and stays (and a
/// write to that name fails with its error).
pub(super) fn remove_foreign(path: &Path, what: &str) -> Result<()> {
    tracing::warn!(
        path = %path.display(),
        what,
        "a cache file's name held something that is not a cache file; removed it"
    );
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) => Ok(()),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Reads a whole entry file on the calling thread if that cannot wait on the disk: the file
/// is read with `RWF_NOWAIT`, which fails instead of blocking when the data is not in the page
/// cache. `None` means "read it on the blocking pool instead" (that is also where anything
/// that is not a regular entry file is removed); `Some(Ok(None))`, that the file does not
/// exist. Hot entries, the common case for a cache, then cost one `open` and one read instead
/// of a round trip through a blocking thread. The `open` itself cannot wait: it follows no
/// symlink and does not block on a FIFO.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
pub(super) fn read_cached(path: &Path) -> Option<io::Result<Option<Vec<u8>>>> {
    use rustix::io::{Errno, ReadWriteFlags, preadv2};
    use std::io::IoSliceMut;

    let (file, len) = match open_entry(path) {
        Ok(Opened::File(file, len)) => (file, len),
        Ok(Opened::Missing) => return Some(Ok(None)),
        Ok(Opened::Foreign(_) | Opened::TooLong) => return None,
        Err(e) => return Some(Err(e)),
    };
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
pub(super) fn read_cached(_path: &Path) -> Option<io::Result<Option<Vec<u8>>>> {
    None
}

/// The first bytes of an open entry file, enough for its header.
pub(super) fn read_header(file: File) -> io::Result<Vec<u8>> {
    read_len(file, HEADER_LEN as u64)
}

fn stripe_of_hash(hash: &str) -> usize {
    let byte =
        |i: usize| u8::from_str_radix(hash.get(i * 2..i * 2 + 2).unwrap_or("00"), 16).unwrap_or(0);
    usize::from(u16::from_le_bytes([byte(4), byte(5)])) % LOCK_STRIPES
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub(super) fn is_entry_name(name: &str) -> bool {
    name.len() == 64 && is_hex(name)
}

/// `.<hash>.<pid>.<n>.tmp`, the names `write` gives its temporary files.
pub(super) fn is_temp_name(name: &str) -> bool {
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

pub(super) fn is_stale(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .is_some_and(|age| age > STALE_TEMP_AGE)
}

/// The two-hex-digit folders directly under `dir`.
pub(super) fn list_hex_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
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

pub(super) fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(items) => items
            .collect::<io::Result<_>>()
            .map_err(|e| Error::io(dir, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(Error::io(dir, e)),
    }
}

pub(super) fn remove_file(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

pub(super) fn create_dirs(dir: &Path) -> Result<()> {
    make_dirs(dir).map_err(|e| Error::io(dir, e))
}

/// Makes `dir` and its missing parents, readable by this account only.
pub(super) fn make_dirs(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates a file that did not exist (`O_EXCL`: never through a symlink, dangling or not).
pub(super) fn create_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    guarded(&mut options).open(path)
}

/// Opens (or creates) a stripe's lock file without following a symlink: an existing regular
/// file is opened as it is; a missing one is created with `O_EXCL`; anything else at the name
/// (a symlink, dangling or not, a FIFO) is removed, logged, and replaced by a new file.
pub(super) fn lock_file(path: &Path) -> io::Result<File> {
    for _ in 0..4 {
        match guarded(OpenOptions::new().read(true).write(true)).open(path) {
            Ok(file) => {
                let meta = file.metadata()?;
                if meta.is_file() {
                    return Ok(file);
                }
                replace_foreign_lock(path, kind_of(&meta))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => match create_new(path) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                created => return created,
            },
            Err(e) => match refused_as_foreign(&e) {
                Some(what) => replace_foreign_lock(path, what)?,
                None => return Err(e),
            },
        }
    }
    Err(io::Error::other(
        "the lock file's name kept changing under the cache (another account writing the cache folder?)",
    ))
}

fn replace_foreign_lock(path: &Path, what: &str) -> io::Result<()> {
    tracing::warn!(
        path = %path.display(),
        what,
        "a cache lock file's name held something that is not a lock file; replacing it"
    );
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Where an entry lives: `<root>/<h0h1>/<h2h3>/<hash>`, the hash in lowercase hex.
#[derive(Debug)]
pub(super) struct EntryRef {
    pub(super) path: PathBuf,
    pub(super) stripe: usize,
}

impl EntryRef {
    pub(super) fn new(root: &Path, key: &str) -> Self {
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
    pub(super) fn at(path: &Path, hash: &str) -> Self {
        Self {
            path: path.to_path_buf(),
            stripe: stripe_of_hash(hash),
        }
    }

    /// The folder holding the entry.
    pub(super) fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(&self.path)
    }

    /// The entry's file name: its key's hash.
    pub(super) fn hash(&self) -> &str {
        self.path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
