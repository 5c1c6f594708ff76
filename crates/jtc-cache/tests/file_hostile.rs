//! The file driver in a folder another account can write to: what it plants at an entry's or a
//! lock file's name (a FIFO, a symlink to `/dev/zero`, a dangling symlink, a file of
//! gigabytes) is never followed, never waited on and never read; it is a miss that is removed
//! and logged. docs/security.md's threat table names these tests.

#![cfg(unix)]

use std::{
    fs,
    os::unix::fs::symlink,
    path::Path,
    process::Command,
    sync::mpsc,
    time::{Duration, SystemTime},
};

use jtc_cache::{Cache, CacheDriver, FileDriver, ManualClock};

/// Runs `work` on a runtime of its own (two workers, like a small server) in another thread
/// and fails if it has not finished within `limit`: a driver that blocks its workers would
/// hang the test instead of failing it otherwise.
fn within<F>(limit: Duration, what: &str, work: impl FnOnce() -> F + Send + 'static)
where
    F: Future<Output = ()> + 'static,
{
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(work());
        let _ = done.send(());
    });
    match finished.recv_timeout(limit) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still running after {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked (see above)"),
    }
}

fn mkfifo(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

#[test]
fn a_fifo_at_an_entry_s_name_is_a_miss_and_hangs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let driver = FileDriver::new(&root).unwrap();
    // More FIFOs than the runtime has workers, each read at once.
    let keys: Vec<String> = (0..8).map(|i| format!("user:{i}")).collect();
    for key in &keys {
        mkfifo(&driver.entry_path(key));
    }
    let cache = Cache::new(driver.clone());
    let reads = cache.clone();
    let read_keys = keys.clone();
    within(
        Duration::from_secs(10),
        "gets on FIFOs",
        move || async move {
            let gets = read_keys.iter().map(|key| {
                let cache = reads.clone();
                let key = key.clone();
                tokio::spawn(async move { cache.get::<String>(&key).await })
            });
            for get in futures::future::join_all(gets).await {
                assert_eq!(get.unwrap().unwrap(), None);
            }
        },
    );
    for key in &keys {
        assert!(!exists(&driver.entry_path(key)), "the FIFO was removed");
    }

    // The cache works on those keys again.
    let writes = cache;
    within(Duration::from_secs(10), "put after", move || async move {
        writes
            .put("user:1", &"ana", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            writes.get::<String>("user:1").await.unwrap().as_deref(),
            Some("ana")
        );
    });

    // prune and flush walk past FIFOs too (and remove them: they sit at our names).
    for flush in [false, true] {
        mkfifo(&driver.entry_path("user:2"));
        let walker = driver.clone();
        within(
            Duration::from_secs(10),
            "prune / flush",
            move || async move {
                if flush {
                    walker.flush().await.unwrap();
                } else {
                    walker.prune().await.unwrap();
                }
            },
        );
        assert!(!exists(&driver.entry_path("user:2")), "flush: {flush}");
    }
}

#[test]
fn a_symlink_at_an_entry_s_name_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let driver = FileDriver::new(dir.path().join("cache")).unwrap();
    let zero = driver.entry_path("report");
    fs::create_dir_all(zero.parent().unwrap()).unwrap();
    symlink("/dev/zero", &zero).unwrap();

    // A valid entry of another cache, planted through a link: not read either.
    let elsewhere = FileDriver::new(dir.path().join("elsewhere")).unwrap();
    fs::create_dir_all(driver.entry_path("role:admin").parent().unwrap()).unwrap();
    let (cache, other) = (Cache::new(driver.clone()), Cache::new(elsewhere.clone()));
    within(Duration::from_secs(10), "reads", move || async move {
        other
            .put("role:admin", &"yes", Duration::from_secs(60))
            .await
            .unwrap();
        let target = elsewhere.entry_path("role:admin");
        symlink(&target, driver.entry_path("role:admin")).unwrap();
        assert_eq!(cache.get::<Vec<u8>>("report").await.unwrap(), None);
        assert_eq!(cache.get::<String>("role:admin").await.unwrap(), None);
        assert!(
            !exists(&driver.entry_path("report")),
            "the link was removed"
        );
        assert!(!exists(&driver.entry_path("role:admin")));
        assert!(target.exists(), "what it pointed at is left alone");
        // A write puts a real entry where the link was.
        cache
            .put("report", &"done", Duration::from_secs(60))
            .await
            .unwrap();
        let meta = fs::symlink_metadata(driver.entry_path("report")).unwrap();
        assert!(meta.file_type().is_file());
    });
}

#[test]
fn a_file_larger_than_any_entry_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let driver = FileDriver::new(dir.path().join("cache")).unwrap();
    let path = driver.entry_path("big");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    // 5 GiB, sparse: over the format's maximum (a 32-bit length). Read whole, it would take
    // 5 GiB of memory.
    let file = fs::File::create(&path).unwrap();
    file.set_len(5 << 30).unwrap();
    drop(file);
    let cache = Cache::new(driver);
    within(Duration::from_secs(10), "read", move || async move {
        assert_eq!(cache.get::<String>("big").await.unwrap(), None);
    });
    assert!(!exists(&path), "removed");
}

#[test]
fn dangling_lock_links_never_create_files_outside_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let outside = dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    let driver = FileDriver::new(&root).unwrap();
    // Every stripe's lock file is a dangling link to a file outside the cache folder, and one
    // is a FIFO.
    let locks = root.join(".locks");
    for stripe in 0..128 {
        let name = format!("{stripe:03}");
        let _ = fs::remove_file(locks.join(&name));
        if stripe == 0 {
            mkfifo(&locks.join(&name));
        } else {
            symlink(outside.join(&name), locks.join(&name)).unwrap();
        }
    }
    let cache = Cache::new(driver);
    within(Duration::from_secs(20), "writes", move || async move {
        for i in 0..400 {
            let key = format!("k{i}");
            cache.put(&key, &i, Duration::from_secs(60)).await.unwrap();
            assert_eq!(cache.increment(&format!("n{i}"), 2).await.unwrap(), 2);
        }
    });
    let planted: Vec<_> = fs::read_dir(&outside).unwrap().collect();
    assert!(planted.is_empty(), "files made outside: {planted:?}");
    let mut regular = 0;
    for item in fs::read_dir(&locks).unwrap() {
        let kind = item.unwrap().file_type().unwrap();
        assert!(!kind.is_symlink() && !kind.is_fifo_like(), "{kind:?}");
        regular += usize::from(kind.is_file());
    }
    assert!(
        regular > 100,
        "the stripes used have real lock files: {regular}"
    );
}

trait FifoLike {
    fn is_fifo_like(&self) -> bool;
}

impl FifoLike for fs::FileType {
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

/// The other half of a hostile folder: expired entries of a long-running process (rate-limit
/// counters of many clients) are removed by the driver's own sweep, not left to fill the disk.
#[test]
fn the_background_sweep_removes_expired_counters_and_keeps_live_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let clock = ManualClock::new(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    let moved = clock.clone();
    within(Duration::from_secs(60), "sweep", move || async move {
        let driver = FileDriver::builder(&root)
            .clock(moved.clone())
            .sweep_interval(Duration::from_millis(200))
            .build()
            .unwrap();
        let cache = Cache::new(driver.clone());
        for i in 0..5_000 {
            cache
                .hit(&format!("throttle:ip:{i}"), Duration::from_secs(60))
                .await
                .unwrap();
        }
        for i in 0..10 {
            cache
                .put(&format!("live:{i}"), &i, Duration::from_secs(3600))
                .await
                .unwrap();
        }
        moved.advance(Duration::from_secs(61));
        let count = |root: &Path| walk_files(root);
        let started = std::time::Instant::now();
        while count(driver.path()) > 10 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} files left",
                count(driver.path())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for i in 0..10 {
            let live: Option<i32> = cache.get(&format!("live:{i}")).await.unwrap();
            assert_eq!(live, Some(i));
        }
    });
    drop(clock);
}

/// Entry files (lock files left out) below `root`.
fn walk_files(root: &Path) -> usize {
    let mut files = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(items) = fs::read_dir(&dir) else {
            continue;
        };
        for item in items.flatten() {
            if item.file_name() == ".locks" {
                continue;
            }
            match item.file_type() {
                Ok(kind) if kind.is_dir() => stack.push(item.path()),
                Ok(_) => files += 1,
                Err(_) => {}
            }
        }
    }
    files
}

/// The sweep removes the fan-out folders it finds empty while writers make them again: a write
/// whose folder vanishes between being made and holding its file tries again instead of
/// failing (CI once saw `hit` fail with "No such file or directory" here).
#[test]
fn writes_racing_the_sweep_s_folder_removal_never_fail() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    within(Duration::from_secs(60), "race", move || async move {
        let driver = FileDriver::new(&root).unwrap();
        let sweeping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sweeper = {
            let (driver, sweeping) = (driver.clone(), sweeping.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let mut passes = 0u64;
                while sweeping.load(std::sync::atomic::Ordering::Relaxed) {
                    runtime.block_on(driver.prune()).unwrap();
                    passes += 1;
                }
                passes
            })
        };
        // Few keys, each written and forgotten over and over: its folder is empty most of the
        // time, which is when the sweep removes it.
        let cache = Cache::new(driver.clone());
        for _ in 0..150 {
            for i in 0..16 {
                let key = format!("client:{i}");
                cache.hit(&key, Duration::from_secs(60)).await.unwrap();
                cache.put(&key, &i, Duration::from_secs(60)).await.unwrap();
                cache.forget(&key).await.unwrap();
            }
        }
        sweeping.store(false, std::sync::atomic::Ordering::Relaxed);
        let passes = sweeper.join().unwrap();
        assert!(passes > 10, "the sweep ran alongside: {passes} passes");
    });
}
