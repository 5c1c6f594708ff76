//! The Redis driver behind Sentinel: the conformance suite through a master that Sentinel
//! names, and a real failover (`SENTINEL FAILOVER`) during which calls fail cleanly and
//! after which the same `Cache` works on the new master. Servers started by the tests.

#![cfg(feature = "redis")]

mod conformance;

use std::{
    sync::OnceLock,
    time::{Duration, Instant},
};

use conformance::Subject;
use jtc_cache::{Cache, RedisConfig, RedisDriver};
use jtc_test_support::{RedisSentinelSetup, unique_prefix};

fn setup() -> &'static RedisSentinelSetup {
    static SETUP: OnceLock<RedisSentinelSetup> = OnceLock::new();
    SETUP.get_or_init(RedisSentinelSetup::start)
}

fn config(setup: &RedisSentinelSetup, prefix: &str) -> RedisConfig {
    RedisConfig::sentinel([setup.sentinel_address()], RedisSentinelSetup::MASTER_NAME)
        .prefix(prefix)
}

async fn subject() -> Subject {
    let config = config(setup(), &unique_prefix("sentinel"));
    Subject {
        cache: Cache::new(RedisDriver::from_config(&config).await.unwrap()),
        clock: None,
        guard: Box::new(()),
    }
}

conformance_tests!(subject);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_fails_calls_cleanly_and_the_same_cache_follows_the_new_master() {
    let setup = RedisSentinelSetup::start();
    let timeout = Duration::from_millis(300);
    let config = config(&setup, "failover:").command_timeout(timeout);
    let driver = RedisDriver::from_config(&config).await.unwrap();
    assert!(
        format!("{driver:?}").contains("sentinel mymaster"),
        "{driver:?}"
    );
    let cache = Cache::new(driver);
    let ttl = Duration::from_secs(600);
    cache.put("before", &1, ttl).await.unwrap();
    assert_eq!(setup.master.cli(&["WAIT", "1", "5000"]), "1", "replicated");

    let (old, new) = (setup.master.port(), setup.replica.port());
    assert_eq!(setup.master_port(), Some(old));
    setup.failover();
    // Write throughout the failover, until Sentinel names the new master and the old one
    // has been demoted: every call ends within the timeout, whether it succeeds or not.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut failures = 0;
    let demoted = || setup.master.cli(&["ROLE"]).starts_with("slave");
    for i in 0.. {
        let started = Instant::now();
        let written = cache.put(&format!("during:{i}"), &i, ttl).await;
        assert!(
            started.elapsed() < timeout + Duration::from_millis(200),
            "a call during the failover took {:?}",
            started.elapsed()
        );
        failures += usize::from(written.is_err());
        if setup.master_port() == Some(new) && demoted() {
            break;
        }
        assert!(Instant::now() < deadline, "the failover never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{failures} calls failed during the failover");

    // Right after the promotion the old master still took writes until Sentinel demoted it
    // (Redis replicates asynchronously: those writes are lost). If the driver still holds
    // the old master, its next write fails once with READONLY, which sends it back to
    // Sentinel; the one after lands on the new master.
    let mut refused = 0;
    while let Err(error) = cache.put("after", &2, ttl).await {
        refused += 1;
        assert!(
            refused <= 1,
            "more than one refusal after the failover: {error}"
        );
    }
    assert_ne!(old, new);
    assert_eq!(
        setup.replica.cli(&["GET", "failover:after"]),
        "2",
        "written on the new master"
    );
    assert_eq!(cache.get::<i32>("before").await.unwrap(), Some(1));
    assert_eq!(cache.increment("after", 1).await.unwrap(), 3);
}
