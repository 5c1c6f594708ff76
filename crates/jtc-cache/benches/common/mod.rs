//! What the driver benchmarks share: the keys, the value, and the bare file-system baseline.

use std::{fs, io::Write, path::Path, time::Duration};

/// Distinct keys per benchmark.
pub(crate) const KEYS: usize = 1_000;
/// The stored value: 128 bytes.
pub(crate) const VALUE: &[u8] = &[7u8; 128];
/// The TTL of every benchmark write.
pub(crate) const TTL: Option<Duration> = Some(Duration::from_secs(3600));
/// The file driver's entry header, which the raw baseline writes too.
pub(crate) const FILE_HEADER_LEN: usize = 22;

/// `user:<i>:profile` for every key index.
pub(crate) fn keys() -> Vec<String> {
    (0..KEYS).map(|i| format!("user:{i}:profile")).collect()
}

/// The bare file-system work of a put: write a temporary file, rename it over the entry.
pub(crate) fn raw_write(dir: &Path, name: &str, n: u64, bytes: &[u8]) {
    let temp = dir.join(format!(".{name}.{n}.tmp"));
    let mut file = fs::File::create(&temp).unwrap();
    file.write_all(bytes).unwrap();
    drop(file);
    fs::rename(&temp, dir.join(name)).unwrap();
}
