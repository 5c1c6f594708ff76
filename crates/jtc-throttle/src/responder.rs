//! The responder: everything a layer answers with — the 429 (the app's hook, or the
//! translated JSON, copied while a flood repeats it), the 503 of the fail-closed policy, and
//! the rate-limit headers of admitted responses. Built once per layer from its settings; the
//! service hands it a decision and the request, and nothing else builds a response.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Request, Response};

use crate::{
    key::{self, CounterKey, Identity},
    lang::{self, Catalogues},
    limiter::{Decision, Plan},
    pages::{Pages, number},
    response::{self, OnLimited, OnUnavailable, Repeat429},
    settings::{Config, Counting, Source},
};

/// Numbers the layers built in this process, so that what a thread keeps of one layer's
/// answers (see [`Repeat429`]) is never taken for another's.
static LAYERS: AtomicU64 = AtomicU64::new(0);

/// A layer's answers; see the module docs.
pub(crate) struct Responder {
    /// This layer's number among the layers of the process.
    id: u64,
    /// The answers of a rejection, per locale.
    pages: Pages,
    catalogues: Catalogues,
    on_limited: Option<OnLimited>,
    on_unavailable: Option<OnUnavailable>,
    ietf_headers: bool,
    /// Who the client is, for the hook's context of a request counted under its own key.
    identity: Identity,
    /// The layer's fixed limits (none for a dynamic layer); their `RateLimit-Policy` value
    /// and, with one limit, its `X-RateLimit-Limit` value: built once.
    fixed: Option<Arc<Plan>>,
    fixed_policy: Option<HeaderValue>,
    fixed_limit: Option<(u64, HeaderValue)>,
}

impl Responder {
    pub(crate) fn new(config: &Config) -> Self {
        let fallback = config
            .catalogues
            .supported(&config.fallback_locale)
            .unwrap_or_else(|| lang::DEFAULT_LOCALE.to_owned());
        let fixed = match &config.limits {
            Source::Fixed(plan) => Some(Arc::clone(plan)),
            Source::Dynamic(_) => None,
        };
        let fixed_policy = fixed
            .as_ref()
            .and_then(|plan| HeaderValue::from_str(&plan.policy_header()).ok());
        let fixed_limit = match fixed.as_ref().map(|plan| plan.limits.as_slice()) {
            Some([limit]) => {
                let max = match limit.algorithm_used() {
                    crate::Algorithm::TokenBucket => limit.burst_size(),
                    _ => limit.max(),
                };
                Some((max, number(max)))
            }
            _ => None,
        };
        Self {
            id: LAYERS.fetch_add(1, Ordering::Relaxed),
            pages: Pages::new(&config.catalogues, &fallback),
            catalogues: config.catalogues.clone(),
            on_limited: config.on_limited.clone(),
            on_unavailable: config.on_unavailable.clone(),
            ietf_headers: config.ietf_headers,
            identity: config.identity.clone(),
            fixed,
            fixed_policy,
            fixed_limit,
        }
    }

    /// The 429 for a rejected request: the hook's or the translated JSON, with headers.
    pub(crate) fn limited<B>(
        &self,
        request: &Request<B>,
        counting: &Counting,
        plan: &Plan,
        decision: &Decision,
    ) -> Response<Body> {
        let page = self.pages.for_request(request.headers(), &self.catalogues);
        if let Some(hook) = &self.on_limited {
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
        if self.ietf_headers && counting.dynamic.is_some() {
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
                CounterKey::Custom(_) => self.identity.client(request).to_string(),
            },
            route: key::route(request).as_str().to_owned(),
            policy: limit.map(crate::Limit::policy_name).unwrap_or_default(),
        }
    }

    /// The answer of the fail-closed policy: the hook's, or a translated 503.
    pub(crate) fn unavailable(&self, headers: &HeaderMap) -> Response<Body> {
        let page = self.pages.for_request(headers, &self.catalogues);
        match &self.on_unavailable {
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
        let plan = match (dynamic, &self.fixed) {
            (Some(plan), _) => plan,
            (None, Some(fixed)) => fixed,
            (None, None) => return,
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
        if self.ietf_headers {
            let policy = match (&self.fixed_policy, &self.fixed) {
                (Some(policy), Some(fixed)) if std::ptr::eq(&**fixed, plan) => Some(policy.clone()),
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
