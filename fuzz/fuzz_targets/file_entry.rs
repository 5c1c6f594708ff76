//! Arbitrary bytes as a file-driver entry: reading it is a value or a miss, never a panic, and
//! a file that is not a valid entry is removed.

#![no_main]

use std::sync::OnceLock;

use jtc_cache::{Cache, CacheDriver, FileDriver};
use libfuzzer_sys::fuzz_target;

struct World {
    runtime: tokio::runtime::Runtime,
    driver: FileDriver,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
            driver: FileDriver::new(dir.path()).unwrap(),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let world = world();
    let path = world.driver.entry_path("entry");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, data).unwrap();
    world.runtime.block_on(async {
        let found = world.driver.get("entry").await.unwrap();
        if found.is_none() {
            assert!(!path.exists(), "an unreadable entry must be removed");
        }
        // The typed layer on top: a value or a miss.
        let cache = Cache::from_driver(std::sync::Arc::new(world.driver.clone()));
        let _ = cache.get::<serde_json::Value>("entry").await.unwrap();
        let _ = world.driver.prune().await.unwrap();
    });
});
