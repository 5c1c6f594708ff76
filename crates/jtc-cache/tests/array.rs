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
