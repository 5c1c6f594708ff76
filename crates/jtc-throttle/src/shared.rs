//! What every service of one layer shares — the settings and the counters — and what it does
//! with them for each request: which limits apply, under which key, the 429 and the headers.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use jtc_cache::{Cache, Clock};

use crate::{
    Limits, RequestInfo, StoreErrorPolicy,
    key::{self, CounterKey, Identity},
    lang::{self, Catalogues},
    limiter::{Counters, Decision, Plan},
    pages::{Pages, number},
    response::{self, OnLimited, OnUnavailable, Repeat429},
};

/// Numbers the layers built in this process, so that what a thread keeps of one layer's
/// answers (see [`Repeat429`]) is never taken for another's.
static LAYERS: AtomicU64 = AtomicU64::new(0);

/// A custom key: what to count a request under, or `None` to let it through uncounted.
pub(crate) type KeyFn = Arc<dyn Fn(&RequestInfo<'_>) -> Option<String> + Send + Sync>;
/// Limits decided per request.
pub(crate) type LimitsFn = Arc<dyn Fn(&RequestInfo<'_>) -> Limits + Send + Sync>;

/// Where a layer's limits come from.
#[derive(Clone)]
pub(crate) enum Source {
    /// The same for every request, prepared once.
    Fixed(Arc<Plan>),
    /// Decided per request.
    Dynamic(LimitsFn),
}

/// The settings, as the setters leave them.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) limits: Source,
    pub(crate) name: Option<String>,
    pub(crate) cache: Option<Cache>,
    pub(crate) identity: Identity,
    pub(crate) key_fn: Option<KeyFn>,
    pub(crate) methods: Option<Vec<Method>>,
    pub(crate) on_limited: Option<OnLimited>,
    pub(crate) on_unavailable: Option<OnUnavailable>,
    pub(crate) on_store_error: StoreErrorPolicy,
    pub(crate) deny_cache: bool,
    pub(crate) ietf_headers: bool,
    pub(crate) fallback_locale: String,
    pub(crate) catalogues: Catalogues,
    pub(crate) memory_capacity: u64,
    pub(crate) clock: Arc<dyn Clock>,
}

/// What one request is counted against, and under which default key.
pub(crate) struct Counting {
    /// The limits decided for this request; `None`: the layer's fixed limits.
    pub(crate) dynamic: Option<Arc<Plan>>,
    pub(crate) key: CounterKey,
}

/// What every service of one layer shares: the settings and the counters.
pub(crate) struct Shared {
    /// This layer's number among the layers of the process.
    id: u64,
    pub(crate) config: Config,
    pub(crate) counters: Arc<Counters>,
    /// The answers of a rejection, per locale.
    pages: Pages,
    /// The fixed limits' `RateLimit-Policy` value and, with one limit, its
    /// `X-RateLimit-Limit` value: built once.
    fixed_policy: Option<HeaderValue>,
    fixed_limit: Option<(u64, HeaderValue)>,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| default_name(&config.limits));
        let fallback = config
            .catalogues
            .supported(&config.fallback_locale)
            .unwrap_or_else(|| lang::DEFAULT_LOCALE.to_owned());
        let fixed = match &config.limits {
            Source::Fixed(plan) => Some(plan),
            Source::Dynamic(_) => None,
        };
        let fixed_policy = fixed.and_then(|plan| HeaderValue::from_str(&plan.policy_header()).ok());
        let fixed_limit = match fixed.map(|plan| plan.limits.as_slice()) {
            Some([limit]) => {
                let max = match limit.algorithm_used() {
                    crate::Algorithm::TokenBucket => limit.burst_size(),
                    _ => limit.max(),
                };
                Some((max, number(max)))
            }
            _ => None,
        };
        let counters = Counters::new(
            config.cache.clone(),
            format!("throttle:{name}:"),
            Arc::clone(&config.clock),
            config.memory_capacity,
            config.deny_cache,
            config.on_store_error,
        );
        Self {
            id: LAYERS.fetch_add(1, Ordering::Relaxed),
            counters: Arc::new(counters),
            pages: Pages::new(&config.catalogues, &fallback),
            fixed_policy,
            fixed_limit,
            config,
        }
    }

    /// The limits `counting` is counted against.
    pub(crate) fn plan<'a>(&'a self, counting: &'a Counting) -> &'a Plan {
        match (&counting.dynamic, &self.config.limits) {
            (Some(plan), _) | (None, Source::Fixed(plan)) => plan,
            (None, Source::Dynamic(_)) => unreachable!("a dynamic layer always decides a plan"),
        }
    }

    /// What `request` is counted against and under which key, or `None` when it passes
    /// uncounted (a method the layer skips, a custom key that says so, no limit at all).
    pub(crate) fn counting<B>(&self, request: &Request<B>) -> Option<Counting> {
        let config = &self.config;
        if let Some(methods) = &config.methods
            && !methods.contains(request.method())
        {
            return None;
        }
        let client = config.identity.client(request);
        let route = key::route(request);
        let (dynamic, key) = match (&config.limits, &config.key_fn) {
            (Source::Fixed(_), None) => (None, CounterKey::Request(client, route)),
            (limits, key_fn) => {
                let client_text = client.to_string();
                let info = RequestInfo {
                    client: &client_text,
                    route: route.as_str(),
                    method: request.method(),
                    uri: request.uri(),
                    headers: request.headers(),
                    extensions: request.extensions(),
                };
                let custom = key_fn.as_ref().map(|key_fn| key_fn(&info));
                let dynamic = match limits {
                    Source::Fixed(_) => None,
                    Source::Dynamic(limits_fn) => Some(Arc::new(Plan::new(limits_fn(&info)))),
                };
                let key = match custom {
                    Some(custom) => CounterKey::custom(&custom?),
                    None => CounterKey::Request(client, route),
                };
                (dynamic, key)
            }
        };
        let counting = Counting { dynamic, key };
        (!self.plan(&counting).limits.is_unlimited()).then_some(counting)
    }

    /// Tells the log, at debug level, what was decided: allowed, remaining and the tightest
    /// limit's name (never the key or the client: they may be personal data).
    pub(crate) fn trace(&self, counting: &Counting, decision: &Decision) {
        tracing::debug!(
            limiter = %self.counters.prefix.trim_end_matches(':'),
            allowed = decision.allowed,
            remaining = decision.remaining,
            policy = %self
                .plan(counting)
                .limit(decision.policy)
                .map(crate::Limit::policy_name)
                .unwrap_or_default(),
            "jtc-throttle: decision"
        );
    }

    /// The 429 for a rejected request: the hook's or the translated JSON, with headers.
    pub(crate) fn limited<B>(
        &self,
        request: &Request<B>,
        counting: &Counting,
        decision: &Decision,
    ) -> Response<Body> {
        let page = self
            .pages
            .for_request(request.headers(), &self.config.catalogues);
        let plan = self.plan(counting);
        if let Some(hook) = &self.config.on_limited {
            let context = self.context(request, counting, plan, decision);
            let mut response = hook(&response::limited(decision, context, page));
            self.add_headers(response.headers_mut(), plan, decision);
            return response;
        }
        let make = || {
            let (mut response, body) = response::too_many_requests(page, decision);
            self.add_headers(response.headers_mut(), plan, decision);
            (response, body)
        };
        // The IETF fields name the plan's limits: a plan decided per request may name others.
        if self.config.ietf_headers && counting.dynamic.is_some() {
            return make().0;
        }
        Repeat429::new(self.id, page, decision).answer(make)
    }

    /// Who and what a rejection is about, for the `on_limited` hook.
    fn context<B>(
        &self,
        request: &Request<B>,
        counting: &Counting,
        plan: &Plan,
        decision: &Decision,
    ) -> response::Context {
        let limit = plan.limit(decision.policy);
        let key = match limit.and_then(|l| l.key()) {
            Some(own) => own.to_owned(),
            None => match &counting.key {
                CounterKey::Request(client, route) => format!("{client}:{}", route.as_str()),
                CounterKey::Custom(custom) => custom.clone(),
            },
        };
        response::Context {
            key,
            client: match &counting.key {
                CounterKey::Request(client, _) => client.to_string(),
                CounterKey::Custom(_) => self.config.identity.client(request).to_string(),
            },
            route: key::route(request).as_str().to_owned(),
            policy: limit.map(crate::Limit::policy_name).unwrap_or_default(),
        }
    }

    /// The answer of the fail-closed policy: the hook's, or a translated 503.
    pub(crate) fn unavailable(&self, headers: &HeaderMap) -> Response<Body> {
        let page = self.pages.for_request(headers, &self.config.catalogues);
        match &self.config.on_unavailable {
            Some(hook) => hook(&response::unavailable(page)),
            None => response::service_unavailable(page),
        }
    }

    /// Finishes an admitted request's response: this layer's headers, and for a request that
    /// matched no route the check for a layer placed outside the Router.
    pub(crate) fn finish<B>(
        &self,
        response: &mut Response<B>,
        dynamic: Option<&Plan>,
        decision: &Decision,
        unmatched: bool,
    ) {
        if unmatched {
            key::check_unmatched_status(response.status());
        }
        let plan = match (dynamic, &self.config.limits) {
            (Some(plan), _) => plan,
            (None, Source::Fixed(fixed)) => fixed,
            (None, Source::Dynamic(_)) => return,
        };
        self.add_headers(response.headers_mut(), plan, decision);
    }

    fn add_headers(&self, headers: &mut HeaderMap, plan: &Plan, decision: &Decision) {
        let limit = self
            .fixed_limit
            .as_ref()
            .filter(|(max, _)| *max == decision.limit)
            .map(|(_, value)| value);
        response::add_headers(headers, decision, limit);
        if self.config.ietf_headers {
            let policy = match (&self.fixed_policy, &self.config.limits) {
                (Some(policy), Source::Fixed(fixed)) if std::ptr::eq(&**fixed, plan) => {
                    Some(policy.clone())
                }
                _ => HeaderValue::from_str(&plan.policy_header()).ok(),
            };
            let name = plan
                .limit(decision.policy)
                .map(crate::Limit::policy_name)
                .unwrap_or_default();
            response::add_ietf_headers(headers, policy, &name, decision);
        }
    }
}

/// The name of a layer that was not given one: `<max>per<window ms>ms` of each fixed limit
/// (`60per60000ms`), `dynamic` for limits decided per request.
fn default_name(limits: &Source) -> String {
    match limits {
        Source::Fixed(plan) => plan
            .limits
            .iter()
            .map(|l| format!("{}per{}ms", l.max(), l.window().as_millis()))
            .collect::<Vec<_>>()
            .join("+"),
        Source::Dynamic(_) => "dynamic".to_owned(),
    }
}
