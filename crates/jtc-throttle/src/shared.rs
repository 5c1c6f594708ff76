//! What every service of one layer shares — the settings, the limiter and the responder — and
//! how the settings are read for each request: which limits apply, under which key.

use std::sync::Arc;

use http::Request;

use crate::{
    RequestInfo,
    key::{self, CounterKey},
    limiter::{Counters, Decision, Plan},
    responder::Responder,
    settings::{Config, Counting, Source},
};

/// What every service of one layer shares: the settings, the limiter (its counters) and the
/// responder (its answers).
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) counters: Arc<Counters>,
    pub(crate) responder: Responder,
}

impl Shared {
    pub(crate) fn new(config: Config) -> Self {
        let name = config
            .name
            .clone()
            .unwrap_or_else(|| default_name(&config.limits));
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
            responder: Responder::new(&config),
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
