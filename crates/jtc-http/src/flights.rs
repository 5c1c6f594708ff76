//! In-process single flight for the response cache: one miss of a key runs the handler, the
//! others of this process wait for it.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use crate::layer::FILL_WAIT;

/// In-process single flight: the first miss of a key holds its flight while the handler runs;
/// later misses of the key wait for it (at most [`FILL_WAIT`]) and then read the cache.
#[derive(Default)]
pub(crate) struct Flights {
    held: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A flight held; dropping it lets the waiters go and forgets the key when none is left.
pub(crate) struct Flight<'a> {
    flights: &'a Flights,
    key: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut held = self
            .flights
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if held
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            held.remove(&self.key);
        }
    }
}

impl Flights {
    /// Takes `key`'s flight, waiting for one in progress; says whether it waited.
    pub(crate) async fn enter(&self, key: &str) -> (Flight<'_>, bool) {
        let mutex = {
            let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(held.entry(key.to_owned()).or_default())
        };
        let (guard, waited) = match Arc::clone(&mutex).try_lock_owned() {
            Ok(guard) => (Some(guard), false),
            Err(_) => (
                tokio::time::timeout(FILL_WAIT, Arc::clone(&mutex).lock_owned())
                    .await
                    .ok(),
                true,
            ),
        };
        drop(mutex);
        let flight = Flight {
            flights: self,
            key: key.to_owned(),
            guard,
        };
        (flight, waited)
    }
}
