//! `SingleFlight`: concurrent callers of one key share one run of the work.
//!
//! The first caller of a key runs the work; callers that arrive while it runs wait for its
//! result instead of running their own. A failure is handed to the caller that ran the work
//! only, and the next caller runs it again. Once the work is done the key is forgotten, so
//! the table holds only keys in flight. It knows nothing of what the work is (a cache fill,
//! with or without a lock across processes): that is the caller's.

use std::{fmt, future::Future, sync::Arc};

use dashmap::DashMap;
use tokio::sync::OnceCell;

/// One flight per key in progress; see the module docs.
pub(crate) struct SingleFlight<V> {
    flights: DashMap<String, Arc<OnceCell<V>>>,
}

impl<V> Default for SingleFlight<V> {
    fn default() -> Self {
        Self {
            flights: DashMap::new(),
        }
    }
}

impl<V: Clone> SingleFlight<V> {
    /// The result of `work` for `key`: run here, or by a concurrent caller of the same key.
    pub(crate) async fn run<E, F, Fut>(&self, key: &str, work: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        let flight = Arc::clone(&self.flights.entry(key.to_owned()).or_default());
        let result = flight.get_or_try_init(work).await.cloned();
        self.flights
            .remove_if(key, |_, cell| Arc::ptr_eq(cell, &flight));
        result
    }

    /// How many keys are in flight.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.flights.len()
    }
}

impl<V> fmt::Debug for SingleFlight<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SingleFlight")
            .field("in_flight", &self.flights.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_of_a_key_share_one_run() {
        let flight = Arc::new(SingleFlight::<u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..32)
            .map(|_| {
                let (flight, runs) = (Arc::clone(&flight), Arc::clone(&runs));
                tokio::spawn(async move {
                    flight
                        .run("k", || async {
                            runs.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            Ok::<_, ()>(7)
                        })
                        .await
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), Ok(7));
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(flight.len(), 0, "a finished key is forgotten");
        // Another key, and the same key later, run again.
        assert_eq!(
            flight.run("other", || async { Ok::<_, ()>(1) }).await,
            Ok(1)
        );
        assert_eq!(flight.run("k", || async { Ok::<_, ()>(8) }).await, Ok(8));
    }

    #[tokio::test]
    async fn a_failure_goes_to_its_caller_and_the_next_caller_runs_again() {
        let flight = SingleFlight::<u32>::default();
        assert_eq!(flight.run("k", || async { Err("down") }).await, Err("down"));
        assert_eq!(flight.len(), 0);
        assert_eq!(flight.run("k", || async { Ok::<_, &str>(3) }).await, Ok(3));
    }
}
