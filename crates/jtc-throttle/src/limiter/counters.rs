//! `Counters`: where a limiter counts — process memory, or a shared cache with the local deny
//! cache in front of it and the store-error policy behind it. One `Counters` serves a layer
//! and the [`RateLimiter`](crate::RateLimiter) it hands out, so both see the same counts.

use std::{borrow::Cow, sync::Arc};

use jtc_cache::{Cache, Clock, Hit, RateKind, RateRule, RateVerdict};

use super::{
    Decision, Group, Plan,
    coalesce::{Coalescer, CounterHit, RecordHit},
    deny::DenyCache,
    failures::FailureLog,
    memory::{MemoryStore, packs},
};
use crate::{
    StoreErrorPolicy,
    key::CounterKey,
    meters::{Meters, Verdict},
};

/// The limiter's verdict, store errors and policy included.
pub(crate) enum Outcome {
    Decided(Decision),
    Uncounted,
    Unavailable,
}

impl Outcome {
    /// What became of the request, for the metrics.
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            Self::Decided(decision) => Verdict::of(decision),
            Self::Uncounted | Self::Unavailable => Verdict::StoreError,
        }
    }
}

/// What the limiter says of a request before anything is sent to a store.
pub(crate) enum Check {
    /// Decided in process: counted in memory, or a rejection the deny cache remembers.
    Decided(Decision),
    /// Only the shared store can say: [`Counters::in_cache`] with this cache.
    Store(Cache),
}

/// Where a limiter counts.
pub(crate) struct Counters {
    pub(crate) memory: MemoryStore,
    pub(crate) cache: Option<Cache>,
    /// `throttle:<name>:`, the start of every key in the cache.
    pub(crate) prefix: String,
    pub(crate) clock: Arc<dyn Clock>,
    deny: Option<DenyCache>,
    /// Batches of concurrent requests of one key: on counters, and on records.
    counters: Coalescer<Hit>,
    records: Coalescer<Vec<RateVerdict>>,
    failures: FailureLog,
    policy: StoreErrorPolicy,
    /// The limiter's metrics (named after the prefix's name).
    pub(crate) meters: Meters,
}

impl Counters {
    pub(crate) fn new(
        cache: Option<Cache>,
        prefix: String,
        clock: Arc<dyn Clock>,
        capacity: u64,
        deny: bool,
        policy: StoreErrorPolicy,
    ) -> Self {
        let deny = (deny && cache.is_some()).then(|| DenyCache::new(capacity));
        let name = prefix.strip_prefix("throttle:").unwrap_or(&prefix);
        let meters = Meters::new(name.strip_suffix(':').unwrap_or(name));
        Self {
            meters,
            memory: MemoryStore::new(capacity, Arc::clone(&clock)),
            cache,
            prefix,
            clock,
            deny,
            counters: Coalescer::default(),
            records: Coalescer::default(),
            failures: FailureLog::default(),
            policy,
        }
    }

    /// The key of a counter in the cache: `throttle:<name>:<client>:<route>` or
    /// `throttle:<name>:<key>`.
    pub(crate) fn storage_key(&self, key: &CounterKey) -> String {
        match key {
            CounterKey::Request(client, route) => {
                format!("{}{client}:{}", self.prefix, route.as_str())
            }
            CounterKey::Custom(custom) => format!("{}{custom}", self.prefix),
        }
    }

    /// The limiter's first and only synchronous question about a request: counted in process
    /// memory (a limiter without a cache), answered from the deny cache, or to be counted in
    /// the store — then [`in_cache`](Self::in_cache), awaited. Which of the three is the
    /// limiter's business; the service only waits when told to.
    #[inline(always)]
    pub(crate) fn check(&self, plan: &Plan, key: &CounterKey, now: u64) -> Check {
        let Some(cache) = &self.cache else {
            return Check::Decided(self.in_memory(plan, key, now, true));
        };
        match self.denied(plan, key, now) {
            Some(rejected) => Check::Decided(rejected),
            None => Check::Store(cache.clone()),
        }
    }

    /// Counts (or, without `consume`, looks at) a request's limits in process memory.
    pub(crate) fn in_memory(
        &self,
        plan: &Plan,
        default: &CounterKey,
        now: u64,
        consume: bool,
    ) -> Decision {
        if let [group] = plan.groups.as_slice()
            && packs(&group.rules)
        {
            let verdict =
                self.memory
                    .hit_one(&key_of(group, default), &group.rules[0], consume, now);
            return Decision::single(verdict, now);
        }
        let mut verdicts = placeholder(plan);
        for group in &plan.groups {
            let counted = self
                .memory
                .apply(&key_of(group, default), &group.rules, consume);
            place(&mut verdicts, group, counted);
        }
        Decision::combine(&verdicts, now)
    }

    /// The rejection this process remembers for a request (see `deny.rs`): when the store
    /// has said that one of its keys is over a limit until a time not yet reached. Answered
    /// without waiting, before anything is sent to the store.
    pub(crate) fn denied(&self, plan: &Plan, default: &CounterKey, now: u64) -> Option<Decision> {
        let deny = self.deny.as_ref()?;
        plan.groups.iter().find_map(|group| {
            let verdict = deny.check(&key_of(group, default), now)?;
            Some(Decision {
                policy: group.positions.first().copied().unwrap_or(0),
                ..Decision::single(verdict, now)
            })
        })
    }

    /// Counts a request's limits in the cache, with the store-error policy applied: one
    /// atomic step per key (one for the whole request, unless limits name their own keys).
    /// The caller has asked [`denied`](Self::denied) first.
    pub(crate) async fn in_cache(
        &self,
        cache: &Cache,
        plan: &Plan,
        default: &CounterKey,
        now: u64,
    ) -> Outcome {
        let mut verdicts = placeholder(plan);
        for group in &plan.groups {
            let key = key_of(group, default);
            match self.group_in_cache(cache, group, &key, now).await {
                Ok(counted) => place(&mut verdicts, group, counted),
                // The policy's answer for the whole request: uncounted or unavailable.
                Err(policy) => return policy,
            }
        }
        Outcome::Decided(Decision::combine(&verdicts, now))
    }

    /// One group of limits in the store, with the store-error policy applied: its verdicts
    /// (from the store, or from process memory under the fallback policy), or the policy's
    /// answer for the whole request (uncounted, or unavailable).
    async fn group_in_cache(
        &self,
        cache: &Cache,
        group: &Group,
        key: &CounterKey,
        now: u64,
    ) -> Result<Vec<RateVerdict>, Outcome> {
        if !self.failures.skip_store(now) {
            let counted = match group.rules.as_slice() {
                [rule] if rule.kind == RateKind::FixedWindow => {
                    self.fixed_window(cache, key, rule, now).await
                }
                rules => self.record(cache, key, rules, now).await,
            };
            match counted {
                Ok(verdicts) => {
                    if self.failures.succeeded() {
                        self.meters.fallback(false);
                    }
                    return Ok(verdicts);
                }
                Err(error) if error.is_backend() => {
                    self.failures.failed(now, &error, self.policy.as_str());
                    self.meters.fallback(true);
                }
                // The store refused this request's key or value (not the store's health):
                // this request alone is counted here, the store stays in use for the others,
                // and no outage policy starts.
                Err(error) => {
                    self.failures.refused(now, &error);
                    return Ok(self.memory.apply(key, &group.rules, true));
                }
            }
        }
        match self.policy {
            StoreErrorPolicy::FallbackToMemory => Ok(self.memory.apply(key, &group.rules, true)),
            StoreErrorPolicy::FailOpen => Err(Outcome::Uncounted),
            StoreErrorPolicy::FailClosed => Err(Outcome::Unavailable),
        }
    }

    /// A lone fixed window in the cache, counted in a batch with the process's concurrent
    /// hits on the same key (`coalesce.rs`).
    async fn fixed_window(
        &self,
        cache: &Cache,
        key: &CounterKey,
        rule: &RateRule,
        now: u64,
    ) -> Result<Vec<RateVerdict>, Arc<jtc_cache::Error>> {
        let storage = self.storage_key(key);
        let hit = CounterHit {
            cache,
            key: &storage,
            window: rule.window,
        };
        let hit = self.counters.hit(&hit).await?;
        let count = hit.count.max(0).unsigned_abs();
        let verdicts = vec![RateVerdict::from_counter(rule, count, hit.expires_in, true)];
        self.learn(key, &verdicts, now);
        Ok(verdicts)
    }

    /// One request counted against a key's rules in the cache (several limits, or another
    /// algorithm than a lone fixed window), in a batch with the process's concurrent requests
    /// of the same key (`coalesce.rs`).
    async fn record(
        &self,
        cache: &Cache,
        key: &CounterKey,
        rules: &[RateRule],
        now: u64,
    ) -> Result<Vec<RateVerdict>, Arc<jtc_cache::Error>> {
        let storage = self.storage_key(key);
        let hit = RecordHit {
            cache,
            key: &storage,
            rules,
        };
        let verdicts = self.records.hit(&hit).await?;
        self.learn(key, &verdicts, now);
        Ok(verdicts)
    }

    /// One key's rules in the store; a rejection when counting is remembered.
    async fn in_store(
        &self,
        cache: &Cache,
        key: &CounterKey,
        rules: &[RateRule],
        now: u64,
        consume: bool,
    ) -> jtc_cache::Result<Vec<RateVerdict>> {
        let verdicts = cache.rate(&self.storage_key(key), rules, consume).await?;
        if consume {
            self.learn(key, &verdicts, now);
        }
        Ok(verdicts)
    }

    fn learn(&self, key: &CounterKey, verdicts: &[RateVerdict], now: u64) {
        if let Some(deny) = &self.deny {
            deny.learn(key, verdicts, now);
        }
    }

    /// Counts (or looks at) a request's limits in the cache for `RateLimiter`: a remembered
    /// rejection first, then one step per key, and the cache's error returned as it is.
    pub(crate) async fn try_in_cache(
        &self,
        cache: &Cache,
        plan: &Plan,
        default: &CounterKey,
        now: u64,
        consume: bool,
    ) -> jtc_cache::Result<Decision> {
        if consume && let Some(decision) = self.denied(plan, default, now) {
            return Ok(decision);
        }
        let mut verdicts = placeholder(plan);
        for group in &plan.groups {
            let key = key_of(group, default);
            let counted = self
                .in_store(cache, &key, &group.rules, now, consume)
                .await?;
            place(&mut verdicts, group, counted);
        }
        Ok(Decision::combine(&verdicts, now))
    }

    /// Forgets everything counted under `key`, here and in the cache.
    pub(crate) async fn clear(&self, key: &CounterKey) -> jtc_cache::Result<()> {
        self.memory.forget(key);
        if let Some(deny) = &self.deny {
            deny.forget(key);
        }
        if let Some(cache) = &self.cache {
            cache.forget(&self.storage_key(key)).await?;
        }
        Ok(())
    }
}

/// The key a group counts under: its own, or the request's default.
fn key_of<'a>(group: &Group, default: &'a CounterKey) -> Cow<'a, CounterKey> {
    match &group.key {
        Some(key) => Cow::Owned(CounterKey::custom(key)),
        None => Cow::Borrowed(default),
    }
}

fn placeholder(plan: &Plan) -> Vec<RateVerdict> {
    let admitted = RateVerdict {
        allowed: true,
        limit: u64::MAX,
        remaining: u64::MAX,
        reset_after: std::time::Duration::ZERO,
    };
    vec![admitted; plan.limits.len()]
}

fn place(verdicts: &mut [RateVerdict], group: &Group, counted: Vec<RateVerdict>) {
    for (position, verdict) in group.positions.iter().zip(counted) {
        if let Some(slot) = verdicts.get_mut(*position) {
            *slot = verdict;
        }
    }
}
