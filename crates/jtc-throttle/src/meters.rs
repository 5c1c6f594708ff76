//! A limiter's metrics, through the [`metrics`](https://docs.rs/metrics) facade (cargo feature
//! `metrics`); without the feature every method here is empty and inlined away.
//!
//! | name | type | labels |
//! |---|---|---|
//! | `jtc_throttle_requests_total` | counter | `limiter`, `route`, `result` |
//! | `jtc_throttle_store_fallback_active` | gauge | `limiter` |
//!
//! `result` is `allowed`, `limited`, `store_error` (the store failed and the fail-open or
//! fail-closed policy answered) or `uncounted` (a method the layer skips, a key function that
//! says so, no limit at all). Under the fall-back-to-memory policy requests are still
//! `allowed`/`limited` — counted in memory — while the gauge reads 1. `route` is the matched
//! route template (`/users/{id}`), never the path, the client or a key: labels stay few, and
//! no personal data reaches a dashboard.

use http::Request;

/// `jtc_throttle_requests_total{limiter, route, result}`.
pub const REQUESTS: &str = "jtc_throttle_requests_total";
/// `jtc_throttle_store_fallback_active{limiter}`: 1 while a store-error policy is in force.
pub const STORE_FALLBACK_ACTIVE: &str = "jtc_throttle_store_fallback_active";

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allowed,
    Limited,
    StoreError,
    Uncounted,
}

impl Verdict {
    /// Allowed or limited, as the decision says.
    #[inline]
    pub(crate) fn of(decision: &crate::Decision) -> Self {
        if decision.allowed {
            Self::Allowed
        } else {
            Self::Limited
        }
    }

    #[cfg(feature = "metrics")]
    const ALL: [Verdict; 4] = [
        Verdict::Allowed,
        Verdict::Limited,
        Verdict::StoreError,
        Verdict::Uncounted,
    ];

    #[cfg(feature = "metrics")]
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Limited => "limited",
            Verdict::StoreError => "store_error",
            Verdict::Uncounted => "uncounted",
        }
    }
}

/// The metric handles of one limiter.
#[derive(Debug, Default)]
pub(crate) struct Meters {
    #[cfg(feature = "metrics")]
    on: Option<on::Handles>,
}

/// One route's request counters, looked up once per request.
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteMeter {
    #[cfg(feature = "metrics")]
    counters: Option<std::sync::Arc<on::RouteCounters>>,
}

#[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self, unused_variables))]
impl RouteMeter {
    /// Counts one request of this route.
    #[inline]
    pub(crate) fn count(&self, verdict: Verdict) {
        #[cfg(feature = "metrics")]
        if let Some(counters) = &self.counters {
            counters.0[verdict as usize].increment(1);
        }
    }
}

#[cfg_attr(not(feature = "metrics"), allow(clippy::unused_self, unused_variables))]
impl Meters {
    /// The handles of the limiter `name`.
    pub(crate) fn new(name: &str) -> Self {
        #[cfg(feature = "metrics")]
        return Self {
            on: Some(on::Handles::new(name)),
        };
        #[cfg(not(feature = "metrics"))]
        Self {}
    }

    /// The counters of `request`'s route.
    #[inline]
    pub(crate) fn route<B>(&self, request: &Request<B>) -> RouteMeter {
        #[cfg(feature = "metrics")]
        if let Some(on) = &self.on {
            return RouteMeter {
                counters: Some(on.route(crate::key::route(request).as_str())),
            };
        }
        RouteMeter::default()
    }

    /// Whether a store-error policy is in force.
    pub(crate) fn fallback(&self, active: bool) {
        #[cfg(feature = "metrics")]
        if let Some(on) = &self.on {
            on.fallback(active);
        }
    }
}

#[cfg(feature = "metrics")]
mod on {
    use std::sync::{Arc, Once, OnceLock};

    use ::metrics::{Counter, Gauge, SharedString, Unit};
    use dashmap::DashMap;

    use super::{REQUESTS, STORE_FALLBACK_ACTIVE, Verdict};

    #[derive(Debug)]
    pub(super) struct RouteCounters(pub(super) [Counter; 4]);

    #[derive(Debug)]
    pub(super) struct Handles {
        limiter: SharedString,
        routes: DashMap<String, Arc<RouteCounters>, ahash::RandomState>,
        fallback: OnceLock<Gauge>,
    }

    impl Handles {
        pub(super) fn new(name: &str) -> Self {
            Self {
                limiter: SharedString::from(name.to_owned()),
                routes: DashMap::default(),
                fallback: OnceLock::new(),
            }
        }

        /// A route's counters: registered with the recorder on its first request.
        pub(super) fn route(&self, route: &str) -> Arc<RouteCounters> {
            if let Some(counters) = self.routes.get(route) {
                return Arc::clone(&counters);
            }
            describe();
            let counters = Arc::new(RouteCounters(Verdict::ALL.map(|verdict| {
                ::metrics::counter!(
                    REQUESTS,
                    "limiter" => self.limiter.clone(),
                    "route" => route.to_owned(),
                    "result" => verdict.as_str()
                )
            })));
            Arc::clone(&self.routes.entry(route.to_owned()).or_insert(counters))
        }

        pub(super) fn fallback(&self, active: bool) {
            self.fallback
                .get_or_init(|| {
                    describe();
                    ::metrics::gauge!(STORE_FALLBACK_ACTIVE, "limiter" => self.limiter.clone())
                })
                .set(if active { 1.0 } else { 0.0 });
        }
    }

    /// Gives the recorder each metric's unit and help text, once per process.
    fn describe() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            ::metrics::describe_counter!(
                REQUESTS,
                Unit::Count,
                "Requests seen by a rate limiter, by route and result."
            );
            ::metrics::describe_gauge!(
                STORE_FALLBACK_ACTIVE,
                "1 while the limiter's store fails and its store-error policy is in force."
            );
        });
    }
}
