//! The storage contract every backend fulfils: bytes in, bytes out.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;

use crate::{RateRule, RateVerdict, Result};

/// A storage backend for [`Cache`](crate::Cache).
///
/// Drivers store opaque bytes ([`Bytes`]: cloning one shares the buffer) under string keys;
/// encoding typed values is the [`Cache`](crate::Cache)'s job. The trait is object safe: a
/// `Cache` holds an `Arc<dyn CacheDriver>`, so the driver is chosen at run time
/// (`CACHE_DRIVER`).
///
/// Methods return a [`DriverFuture`]: a driver that must wait (on files, on a server) wraps
/// its `async` block with [`DriverFuture::new`]; a driver that answers at once (memory)
/// returns [`DriverFuture::ready`], which allocates nothing. That keeps the in-memory driver
/// within a few nanoseconds of a bare map, where a boxed future per call would double its cost.
///
/// # Contract
///
/// Every driver in this crate passes one conformance suite; a driver written elsewhere should
/// keep the same promises:
///
/// - A `ttl` of `None` means the entry never expires. A zero `ttl` removes the key.
/// - An expired entry is indistinguishable from a missing one.
/// - Counters are stored as the plain decimal text of an `i64` (`b"42"`), the same bytes the
///   default codec writes for an integer value, so `put` then `increment` works and the Redis
///   driver can use `INCRBY`.
/// - `increment`, `add`, `hit_by`, `forget_if` and `rate_by` are atomic with respect to every
///   other operation on the same key, from any task (and, for shared backends, any process).
///
/// # What a driver writes
///
/// Ten methods are required: `name`, `get`, `put`, `add`, `increment`, `hit_by`, `forget`,
/// `forget_if`, `touch`, `flush`. The rest are provided from them and overridden where the
/// backend does better: `hit` (one `hit_by`), `pull` (a read and a compare-and-delete, retried
/// if the value changed in between), `many` and `put_many` (one call per key), `prune`
/// (nothing to do), `stats` (nothing to report). Rate records (`rate_by`, and `rate` from it)
/// answer [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) unless the driver offers
/// them: they need an atomic read-modify-write of one key, which not every backend has, so
/// they stay an optional capability checked when called (the rate limiter counts on `hit_by`
/// alone when its limits need no record). Each driver of this crate implements the trait as
/// one-line forwards to its own methods.
///
/// # Example
///
/// A driver that forwards to another, counting reads:
///
/// ```
/// use jtc_cache::{ArrayDriver, Cache, CacheDriver, DriverFuture, Hit};
/// use bytes::Bytes;
/// use std::{sync::atomic::{AtomicU64, Ordering}, time::Duration};
///
/// #[derive(Debug, Default)]
/// struct Counting { inner: ArrayDriver, reads: AtomicU64 }
///
/// impl CacheDriver for Counting {
///     fn name(&self) -> &'static str { "counting" }
///     fn get<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
///         self.reads.fetch_add(1, Ordering::Relaxed);
///         DriverFuture::new(async move { self.inner.get(key).await })
///     }
///     fn put<'a>(&'a self, key: &'a str, value: Bytes, ttl: Option<Duration>) -> DriverFuture<'a, ()> {
///         self.inner.put(key, value, ttl)
///     }
///     fn add<'a>(&'a self, key: &'a str, value: Bytes, ttl: Option<Duration>) -> DriverFuture<'a, bool> {
///         self.inner.add(key, value, ttl)
///     }
///     fn increment<'a>(&'a self, key: &'a str, by: i64) -> DriverFuture<'a, i64> {
///         self.inner.increment(key, by)
///     }
///     fn hit_by<'a>(&'a self, key: &'a str, window: Duration, by: u64) -> DriverFuture<'a, Hit> {
///         self.inner.hit_by(key, window, by)
///     }
///     fn forget<'a>(&'a self, key: &'a str) -> DriverFuture<'a, bool> { self.inner.forget(key) }
///     fn forget_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> DriverFuture<'a, bool> {
///         self.inner.forget_if(key, expected)
///     }
///     fn touch<'a>(&'a self, key: &'a str, ttl: Option<Duration>) -> DriverFuture<'a, bool> {
///         self.inner.touch(key, ttl)
///     }
///     fn flush(&self) -> DriverFuture<'_, ()> { self.inner.flush() }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let cache = Cache::new(Counting::default());
/// cache.put("k", &1, Duration::from_secs(5)).await?;
/// assert_eq!(cache.get::<i32>("k").await?, Some(1));
/// # Ok::<_, jtc_cache::Error>(()) }).unwrap();
/// ```
pub trait CacheDriver: Send + Sync + fmt::Debug + 'static {
    /// A short name for logs and the CLI: `array`, `file`, `redis`.
    fn name(&self) -> &'static str;

    /// The stored bytes, or `None` when the key is missing or expired.
    fn get<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>>;

    /// The stored bytes when the driver has them at hand — in process memory, a copy it
    /// holds, the page cache — answered without waiting; `None` when reading would wait, and
    /// then nothing has been sent anywhere. Lets a caller answer without a future
    /// ([`Cache::get_bytes_now`](crate::Cache::get_bytes_now)). The default: always `None`
    /// (a driver that forwards to another forwards this only if its `get` adds nothing).
    fn get_now(&self, key: &str) -> Option<Result<Option<Bytes>>> {
        let _ = key;
        None
    }

    /// Stores `value`, replacing whatever was there.
    fn put<'a>(&'a self, key: &'a str, value: Bytes, ttl: Option<Duration>)
    -> DriverFuture<'a, ()>;

    /// Stores `value` only if the key is missing or expired; returns whether it stored. A zero
    /// `ttl` stores nothing and returns `false`.
    fn add<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, bool>;

    /// Adds `by` to the integer at `key` and returns the new value.
    ///
    /// A missing or expired key starts from 0 and never expires; an existing key keeps its
    /// TTL. A value that is not an integer is an
    /// [`ErrorKind::NotAnInteger`](crate::ErrorKind::NotAnInteger) and is left unchanged, as is
    /// a counter that would overflow.
    fn increment<'a>(&'a self, key: &'a str, by: i64) -> DriverFuture<'a, i64>;

    /// Adds `by` (at least 1) to the counter at `key`, starting a window of `window` if the
    /// counter is new, in one atomic step: the requests of the batch got the counts
    /// `count − by + 1 ..= count`. This is the rate limiter's operation; it sends concurrent
    /// requests of one key as one batch.
    ///
    /// A counter found without a TTL is given `window` too: a counter that never expires
    /// would lock a client out for good.
    fn hit_by<'a>(&'a self, key: &'a str, window: Duration, by: u64) -> DriverFuture<'a, Hit>;

    /// One request's [`hit_by`](Self::hit_by).
    fn hit<'a>(&'a self, key: &'a str, window: Duration) -> DriverFuture<'a, Hit> {
        self.hit_by(key, window, 1)
    }

    /// Applies rate-limit `rules` to the record at `key` for `by` requests counted one after
    /// the other in one call, and returns each request's verdicts (one per rule), in order, as
    /// `by` separate calls would give them; `by == 0` counts nothing and returns the verdicts
    /// a request would get now (a look). See [`RateKind`](crate::RateKind) for the algorithms and what
    /// counts. This is the rate limiter's operation for several limits and for the
    /// sliding-window and token-bucket algorithms; over a network it is worth offering only as
    /// a few atomic steps for many requests (Redis: one script run per 250 requests).
    ///
    /// The default implementation answers [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported):
    /// a driver can only offer it with an atomic read-modify-write of one key.
    fn rate_by<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        by: u64,
    ) -> DriverFuture<'a, Vec<Vec<RateVerdict>>> {
        let _ = (key, rules, by);
        DriverFuture::ready(Err(crate::ErrorKind::Unsupported {
            operation: "rate",
            driver: self.name(),
        }
        .into()))
    }

    /// One request's [`rate_by`](Self::rate_by): counted with `consume`, looked at without.
    fn rate<'a>(
        &'a self,
        key: &'a str,
        rules: &'a [RateRule],
        consume: bool,
    ) -> DriverFuture<'a, Vec<RateVerdict>> {
        let batch = self.rate_by(key, rules, u64::from(consume));
        DriverFuture::new(async move { Ok(batch.await?.into_iter().next().unwrap_or_default()) })
    }

    /// Removes the key; returns whether a live entry was there.
    fn forget<'a>(&'a self, key: &'a str) -> DriverFuture<'a, bool>;

    /// Removes the key only if it holds exactly `expected`, in one atomic step; returns whether
    /// it removed it. This is how a lock's owner releases it without releasing a lock that
    /// expired and was taken by someone else in the meantime.
    fn forget_if<'a>(&'a self, key: &'a str, expected: &'a [u8]) -> DriverFuture<'a, bool>;

    /// Removes the key and returns what it held, in one atomic step. Provided as a read and a
    /// [`forget_if`](Self::forget_if) of what was read, again if the value changed between
    /// the two; drivers with a native atomic take (`GETDEL`) override it.
    fn pull<'a>(&'a self, key: &'a str) -> DriverFuture<'a, Option<Bytes>> {
        DriverFuture::new(async move {
            loop {
                let Some(value) = self.get(key).await? else {
                    return Ok(None);
                };
                if self.forget_if(key, &value).await? {
                    return Ok(Some(value));
                }
            }
        })
    }

    /// Gives a live entry a new TTL (`None`: never expires; zero: removes it); returns whether
    /// the key was live.
    fn touch<'a>(&'a self, key: &'a str, ttl: Option<Duration>) -> DriverFuture<'a, bool>;

    /// Removes every entry this driver wrote, and nothing else.
    fn flush(&self) -> DriverFuture<'_, ()>;

    /// The stored bytes of several keys, in order.
    fn many<'a>(&'a self, keys: &'a [&'a str]) -> DriverFuture<'a, Vec<Option<Bytes>>> {
        DriverFuture::new(async move {
            let mut values = Vec::with_capacity(keys.len());
            for key in keys {
                values.push(self.get(key).await?);
            }
            Ok(values)
        })
    }

    /// Stores several entries with one TTL.
    fn put_many<'a>(
        &'a self,
        entries: &'a [(&'a str, Bytes)],
        ttl: Option<Duration>,
    ) -> DriverFuture<'a, ()> {
        DriverFuture::new(async move {
            for (key, value) in entries {
                self.put(key, value.clone(), ttl).await?;
            }
            Ok(())
        })
    }

    /// What the driver counts of itself, beyond what the cache counts: the counters of a near
    /// cache (the Redis driver with `RedisConfig::near_cache`). Nothing by default.
    /// [`Cache::stats`](crate::Cache::stats) includes them.
    fn stats(&self) -> DriverStats {
        DriverStats::default()
    }

    /// Removes expired entries that nobody has read since they expired; returns how many.
    ///
    /// Backends that expire entries by themselves (Redis) return 0.
    fn prune(&self) -> DriverFuture<'_, u64> {
        DriverFuture::ready(Ok(0))
    }
}

/// `rate_by` of a driver that counts one request per call: a look (`by == 0`) or one request
/// through `single(consume)`; a batch is [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported),
/// and the rate limiter then sends the batch's requests one at a time.
pub(crate) fn one_rate_at_a_time<'a>(
    driver: &'static str,
    by: u64,
    single: impl FnOnce(bool) -> DriverFuture<'a, Vec<RateVerdict>>,
) -> DriverFuture<'a, Vec<Vec<RateVerdict>>> {
    if by > 1 {
        return DriverFuture::ready(Err(crate::ErrorKind::Unsupported {
            operation: "rate_by",
            driver,
        }
        .into()));
    }
    let verdicts = single(by == 1);
    DriverFuture::new(async move { Ok(vec![verdicts.await?]) })
}

/// What a driver counts of itself ([`CacheDriver::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverStats {
    /// The driver's near cache's counters, if it keeps one.
    pub near_cache: Option<crate::NearCacheStats>,
}

impl DriverStats {
    /// Stats with a near cache's counters.
    pub fn with_near_cache(near_cache: crate::NearCacheStats) -> Self {
        Self {
            near_cache: Some(near_cache),
        }
    }
}

/// The state of a rate-limit counter right after [`CacheDriver::hit_by`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// The count including this hit.
    pub count: i64,
    /// The time left until the counter expires and the window starts over.
    pub expires_in: Duration,
}

/// The future a [`CacheDriver`] method returns: a result that is already there, a boxed
/// `async` block, (for a driver that answers at once) a read that runs when polled, or (for a
/// driver with a near cache) a read answered from a held copy when polled, else fetched.
#[must_use = "futures do nothing unless awaited"]
pub struct DriverFuture<'a, T> {
    state: State<'a, T>,
}

pub(crate) type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

enum State<'a, T> {
    Ready(Option<Result<T>>),
    Boxed(Boxed<'a, T>),
    InMemory(Option<InMemory<'a, T>>),
    #[cfg(feature = "redis")]
    Held(Option<Held<'a, T>>),
}

/// An in-memory read, run when polled. Its future holds two references instead of the
/// result, and the result goes straight to the caller: a result written into the future and
/// read back at once cost a read of the in-memory driver about a tenth of its time
/// (docs/benchmarks.md).
struct InMemory<'a, T> {
    driver: &'a dyn ReadNow<T>,
    key: &'a str,
}

/// A read a driver answers at once, without waiting: [`DriverFuture::read_now`] runs it when
/// the future is first polled.
pub(crate) trait ReadNow<T>: Sync {
    /// Reads `key` now.
    fn read_now(&self, key: &str) -> Result<T>;
}

/// A read a driver may answer from a copy it holds (a near cache), else over the network:
/// [`DriverFuture::held`] looks for the copy when the future is first polled, as an in-memory
/// read does, and turns into [`ReadHeld::fetch`]'s future when there is none.
#[cfg(feature = "redis")]
pub(crate) trait ReadHeld<T>: Sync {
    /// The answer held in this process, or `Pending` when there is none and it must be
    /// fetched. (The future's own output type, so that a held answer is returned as it is.)
    fn held(&self, key: &str) -> Poll<Result<T>>;
    /// Reads `key` from the server.
    fn fetch<'a>(&'a self, key: &'a str) -> Boxed<'a, T>;
}

/// A read answered from a held copy when there is one, run when polled.
#[cfg(feature = "redis")]
struct Held<'a, T> {
    driver: &'a dyn ReadHeld<T>,
    key: &'a str,
}

impl<'a, T> DriverFuture<'a, T> {
    /// A future for work that waits: it is boxed once.
    pub fn new(future: impl Future<Output = Result<T>> + Send + 'a) -> Self {
        Self {
            state: State::Boxed(Box::pin(future)),
        }
    }

    /// A result that is already known; no allocation.
    #[inline]
    pub fn ready(result: Result<T>) -> Self {
        Self {
            state: State::Ready(Some(result)),
        }
    }

    /// A read of `key` that `driver` answers at once, run when the future is first polled.
    #[inline]
    pub(crate) fn read_now(driver: &'a dyn ReadNow<T>, key: &'a str) -> Self {
        Self {
            state: State::InMemory(Some(InMemory { driver, key })),
        }
    }

    /// A read of `key` that `driver` answers from a held copy if it has one, else fetches.
    #[cfg(feature = "redis")]
    #[inline]
    pub(crate) fn held(driver: &'a dyn ReadHeld<T>, key: &'a str) -> Self {
        Self {
            state: State::Held(Some(Held { driver, key })),
        }
    }
}

// The ready result is moved out, never pinned in place, and the boxed future is pinned by its
// box: moving a `DriverFuture` is always fine.
impl<T> Unpin for DriverFuture<'_, T> {}

impl<T> Future for DriverFuture<'_, T> {
    type Output = Result<T>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let state = &mut self.get_mut().state;
        match state {
            State::Ready(result) => match result.take() {
                Some(result) => Poll::Ready(result),
                None => panic!("a DriverFuture was polled after it completed"),
            },
            State::Boxed(future) => future.as_mut().poll(cx),
            State::InMemory(call) => match call.take() {
                Some(InMemory { driver, key }) => Poll::Ready(driver.read_now(key)),
                None => panic!("a DriverFuture was polled after it completed"),
            },
            #[cfg(feature = "redis")]
            State::Held(call) => {
                let Some(Held { driver, key }) = call.take() else {
                    panic!("a DriverFuture was polled after it completed")
                };
                let held = driver.held(key);
                if held.is_ready() {
                    return held;
                }
                let mut fetch = driver.fetch(key);
                let polled = fetch.as_mut().poll(cx);
                *state = State::Boxed(fetch);
                polled
            }
        }
    }
}

impl<T> fmt::Debug for DriverFuture<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Ready(_) | State::InMemory(_) => "ready",
            State::Boxed(_) => "pending",
            #[cfg(feature = "redis")]
            State::Held(_) => "pending",
        };
        f.debug_struct("DriverFuture")
            .field("state", &state)
            .finish()
    }
}

#[cfg(all(test, feature = "redis"))]
mod tests {
    use std::{
        pin::pin,
        sync::atomic::{AtomicUsize, Ordering::Relaxed},
        task::{Context, Poll, Waker},
    };

    use super::*;

    /// Holds `"near"`; fetching anything else yields once, then answers with the key.
    #[derive(Default)]
    struct Holder {
        fetches: AtomicUsize,
    }

    impl ReadHeld<String> for Holder {
        fn held(&self, key: &str) -> Poll<Result<String>> {
            if key == "near" {
                Poll::Ready(Ok("held".to_owned()))
            } else {
                Poll::Pending
            }
        }

        fn fetch<'a>(&'a self, key: &'a str) -> Boxed<'a, String> {
            self.fetches.fetch_add(1, Relaxed);
            Box::pin(async move {
                let mut yielded = false;
                std::future::poll_fn(|cx| {
                    if yielded {
                        Poll::Ready(())
                    } else {
                        yielded = true;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                })
                .await;
                Ok(format!("fetched {key}"))
            })
        }
    }

    #[test]
    fn a_held_read_answers_when_polled_and_fetches_only_what_is_not_held() {
        let driver = Holder::default();
        let mut cx = Context::from_waker(Waker::noop());
        let mut hit = pin!(DriverFuture::held(&driver, "near"));
        assert!(matches!(hit.as_mut().poll(&mut cx), Poll::Ready(Ok(v)) if v == "held"));
        assert_eq!(driver.fetches.load(Relaxed), 0);

        let mut miss = pin!(DriverFuture::held(&driver, "far"));
        assert!(miss.as_mut().poll(&mut cx).is_pending());
        assert_eq!(format!("{miss:?}"), "DriverFuture { state: \"pending\" }");
        assert!(matches!(miss.as_mut().poll(&mut cx), Poll::Ready(Ok(v)) if v == "fetched far"));
        assert_eq!(
            driver.fetches.load(Relaxed),
            1,
            "fetched once, then polled on"
        );
    }
}
