//! The conformance suite on the in-process driver.

mod conformance;

use conformance::Subject;
use jtc_cache::{ArrayDriver, Cache, ManualClock};

async fn subject() -> Subject {
    let clock = ManualClock::starting_now();
    let driver = ArrayDriver::builder().clock(clock.clone()).build();
    Subject {
        cache: Cache::new(driver),
        clock: Some(clock),
        guard: Box::new(()),
    }
}

conformance_tests!(subject);

/// The same suite on a bounded driver with room to spare: bounding changes nothing else.
mod bounded {
    use super::*;

    async fn subject() -> Subject {
        let clock = ManualClock::starting_now();
        let driver = ArrayDriver::builder()
            .clock(clock.clone())
            .max_entries(100_000)
            .build();
        Subject {
            cache: Cache::new(driver),
            clock: Some(clock),
            guard: Box::new(()),
        }
    }

    conformance_tests!(subject);

    /// A million distinct keys through room for ten thousand: never more held, and the keys
    /// read all along are still there at the end.
    #[tokio::test]
    async fn a_million_keys_through_ten_thousand_entries() {
        let driver = ArrayDriver::builder().max_entries(10_000).build();
        let cache = Cache::new(driver.clone());
        let ttl = std::time::Duration::from_secs(600);
        for i in 0..100 {
            cache.put(&format!("hot:{i}"), &i, ttl).await.unwrap();
            cache.get::<u64>(&format!("hot:{i}")).await.unwrap();
        }
        for i in 0..1_000_000u64 {
            // Each hot key is read every thousand writes; eviction comes round a shard about
            // every ten thousand.
            if i % 10 == 0 {
                let hot = format!("hot:{}", (i / 10) % 100);
                assert!(
                    cache.get::<u64>(&hot).await.unwrap().is_some(),
                    "{hot} at {i}"
                );
            }
            cache.put(&format!("cold:{i}"), &i, ttl).await.unwrap();
            if i % 100_000 == 0 {
                assert!(driver.len() <= 10_000, "{} entries", driver.len());
            }
        }
        assert!(
            driver.len() <= 10_000 && driver.len() >= 9_000,
            "{}",
            driver.len()
        );
        for i in 0..100u64 {
            assert_eq!(
                cache.get::<u64>(&format!("hot:{i}")).await.unwrap(),
                Some(i)
            );
        }
    }
}
