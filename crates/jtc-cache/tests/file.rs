//! The conformance suite on the file driver, plus what only a folder of files can get wrong:
//! damaged files, killed writers, hostile paths, foreign files, permissions, other processes.

mod conformance;

use std::{
    fs,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use conformance::Subject;
use jtc_cache::{Cache, CacheDriver, FileDriver, ManualClock};

const MINUTE: Duration = Duration::from_secs(60);

/// A file driver in `dir/cache` on a clock the test moves.
fn driver_on_manual_clock(dir: &Path) -> (FileDriver, ManualClock) {
    let clock = ManualClock::starting_now();
    let driver = FileDriver::builder(dir.join("cache"))
        .clock(clock.clone())
        .build()
        .unwrap();
    (driver, clock)
}

async fn subject() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let (driver, clock) = driver_on_manual_clock(dir.path());
    Subject {
        cache: Cache::new(driver),
        clock: Some(clock),
        guard: Box::new(dir),
    }
}

conformance_tests!(subject);

fn driver_in(dir: &Path) -> FileDriver {
    FileDriver::new(dir.join("cache")).unwrap()
}

/// Every regular file below `root`, lock files left out.
fn entry_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir).unwrap() {
            let item = item.unwrap();
            if item.file_name() == ".locks" {
                continue;
            }
            if item.file_type().unwrap().is_dir() {
                stack.push(item.path());
            } else {
                files.push(item.path());
            }
        }
    }
    files
}

#[tokio::test]
async fn corrupted_and_truncated_files_are_misses_and_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let driver = driver_in(dir.path());
    let cache = Cache::new(driver.clone());
    type Damage = fn(&mut Vec<u8>);
    let damages: [(&str, Damage); 4] = [
        ("flipped byte", |b| *b.last_mut().unwrap() ^= 0x20),
        ("truncated value", |b| b.truncate(b.len() - 3)),
        ("truncated header", |b| b.truncate(7)),
        ("empty file", Vec::clear),
    ];
    for (what, damage) in damages {
        cache.put("k", &conformance::user(1), MINUTE).await.unwrap();
        let path = driver.entry_path("k");
        let mut bytes = fs::read(&path).unwrap();
        damage(&mut bytes);
        fs::write(&path, bytes).unwrap();
        assert_eq!(
            cache.get::<conformance::User>("k").await.unwrap(),
            None,
            "{what}"
        );
        assert!(!path.exists(), "{what}: the damaged file is removed");
        cache.put("k", &conformance::user(2), MINUTE).await.unwrap();
        assert_eq!(
            cache.get::<conformance::User>("k").await.unwrap(),
            Some(conformance::user(2)),
            "{what}: the key works again"
        );
    }
}

#[tokio::test]
async fn a_damaged_counter_restarts_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let driver = driver_in(dir.path());
    let cache = Cache::new(driver.clone());
    cache.increment("n", 5).await.unwrap();
    fs::write(driver.entry_path("n"), b"jtcF garbage").unwrap();
    assert_eq!(cache.increment("n", 1).await.unwrap(), 1);
}

#[tokio::test]
async fn hostile_keys_stay_inside_the_cache_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let cache = Cache::new(FileDriver::new(&root).unwrap());
    for key in conformance::hostile_keys() {
        cache.put(&key, &1, MINUTE).await.unwrap();
    }
    let outside: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        outside,
        vec![root.clone()],
        "nothing is written beside the folder"
    );
    let files = entry_files(&root);
    assert_eq!(files.len(), conformance::hostile_keys().len());
    for file in files {
        let relative = file.strip_prefix(&root).unwrap();
        let parts: Vec<_> = relative
            .iter()
            .map(|p| p.to_str().unwrap().to_owned())
            .collect();
        assert_eq!(parts.len(), 3, "{relative:?}");
        assert_eq!(parts[2].len(), 64, "{relative:?}");
        assert!(parts[2].starts_with(&format!("{}{}", parts[0], parts[1])));
    }
}

#[tokio::test]
async fn flush_and_prune_leave_foreign_files_alone() {
    let dir = tempfile::tempdir().unwrap();
    let driver = driver_in(dir.path());
    let root = driver.path().to_path_buf();
    let cache = Cache::new(driver.clone());
    for i in 0..50 {
        cache.put(&format!("k{i}"), &i, MINUTE).await.unwrap();
    }
    let entry = driver.entry_path("k0");
    let leaf = entry.parent().unwrap();
    let fake_entry = leaf.join("f".repeat(64));
    let foreign = [
        root.join("README.txt"),
        root.join(".gitignore"),
        leaf.join("notes.txt"),
        fake_entry.clone(),
        root.join("zz").join("data.bin"),
    ];
    for path in &foreign {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"not the cache's").unwrap();
    }
    cache.prune().await.unwrap();
    cache.flush().await.unwrap();
    for path in &foreign {
        assert_eq!(
            fs::read(path).unwrap(),
            b"not the cache's",
            "{path:?} survives"
        );
    }
    assert_eq!(
        entry_files(&root).len(),
        foreign.len(),
        "only foreign files are left"
    );
}

#[tokio::test]
async fn prune_removes_expired_entries_and_stale_temp_files_only() {
    let dir = tempfile::tempdir().unwrap();
    let (driver, clock) = driver_on_manual_clock(dir.path());
    let cache = Cache::new(driver.clone());
    for i in 0..30 {
        let ttl = if i % 3 == 0 {
            MINUTE
        } else {
            Duration::from_secs(1)
        };
        cache.put(&format!("k{i}"), &i, ttl).await.unwrap();
    }
    let leaf = driver.entry_path("k0").parent().unwrap().to_path_buf();
    let hash = driver
        .entry_path("k0")
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let stale = leaf.join(format!(".{hash}.999.1.tmp"));
    let fresh = leaf.join(format!(".{hash}.999.2.tmp"));
    fs::write(&stale, b"half written").unwrap();
    fs::write(&fresh, b"being written").unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();

    clock.advance(Duration::from_secs(2));
    assert_eq!(cache.prune().await.unwrap(), 20);
    assert!(
        !stale.exists(),
        "a temp file left by a killed writer is swept"
    );
    assert!(
        fresh.exists(),
        "a temp file another writer may be using is kept"
    );
    for i in 0..30 {
        let expected = (i % 3 == 0).then_some(i);
        assert_eq!(cache.get::<i32>(&format!("k{i}")).await.unwrap(), expected);
    }
}

#[cfg(unix)]
#[tokio::test]
async fn files_are_private_to_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let driver = driver_in(dir.path());
    Cache::new(driver.clone())
        .put("secret", &"token", MINUTE)
        .await
        .unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let entry = driver.entry_path("secret");
    assert_eq!(mode(&entry), 0o600);
    assert_eq!(mode(entry.parent().unwrap()), 0o700);
    assert_eq!(mode(driver.path()), 0o700);
}

#[tokio::test]
async fn an_unwritable_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    fs::write(&file, b"").unwrap();
    let err = FileDriver::new(file.join("cache")).unwrap_err();
    assert!(err.to_string().contains("a-file"), "{err}");
}

/// Environment variables that turn this test binary into a worker process.
const WORKER_DIR: &str = "JTC_TEST_WORKER_DIR";
const WORKER_COUNT: &str = "JTC_TEST_WORKER_COUNT";
const WORKER_MODE: &str = "JTC_TEST_WORKER_MODE";

/// Run as a test, this checks increments from threads of one process. Run by
/// `increments_are_exact_across_processes` with the worker variables set, it is one of the
/// competing processes: it waits for the start signal, then increments `M` times.
#[test]
fn worker_increments() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let Some(dir) = std::env::var_os(WORKER_DIR) else {
        runtime.block_on(increments_from_threads_of_one_process());
        return;
    };
    let dir = PathBuf::from(dir);
    let count: usize = std::env::var(WORKER_COUNT).unwrap().parse().unwrap();
    let mode = std::env::var(WORKER_MODE).unwrap_or_default();
    let cache = Cache::new(driver_in(&dir));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !dir.join("go").exists() {
        assert!(Instant::now() < deadline, "no start signal");
        std::thread::sleep(Duration::from_millis(1));
    }
    runtime.block_on(async {
        for _ in 0..count {
            match mode.as_str() {
                "hit" => drop(cache.hit("hits", MINUTE).await.unwrap()),
                "increment" => drop(cache.increment("n", 1).await.unwrap()),
                "lock" => locked_read_modify_write(&cache).await,
                "remember" => remember_logging_loads(&cache, &dir).await,
                other => panic!("unknown worker mode {other:?}"),
            }
        }
    });
}

/// Four tasks of one process increment one key 100 times each: exactly 400.
async fn increments_from_threads_of_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(driver_in(dir.path()));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                for _ in 0..100 {
                    cache.increment("n", 1).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(cache.get::<i64>("n").await.unwrap(), Some(400));
}

/// A `remember` whose loader appends this process's id to `<dir>/loads` and takes 300 ms.
async fn remember_logging_loads(cache: &Cache, dir: &Path) {
    let loads = dir.join("loads");
    let value: i64 = cache
        .remember("report", MINUTE, || async move {
            let mut log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(loads)
                .unwrap();
            writeln!(log, "{}", std::process::id()).unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            42
        })
        .await
        .unwrap();
    assert_eq!(value, 42);
}

/// Reads, waits, writes back one more: loses updates unless the lock keeps every other
/// process out while it runs.
async fn locked_read_modify_write(cache: &Cache) {
    let lock = cache.lock("critical", MINUTE);
    let guard = lock.acquire_timeout(Duration::from_secs(60)).await.unwrap();
    let total = cache.get::<i64>("total").await.unwrap().unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(1)).await;
    cache.put("total", &(total + 1), MINUTE).await.unwrap();
    assert!(guard.release().await.unwrap());
}

fn run_workers(dir: &Path, processes: usize, each: usize, mode: &str) {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "worker_increments",
                    "--exact",
                    "--test-threads=1",
                    "--quiet",
                ])
                .env(WORKER_DIR, dir)
                .env(WORKER_COUNT, each.to_string())
                .env(WORKER_MODE, mode)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    fs::write(dir.join("go"), b"").unwrap();
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a worker process failed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_exclude_other_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (processes, each) = (6, 40);
    run_workers(dir.path(), processes, each, "lock");
    let cache = Cache::new(driver_in(dir.path()));
    assert_eq!(
        cache.get::<i64>("total").await.unwrap(),
        Some((processes * each) as i64),
        "a lost update means two processes held the lock at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remember_loads_once_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    run_workers(dir.path(), 6, 1, "remember");
    let loads = fs::read_to_string(dir.path().join("loads")).unwrap();
    assert_eq!(loads.lines().count(), 1, "loaded by: {loads}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn increments_are_exact_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    let (processes, each) = (8, 500);
    run_workers(dir.path(), processes, each, "increment");
    let cache = Cache::new(driver_in(dir.path()));
    assert_eq!(
        cache.get::<i64>("n").await.unwrap(),
        Some((processes * each) as i64)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_hits_are_exact_across_processes() {
    let dir = tempfile::tempdir().unwrap();
    run_workers(dir.path(), 4, 250, "hit");
    let driver = driver_in(dir.path());
    let hit = driver.hit("hits", MINUTE).await.unwrap();
    assert_eq!(hit.count, 1001);
    assert!(hit.expires_in <= MINUTE);
}

/// A writer process killed at random points never leaves a partial entry: the key holds
/// either a complete earlier value or nothing.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_writer_leaves_no_partial_entry() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut complete = 0;
    for round in 0..5u64 {
        let mut child = Command::new(&exe)
            .args([
                "worker_writes_big_values",
                "--exact",
                "--test-threads=1",
                "--quiet",
            ])
            .env(WORKER_DIR, dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(60 + round * 37));
        child.kill().unwrap(); // SIGKILL: no destructor, no cleanup
        child.wait().unwrap();
        let cache = Cache::new(driver_in(dir.path()));
        if let Some(value) = cache.get::<Vec<u64>>("big").await.unwrap() {
            let first = value[0];
            assert_eq!(value.len(), 200_000, "round {round}");
            assert!(
                value.iter().all(|v| *v == first),
                "round {round}: a mixed entry"
            );
            complete += 1;
        }
    }
    assert!(
        complete > 0,
        "the writer never finished a value: the test proved nothing"
    );
}

/// The writer process of `a_killed_writer_leaves_no_partial_entry`: rewrites a 1.6 MB value
/// until killed. Run as a plain test, it writes a few and checks them.
#[test]
fn worker_writes_big_values() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (dir, rounds) = match std::env::var_os(WORKER_DIR) {
        Some(dir) => (PathBuf::from(dir), u64::MAX),
        None => (tempfile::tempdir().unwrap().keep(), 3),
    };
    let cache = Cache::new(driver_in(&dir));
    runtime.block_on(async {
        for i in 0..rounds {
            cache.put("big", &vec![i; 200_000], MINUTE).await.unwrap();
        }
        if rounds != u64::MAX {
            assert_eq!(
                cache.get::<Vec<u64>>("big").await.unwrap(),
                Some(vec![2; 200_000])
            );
            fs::remove_dir_all(&dir).unwrap();
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_512_mb_value_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(driver_in(dir.path()));
    cache.put("big", &"small", MINUTE).await.unwrap();
    // Compresses to almost nothing: the limit still holds, since readers would hold it all.
    let huge = "x".repeat(512 * 1024 * 1024);
    let err = cache.put("big", &huge, MINUTE).await.unwrap_err();
    drop(huge);
    assert!(
        matches!(err.kind(), jtc_cache::ErrorKind::ValueTooLarge { size, .. } if *size > 512 * 1024 * 1024),
        "{err:?}"
    );
    assert_eq!(
        cache.get::<String>("big").await.unwrap().as_deref(),
        Some("small")
    );
}
