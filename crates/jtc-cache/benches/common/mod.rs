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

/// A file driver and a bare folder holding the same 1,000 entries, and the runtime to drive it.
pub(crate) struct FileSetup {
    /// One worker thread, as an app on a small machine would have.
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) keys: Vec<String>,
    /// The driver's folder and the bare one; removed on drop.
    pub(crate) _tmp: tempfile::TempDir,
    /// The baseline's folder: one file per key, named like the driver's (64 hex digits).
    pub(crate) raw_dir: std::path::PathBuf,
    pub(crate) names: Vec<String>,
    pub(crate) driver: jtc_cache::FileDriver,
    /// What the baseline writes: the same bytes the driver writes, header and value.
    pub(crate) stored: Vec<u8>,
}

pub(crate) fn file_setup() -> FileSetup {
    use jtc_cache::CacheDriver;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let keys = keys();
    let tmp = tempfile::tempdir().unwrap();
    let raw_dir = tmp.path().join("raw");
    fs::create_dir_all(&raw_dir).unwrap();
    let driver = jtc_cache::FileDriver::new(tmp.path().join("cache")).unwrap();
    let names: Vec<String> = (0..KEYS).map(|i| format!("{i:064x}")).collect();
    let stored = [&[0u8; FILE_HEADER_LEN][..], VALUE].concat();
    for (key, name) in keys.iter().zip(&names) {
        raw_write(&raw_dir, name, 0, &stored);
        rt.block_on(driver.put(key, bytes::Bytes::copy_from_slice(VALUE), TTL))
            .unwrap();
    }
    FileSetup {
        rt,
        keys,
        _tmp: tmp,
        raw_dir,
        names,
        driver,
        stored,
    }
}
