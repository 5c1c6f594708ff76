//! What every service of one layer shares — the settings and the counters — and what it does
//! with them for each request: which limits apply, under which key, the 429 and the headers.

use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use jtc_cache::{Cache, Clock};

use crate::{
    Limits, RequestInfo, StoreErrorPolicy,
    key::{self, CounterKey, Identity},
    lang::{self, Catalogues},
    limiter::{Counters, Decision, Plan},
    response::{self, OnLimited, OnUnavailable},
};

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
    pub(crate) plan: Arc<Plan>,
    pub(crate) key: CounterKey,
}

/// What every service of one layer shares: the settings and the counters.
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) counters: Arc<Counters>,
    /// `config.fallback_locale` as one of the catalogues names it (`en` when none does).
    fallback: String,
    /// The `RateLimit-Policy` value of fixed limits, built once.
    fixed_policy: Option<HeaderValue>,
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
        let fixed_policy = match &config.limits {
            Source::Fixed(plan) => HeaderValue::from_str(&plan.policy_header()).ok(),
            Source::Dynamic(_) => None,
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
            counters: Arc::new(counters),
            fallback,
            fixed_policy,
            config,
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
        let (plan, key) = match (&config.limits, &config.key_fn) {
            (Source::Fixed(plan), None) => (Arc::clone(plan), CounterKey::Request(client, route)),
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
                let plan = match limits {
                    Source::Fixed(plan) => Arc::clone(plan),
                    Source::Dynamic(limits_fn) => Arc::new(Plan::new(limits_fn(&info))),
                };
                let key = match custom {
                    Some(custom) => CounterKey::Custom(custom?),
                    None => CounterKey::Request(client, route),
                };
                (plan, key)
            }
        };
        (!plan.limits.is_unlimited()).then_some(Counting { plan, key })
    }

    /// The 429 for a rejected request: the hook's or the translated JSON, with headers.
    pub(crate) fn limited<B>(
        &self,
        request: &Request<B>,
        counting: &Counting,
        decision: &Decision,
    ) -> Response<Body> {
        let headers = request.headers();
        let locale = self.locale(headers);
        let limit = counting.plan.limit(decision.policy);
        let key = match limit.and_then(|l| l.key()) {
            Some(own) => own.to_owned(),
            None => match &counting.key {
                CounterKey::Request(client, route) => format!("{client}:{}", route.as_str()),
                CounterKey::Custom(custom) => custom.clone(),
            },
        };
        let context = response::Context {
            key,
            client: match &counting.key {
                CounterKey::Request(client, _) => client.to_string(),
                CounterKey::Custom(_) => self.config.identity.client(request).to_string(),
            },
            route: key::route(request).as_str().to_owned(),
            policy: limit.map(crate::Limit::policy_name).unwrap_or_default(),
        };
        let limited = response::limited(decision, context, locale, &self.config.catalogues);
        let mut response = match &self.config.on_limited {
            Some(hook) => hook(&limited),
            None => response::too_many_requests(&limited),
        };
        self.add_headers(response.headers_mut(), &counting.plan, decision);
        response
    }

    /// The answer of the fail-closed policy: the hook's, or a translated 503.
    pub(crate) fn unavailable(&self, headers: &HeaderMap) -> Response<Body> {
        let locale = self.locale(headers);
        let unavailable = response::unavailable(locale, &self.config.catalogues);
        match &self.config.on_unavailable {
            Some(hook) => hook(&unavailable),
            None => response::service_unavailable(&unavailable),
        }
    }

    /// Finishes an admitted request's response: this layer's headers, and for a request that
    /// matched no route the check for a layer placed outside the Router.
    pub(crate) fn finish<B>(
        &self,
        response: &mut Response<B>,
        plan: &Plan,
        decision: &Decision,
        unmatched: bool,
    ) {
        if unmatched {
            key::check_unmatched_status(response.status());
        }
        self.add_headers(response.headers_mut(), plan, decision);
    }

    fn add_headers(&self, headers: &mut HeaderMap, plan: &Plan, decision: &Decision) {
        response::add_headers(headers, decision);
        if self.config.ietf_headers {
            let policy = self
                .fixed_policy
                .clone()
                .or_else(|| HeaderValue::from_str(&plan.policy_header()).ok());
            let name = plan
                .limit(decision.policy)
                .map(crate::Limit::policy_name)
                .unwrap_or_default();
            response::add_ietf_headers(headers, policy, &name, decision);
        }
    }

    pub(crate) fn locale(&self, headers: &HeaderMap) -> String {
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        self.config.catalogues.negotiate(accept, &self.fallback)
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
