//! What every service of one layer shares — the settings and the counters — and what it does
//! with them for each request: the counter key, the decision (store-error policy included),
//! the 429 and the headers.

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, Request, Response, header};
use jtc_cache::{Cache, Clock};

use crate::{
    RequestInfo, StoreErrorPolicy,
    key::{self, CounterKey, Identity},
    lang::{self, Catalogues},
    limiter::{self, Decision, FailureLog, MemoryStore, Quota},
    response::{self, OnLimited},
};

/// A custom key: what to count a request under, or `None` to let it through uncounted.
pub(crate) type KeyFn = Arc<dyn Fn(&RequestInfo<'_>) -> Option<String> + Send + Sync>;

/// The settings, as the setters leave them.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) quota: Quota,
    pub(crate) name: Option<String>,
    pub(crate) cache: Option<Cache>,
    pub(crate) identity: Identity,
    pub(crate) key_fn: Option<KeyFn>,
    pub(crate) on_limited: Option<OnLimited>,
    pub(crate) on_store_error: StoreErrorPolicy,
    pub(crate) ietf_headers: bool,
    pub(crate) fallback_locale: String,
    pub(crate) catalogues: Catalogues,
    pub(crate) memory_capacity: u64,
    pub(crate) clock: Arc<dyn Clock>,
}

/// The limiter's verdict, store errors and policy included.
pub(crate) enum Outcome {
    Decided(Decision),
    Uncounted,
    Unavailable,
}

/// What every service of one layer shares: the settings and the counters.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) prefix: String,
    /// `config.fallback_locale` as one of the catalogues names it (`en` when none does).
    fallback: String,
    pub(crate) memory: MemoryStore,
    pub(crate) failures: FailureLog,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        let quota = config.quota;
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| format!("{}per{}ms", quota.limit, quota.window.as_millis()));
        let fallback = config
            .catalogues
            .supported(&config.fallback_locale)
            .unwrap_or_else(|| lang::DEFAULT_LOCALE.to_owned());
        Self {
            prefix: format!("throttle:{name}:"),
            fallback,
            memory: MemoryStore::new(config.memory_capacity, Arc::clone(&config.clock)),
            failures: FailureLog::default(),
            config,
        }
    }

    /// What a request is counted under, or `None` when a custom key lets it through.
    pub(crate) fn counter_key<B>(&self, request: &Request<B>) -> Option<CounterKey> {
        let client = self.config.identity.client(request);
        let route = key::route(request);
        let Some(key_fn) = &self.config.key_fn else {
            return Some(CounterKey::Request(client, route));
        };
        let client = client.to_string();
        let info = RequestInfo {
            client: &client,
            route: route.as_str(),
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        };
        key_fn(&info).map(CounterKey::Custom)
    }

    /// The key of a counter in the cache: `throttle:<name>:<client>:<route>`.
    pub(crate) fn cache_key(&self, key: &CounterKey) -> String {
        match key {
            CounterKey::Request(client, route) => {
                format!("{}{client}:{}", self.prefix, route.as_str())
            }
            CounterKey::Custom(custom) => format!("{}{custom}", self.prefix),
        }
    }

    /// The decision of a layer counting in `cache`, with the store-error policy applied.
    pub(crate) async fn decide(&self, cache: &Cache, key: &CounterKey, now: u64) -> Outcome {
        let quota = self.config.quota;
        let policy = self.config.on_store_error;
        if !self.failures.skip_store(now) {
            match limiter::hit_cache(cache, &*self.config.clock, &self.cache_key(key), quota).await
            {
                Ok(decision) => {
                    self.failures.succeeded();
                    return Outcome::Decided(decision);
                }
                Err(error) => self.failures.failed(now, &error, policy.as_str()),
            }
        }
        match policy {
            StoreErrorPolicy::FallbackToMemory => Outcome::Decided(self.memory.hit(key, quota)),
            StoreErrorPolicy::FailOpen => Outcome::Uncounted,
            StoreErrorPolicy::FailClosed => Outcome::Unavailable,
        }
    }

    /// The 429 for a rejected request: the hook's or the translated JSON, with headers.
    pub(crate) fn limited(
        &self,
        headers: &HeaderMap,
        decision: &Decision,
        now: u64,
    ) -> Response<Body> {
        let locale = self.locale(headers);
        let limited = response::limited(decision, now, locale, &self.config.catalogues);
        let mut response = match &self.config.on_limited {
            Some(hook) => hook(&limited),
            None => response::too_many_requests(&limited),
        };
        self.add_headers(response.headers_mut(), decision, now);
        response
    }

    /// Finishes an admitted request's response: this layer's headers, and for a request that
    /// matched no route the check for a layer placed outside the Router.
    pub(crate) fn finish<B>(
        &self,
        response: &mut Response<B>,
        decision: &Decision,
        now: u64,
        unmatched: bool,
    ) {
        if unmatched {
            key::check_unmatched_status(response.status());
        }
        self.add_headers(response.headers_mut(), decision, now);
    }

    pub(crate) fn add_headers(&self, headers: &mut HeaderMap, decision: &Decision, now: u64) {
        let config = &self.config;
        response::add_headers(
            headers,
            decision,
            now,
            config.quota.window,
            config.ietf_headers,
        );
    }

    pub(crate) fn locale(&self, headers: &HeaderMap) -> String {
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        self.config.catalogues.negotiate(accept, &self.fallback)
    }
}
