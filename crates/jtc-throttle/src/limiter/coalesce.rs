//! Same-key coalescing: concurrent hits on one key in one process share a round trip.
//!
//! While a hit on a key is on its way to the store, later hits on the same key queue up
//! behind it. When it comes back, the queue is handed to its first member, which sends the
//! whole queue as one batch — one atomic step in the store: `hit_by(n)` on a counter,
//! `rate_by(n)` on a record of several limits — and shares out the results in arrival order
//! (a counter's counts `count − n + 1 ..= count`, a record's verdicts one request after the
//! other). Every request still gets its own exact result, so admissions stay exact across
//! instances; a flood of one client costs the store one command per round trip instead of
//! one per request.
//!
//! If the request leading a batch is dropped (its client went away) before the results come
//! back, the batch is handed to its next member and sent again: the store may then count the
//! lost round trip's hits twice, which only ever rejects earlier, never admits more. A member
//! told to lead whose request is dropped before it runs passes the lead on the same way (the
//! message telling it to lead does, when dropped unread): a key is never left in flight with
//! no one to land it, which would leave every later request of the key waiting forever.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use dashmap::{DashMap, mapref::entry::Entry};
use jtc_cache::{Cache, ErrorKind, Hit, RateRule, RateVerdict};
use tokio::sync::oneshot;

/// A hit's outcome, shared out to a batch (the error is shared too).
pub(crate) type Counted<T> = Result<T, Arc<jtc_cache::Error>>;

/// What one request counts in the store, alone or in a batch of `n` (one atomic step).
pub(crate) trait Batch: Sync {
    type Out: Clone + Send;
    /// The store key counted (batches are per key).
    fn key(&self) -> &str;
    /// Counts one request.
    fn one(&self) -> impl Future<Output = jtc_cache::Result<Self::Out>> + Send;
    /// Counts `n` requests in one step: their results in order (`n` of them).
    fn many(&self, n: u64) -> impl Future<Output = jtc_cache::Result<Vec<Self::Out>>> + Send;
}

/// A hit on a counter (a lone fixed window).
pub(crate) struct CounterHit<'a> {
    pub(crate) cache: &'a Cache,
    pub(crate) key: &'a str,
    pub(crate) window: Duration,
}

impl Batch for CounterHit<'_> {
    type Out = Hit;

    fn key(&self) -> &str {
        self.key
    }

    fn one(&self) -> impl Future<Output = jtc_cache::Result<Hit>> + Send {
        self.cache.hit(self.key, self.window)
    }

    async fn many(&self, n: u64) -> jtc_cache::Result<Vec<Hit>> {
        let last = self.cache.hit_by(self.key, self.window, n).await?;
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        Ok((1..=n)
            .map(|i| Hit {
                count: last.count - n + i,
                ..last
            })
            .collect())
    }
}

/// A request counted against a record's rules (several limits, or another algorithm).
pub(crate) struct RecordHit<'a> {
    pub(crate) cache: &'a Cache,
    pub(crate) key: &'a str,
    pub(crate) rules: &'a [RateRule],
}

impl Batch for RecordHit<'_> {
    type Out = Vec<RateVerdict>;

    fn key(&self) -> &str {
        self.key
    }

    fn one(&self) -> impl Future<Output = jtc_cache::Result<Vec<RateVerdict>>> + Send {
        self.cache.rate(self.key, self.rules, true)
    }

    fn many(
        &self,
        n: u64,
    ) -> impl Future<Output = jtc_cache::Result<Vec<Vec<RateVerdict>>>> + Send {
        self.cache.rate_by(self.key, self.rules, n)
    }
}

/// What a queued hit is told when its turn comes.
enum Turn<T> {
    /// Its result.
    Counted(Counted<T>),
    /// Lead the next batch.
    Lead(Baton<T>),
}

/// The hits waiting for their turn: one queue per key while a batch of that key is in flight.
type Queues<T> = DashMap<String, Vec<oneshot::Sender<Turn<T>>>, ahash::RandomState>;

/// The lead of a key's next batch and the members queued behind it. Taken by the member told
/// to lead; dropped unread (that member's request went away first), it passes the lead on
/// itself.
struct Baton<T> {
    queues: Arc<Queues<T>>,
    key: String,
    batch: Option<Vec<oneshot::Sender<Turn<T>>>>,
}

impl<T> Baton<T> {
    fn take(mut self) -> Vec<oneshot::Sender<Turn<T>>> {
        self.batch.take().unwrap_or_default()
    }
}

impl<T> Drop for Baton<T> {
    fn drop(&mut self) {
        if let Some(batch) = self.batch.take()
            && !promote(&self.queues, &self.key, batch)
        {
            hand_on(&self.queues, &self.key);
        }
    }
}

/// The hits queued per key while one of the key's batches is in flight. A key is present
/// exactly while a batch of it is in flight.
pub(crate) struct Coalescer<T> {
    queues: Arc<Queues<T>>,
    /// Set when the store cannot count a batch at once (a driver without `hit_by` or
    /// `rate_by`).
    unbatchable: AtomicBool,
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Self {
            queues: Arc::default(),
            unbatchable: AtomicBool::new(false),
        }
    }
}

impl<T: Clone + Send> Coalescer<T> {
    /// Counts one request (what `hit` counts, on its key), in a batch with the requests of the
    /// key that arrive while another is in flight.
    pub(crate) async fn hit<B: Batch<Out = T>>(&self, hit: &B) -> Counted<T> {
        let key = hit.key();
        if self.unbatchable.load(Ordering::Relaxed) {
            // The store cannot count a batch: every request goes on its own, side by side.
            return hit.one().await.map_err(Arc::new);
        }
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
                Ok(Turn::Lead(baton)) => baton.take(),
                // Every sender is answered or handed on; a lost one is counted on its own.
                Err(_) => return hit.one().await.map_err(Arc::new),
            },
        };
        self.lead(hit, batch).await
    }

    /// Sends this request and `batch` as one, shares out the results, and hands the queue on.
    async fn lead<B: Batch<Out = T>>(
        &self,
        hit: &B,
        batch: Vec<oneshot::Sender<Turn<T>>>,
    ) -> Counted<T> {
        let mut flight = Flight {
            coalescer: self,
            key: hit.key(),
            batch,
            landed: false,
        };
        let n = 1 + flight.batch.len() as u64;
        if n > 1 {
            match hit.many(n).await {
                Ok(results) if results.len() as u64 == n => {
                    let batch = std::mem::take(&mut flight.batch);
                    flight.landed = true;
                    let mut results = results.into_iter();
                    let mine = results.next();
                    // A member whose request went away took its result with it.
                    for (waiting, theirs) in batch.into_iter().zip(results) {
                        let _ = waiting.send(Turn::Counted(Ok(theirs)));
                    }
                    if let Some(mine) = mine {
                        return Ok(mine);
                    }
                }
                Err(error) if !matches!(error.kind(), ErrorKind::Unsupported { .. }) => {
                    let batch = std::mem::take(&mut flight.batch);
                    flight.landed = true;
                    let error = Arc::new(error);
                    for waiting in batch {
                        let _ = waiting.send(Turn::Counted(Err(Arc::clone(&error))));
                    }
                    return Err(error);
                }
                // A store that cannot count a batch (or answered one with another number of
                // results: counting again only ever rejects earlier) counts one at a time.
                _ => self.unbatchable.store(true, Ordering::Relaxed),
            }
        }
        // One request at a time, in arrival order (this batch only: later requests of the key
        // no longer queue).
        let mine = hit.one().await.map_err(Arc::new);
        for waiting in std::mem::take(&mut flight.batch) {
            let theirs = hit.one().await.map_err(Arc::new);
            let _ = waiting.send(Turn::Counted(theirs));
        }
        flight.landed = true;
        mine
    }
}

/// After a batch of `key` landed: the hits queued meanwhile go next, led by the first of them
/// whose request is still there; with none, the key is no longer in flight.
fn hand_on<T>(queues: &Arc<Queues<T>>, key: &str) {
    loop {
        let queued = match queues.get_mut(key) {
            Some(mut queue) => std::mem::take(&mut *queue),
            None => return,
        };
        if promote(queues, key, queued) {
            return;
        }
        if queues.remove_if(key, |_, queue| queue.is_empty()).is_some() {
            return;
        }
        // More arrived meanwhile: hand them on.
    }
}

fn enqueue<T>(queue: &mut Vec<oneshot::Sender<Turn<T>>>) -> oneshot::Receiver<Turn<T>> {
    let (sender, receiver) = oneshot::channel();
    queue.push(sender);
    receiver
}

/// Makes the first member still waiting the leader of the others; whether one took it.
fn promote<T>(
    queues: &Arc<Queues<T>>,
    key: &str,
    mut batch: Vec<oneshot::Sender<Turn<T>>>,
) -> bool {
    while !batch.is_empty() {
        let first = batch.remove(0);
        let baton = Baton {
            queues: Arc::clone(queues),
            key: key.to_owned(),
            batch: Some(batch),
        };
        match first.send(Turn::Lead(baton)) {
            Ok(()) => return true,
            Err(Turn::Lead(back)) => batch = back.take(),
            Err(Turn::Counted(_)) => return false,
        }
    }
    false
}

/// A batch in flight; hands the key on when it lands or when its leader is dropped.
struct Flight<'a, T> {
    coalescer: &'a Coalescer<T>,
    key: &'a str,
    /// The members not yet told their result.
    batch: Vec<oneshot::Sender<Turn<T>>>,
    landed: bool,
}

impl<T> Drop for Flight<'_, T> {
    fn drop(&mut self) {
        let queues = &self.coalescer.queues;
        if !self.landed && promote(queues, self.key, std::mem::take(&mut self.batch)) {
            // The batch is sent again by its next member, who hands the key on after.
            return;
        }
        hand_on(queues, self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jtc_cache::{ArrayDriver, RateKind};
    use std::future::Future;

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_hits_get_every_count_once() {
        let cache = Cache::new(ArrayDriver::new());
        let coalescer = Arc::new(Coalescer::default());
        let tasks: Vec<_> = (0..500)
            .map(|_| {
                let (cache, coalescer) = (cache.clone(), Arc::clone(&coalescer));
                tokio::spawn(async move {
                    let hit = CounterHit {
                        cache: &cache,
                        key: "k",
                        window: MINUTE,
                    };
                    coalescer.hit(&hit).await.unwrap().count
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

    /// Two limits on a record: every request gets its own verdicts, exactly as many are
    /// admitted as the tighter limit allows, and each admitted request saw another remaining.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_record_hits_get_their_own_verdicts() {
        let cache = Cache::new(ArrayDriver::new());
        let coalescer = Arc::new(Coalescer::default());
        let rules = [
            RateRule {
                limit: 300,
                window: MINUTE,
                kind: RateKind::FixedWindow,
            },
            RateRule {
                limit: 120,
                window: MINUTE,
                kind: RateKind::SlidingWindow,
            },
        ];
        let tasks: Vec<_> = (0..500)
            .map(|_| {
                let (cache, coalescer) = (cache.clone(), Arc::clone(&coalescer));
                tokio::spawn(async move {
                    let hit = RecordHit {
                        cache: &cache,
                        key: "r",
                        rules: &rules,
                    };
                    coalescer.hit(&hit).await.unwrap()
                })
            })
            .collect();
        let mut remaining = Vec::new();
        for task in tasks {
            let verdicts = task.await.unwrap();
            assert_eq!(verdicts.len(), 2);
            if verdicts.iter().all(|v| v.allowed) {
                remaining.push(verdicts[1].remaining);
            }
        }
        remaining.sort_unstable();
        assert_eq!(
            remaining,
            (0..120).collect::<Vec<_>>(),
            "one each, 120 admitted"
        );
        assert!(coalescer.queues.is_empty(), "no key left in flight");
    }

    #[tokio::test]
    async fn a_dropped_leader_hands_its_batch_on() {
        let cache = Cache::new(ArrayDriver::new());
        let coalescer = Coalescer::default();
        let hit = CounterHit {
            cache: &cache,
            key: "k",
            window: MINUTE,
        };
        // A key in flight whose leader is gone before its batch landed.
        coalescer.queues.insert("k".to_owned(), Vec::new());
        let (first, second) = (coalescer.hit(&hit), coalescer.hit(&hit));
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

    /// A member told to lead the next batch whose request goes away before it runs (a client
    /// hanging up: hyper drops the request's future) hands the lead on; the key never stays
    /// in flight with no one to land it, which would leave every later request of the key
    /// waiting forever.
    #[tokio::test]
    async fn a_member_dropped_after_being_told_to_lead_hands_the_lead_on() {
        let cache = Cache::new(ArrayDriver::new());
        let coalescer = Coalescer::default();
        let hit = CounterHit {
            cache: &cache,
            key: "k",
            window: MINUTE,
        };
        coalescer.queues.insert("k".to_owned(), Vec::new());
        let mut told = Box::pin(coalescer.hit(&hit));
        let mut next = Box::pin(coalescer.hit(&hit));
        assert!(futures_poll(&mut told).is_none());
        assert!(futures_poll(&mut next).is_none());
        // The flight lands: `told` is told to lead `next`, and is dropped before it runs.
        hand_on(&coalescer.queues, "k");
        drop(told);
        let counted = tokio::time::timeout(Duration::from_secs(5), next).await;
        assert_eq!(counted.expect("the next member leads").unwrap().count, 1);
        let later = tokio::time::timeout(Duration::from_secs(5), coalescer.hit(&hit)).await;
        assert_eq!(
            later.expect("a later request is not stuck").unwrap().count,
            2
        );
        assert!(coalescer.queues.is_empty(), "no key left in flight");
        // Told to lead with no one behind it: the key is no longer in flight.
        coalescer.queues.insert("k".to_owned(), Vec::new());
        let mut alone = Box::pin(coalescer.hit(&hit));
        assert!(futures_poll(&mut alone).is_none());
        hand_on(&coalescer.queues, "k");
        drop(alone);
        assert!(coalescer.queues.is_empty(), "no key left in flight");
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
