//! Same-key coalescing: concurrent hits on one key in one process share a round trip.
//!
//! While a hit on a key is on its way to the store, later hits on the same key queue up
//! behind it. When it comes back, the queue is handed to its first member, which sends the
//! whole queue as one `hit_by(n)` — one atomic step in the store — and shares out the counts
//! `count − n + 1 ..= count` in arrival order. Every request still gets its own exact count, so
//! admissions stay exact across instances; a flood of one client costs the store one command
//! per round trip instead of one per request.
//!
//! If the request leading a batch is dropped (its client went away) before the counts come
//! back, the batch is handed to its next member and sent again: the store may then count the
//! lost round trip's hits twice, which only ever rejects earlier, never admits more.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use dashmap::{DashMap, mapref::entry::Entry};
use jtc_cache::{Cache, ErrorKind, Hit};
use tokio::sync::oneshot;

/// A hit's outcome, shared out to a batch (the error is shared too).
pub(crate) type Counted = Result<Hit, Arc<jtc_cache::Error>>;

/// What a queued hit is told when its turn comes.
enum Turn {
    /// The count it got.
    Counted(Counted),
    /// Lead the next batch: these queued behind it.
    Lead(Vec<oneshot::Sender<Turn>>),
}

/// The hits queued per key while one of the key's batches is in flight. A key is present
/// exactly while a batch of it is in flight.
#[derive(Default)]
pub(crate) struct Coalescer {
    queues: DashMap<String, Vec<oneshot::Sender<Turn>>, ahash::RandomState>,
    /// Cleared when the store cannot count a batch at once (a driver without `hit_by`).
    unbatchable: AtomicBool,
}

impl Coalescer {
    /// Counts one hit on `key`, in a batch with the hits that arrive while another is in
    /// flight.
    pub(crate) async fn hit(&self, cache: &Cache, key: &str, window: Duration) -> Counted {
        let queued = match self.queues.get_mut(key) {
            Some(mut queue) => Some(enqueue(&mut queue)),
            None => match self.queues.entry(key.to_owned()) {
                Entry::Occupied(mut queue) => Some(enqueue(queue.get_mut())),
                Entry::Vacant(slot) => {
                    slot.insert(Vec::new());
                    None
                }
            },
        };
        let batch = match queued {
            None => Vec::new(),
            Some(turn) => match turn.await {
                Ok(Turn::Counted(counted)) => return counted,
                Ok(Turn::Lead(batch)) => batch,
                // Every sender is answered or handed on; a lost one is counted on its own.
                Err(_) => return cache.hit(key, window).await.map_err(Arc::new),
            },
        };
        self.lead(cache, key, window, batch).await
    }

    /// Sends this hit and `batch` as one, shares out the counts, and hands the queue on.
    async fn lead(
        &self,
        cache: &Cache,
        key: &str,
        window: Duration,
        batch: Vec<oneshot::Sender<Turn>>,
    ) -> Counted {
        let mut flight = Flight {
            coalescer: self,
            key,
            batch,
            landed: false,
        };
        let n = 1 + flight.batch.len() as u64;
        let mut counted = if n > 1 && !self.unbatchable.load(Ordering::Relaxed) {
            cache.hit_by(key, window, n).await
        } else {
            cache.hit(key, window).await
        };
        if let Err(error) = &counted
            && matches!(error.kind(), ErrorKind::Unsupported { .. })
        {
            self.unbatchable.store(true, Ordering::Relaxed);
            counted = cache.hit(key, window).await;
            for waiting in std::mem::take(&mut flight.batch) {
                let theirs = cache.hit(key, window).await.map_err(Arc::new);
                let _ = waiting.send(Turn::Counted(theirs));
            }
        }
        let counted = counted.map_err(Arc::new);
        let batch = std::mem::take(&mut flight.batch);
        let n = 1 + batch.len() as i64;
        for (i, waiting) in (2..).zip(batch) {
            let theirs = counted.clone().map(|hit| Hit {
                count: hit.count - n + i,
                ..hit
            });
            // A member whose request went away took its count with it.
            let _ = waiting.send(Turn::Counted(theirs));
        }
        flight.landed = true;
        counted.map(|hit| Hit {
            count: hit.count - n + 1,
            ..hit
        })
    }

    /// After a batch landed: the hits queued meanwhile go next, led by the first of them whose
    /// request is still there; with none, the key is no longer in flight.
    fn hand_on(&self, key: &str) {
        loop {
            let queued = match self.queues.get_mut(key) {
                Some(mut queue) => std::mem::take(&mut *queue),
                None => return,
            };
            if promote(queued) {
                return;
            }
            if self
                .queues
                .remove_if(key, |_, queue| queue.is_empty())
                .is_some()
            {
                return;
            }
            // More arrived meanwhile: hand them on.
        }
    }
}

fn enqueue(queue: &mut Vec<oneshot::Sender<Turn>>) -> oneshot::Receiver<Turn> {
    let (sender, receiver) = oneshot::channel();
    queue.push(sender);
    receiver
}

/// Makes the first member still waiting the leader of the others; whether one took it.
fn promote(mut batch: Vec<oneshot::Sender<Turn>>) -> bool {
    while !batch.is_empty() {
        let first = batch.remove(0);
        match first.send(Turn::Lead(batch)) {
            Ok(()) => return true,
            Err(Turn::Lead(back)) => batch = back,
            Err(Turn::Counted(_)) => return false,
        }
    }
    false
}

/// A batch in flight; hands the key on when it lands or when its leader is dropped.
struct Flight<'a> {
    coalescer: &'a Coalescer,
    key: &'a str,
    /// The members not yet told their count.
    batch: Vec<oneshot::Sender<Turn>>,
    landed: bool,
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if !self.landed && promote(std::mem::take(&mut self.batch)) {
            // The batch is sent again by its next member, who hands the key on after.
            return;
        }
        self.coalescer.hand_on(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jtc_cache::ArrayDriver;
    use std::future::Future;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_hits_get_every_count_once() {
        let cache = Cache::new(ArrayDriver::new());
        let coalescer = Arc::new(Coalescer::default());
        let tasks: Vec<_> = (0..500)
            .map(|_| {
                let (cache, coalescer) = (cache.clone(), Arc::clone(&coalescer));
                tokio::spawn(async move {
                    let window = Duration::from_secs(60);
                    coalescer.hit(&cache, "k", window).await.unwrap().count
                })
            })
            .collect();
        let mut counts = Vec::new();
        for task in tasks {
            counts.push(task.await.unwrap());
        }
        counts.sort_unstable();
        assert_eq!(counts, (1..=500).collect::<Vec<_>>());
        assert!(coalescer.queues.is_empty(), "no key left in flight");
    }

    #[tokio::test]
    async fn a_dropped_leader_hands_its_batch_on() {
        let cache = Cache::new(ArrayDriver::new());
        let coalescer = Coalescer::default();
        let window = Duration::from_secs(60);
        // A key in flight whose leader is gone before its batch landed.
        coalescer.queues.insert("k".to_owned(), Vec::new());
        let (first, second) = (
            coalescer.hit(&cache, "k", window),
            coalescer.hit(&cache, "k", window),
        );
        let (mut first, mut second) = (Box::pin(first), Box::pin(second));
        // Both queue behind the phantom flight.
        assert!(futures_poll(&mut first).is_none());
        assert!(futures_poll(&mut second).is_none());
        let flight = Flight {
            coalescer: &coalescer,
            key: "k",
            batch: coalescer
                .queues
                .get_mut("k")
                .map(|mut q| std::mem::take(&mut *q))
                .unwrap(),
            landed: false,
        };
        drop(flight);
        let (a, b) = tokio::join!(first, second);
        let mut counts = [a.unwrap().count, b.unwrap().count];
        counts.sort_unstable();
        assert_eq!(counts, [1, 2]);
        assert!(coalescer.queues.is_empty());
    }

    /// Polls once without a runtime waker of interest.
    fn futures_poll<F: Future + Unpin>(future: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match std::pin::Pin::new(future).poll(&mut cx) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }
}
