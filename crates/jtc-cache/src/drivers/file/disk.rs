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

/// Reads a whole entry file on the calling thread if that cannot wait on the disk: the file
/// is read with `RWF_NOWAIT`, which fails instead of blocking when the data is not in the page
/// cache. `None` means "read it on the blocking pool instead"; `Some(Ok(None))`, that the file
/// does not exist. Hot entries, the common case for a cache, then cost one `open` and one read
/// instead of a round trip through a blocking thread.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
pub(super) fn read_cached(path: &Path) -> Option<io::Result<Option<Vec<u8>>>> {
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
pub(super) fn read_cached(_path: &Path) -> Option<io::Result<Option<Vec<u8>>>> {
    None
}

/// The first bytes of a file, enough for its header; `None` if the file is gone.
pub(super) fn read_header(path: &Path) -> io::Result<Option<Vec<u8>>> {
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
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(|e| Error::io(dir, e))
}

pub(super) fn create_new(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

pub(super) fn lock_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
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
