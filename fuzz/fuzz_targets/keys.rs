//! Any key: its file stays inside the cache folder, distinct keys get distinct files, and a
//! value put under it reads back.

#![no_main]

use std::{sync::OnceLock, time::Duration};

use jtc_cache::{Cache, FileDriver};
use libfuzzer_sys::fuzz_target;

struct World {
    runtime: tokio::runtime::Runtime,
    driver: FileDriver,
    cache: Cache,
    dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let driver = FileDriver::new(dir.path()).unwrap();
        World {
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
            cache: Cache::new(driver.clone()),
            driver,
            dir,
        }
    })
}

fuzz_target!(|keys: (String, String)| {
    let world = world();
    let (a, b) = keys;
    let root = world.dir.path();
    let path = world.driver.entry_path(&a);
    assert!(path.starts_with(root), "{path:?} escapes {root:?}");
    assert!(!path.components().any(|c| c.as_os_str() == ".."));
    if a != b {
        assert_ne!(path, world.driver.entry_path(&b), "{a:?} and {b:?} collide");
    }
    world.runtime.block_on(async {
        let ttl = Duration::from_secs(60);
        world.cache.put(&a, &b, ttl).await.unwrap();
        assert_eq!(
            world.cache.get::<String>(&a).await.unwrap().as_deref(),
            Some(b.as_str())
        );
        assert!(world.cache.forget(&a).await.unwrap());
    });
});
