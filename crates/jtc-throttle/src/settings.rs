//! A layer's settings as its setters leave them, and what they decide for one request
//! ([`Counting`]). Read by the shared state and the responder; imports neither.

use std::sync::Arc;

use http::Method;
use jtc_cache::{Cache, Clock};

use crate::{
    Limits, RequestInfo, StoreErrorPolicy,
    key::{CounterKey, Identity},
    lang::Catalogues,
    limiter::Plan,
    response::{OnLimited, OnUnavailable},
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
    /// The limits decided for this request; `None`: the layer's fixed limits.
    pub(crate) dynamic: Option<Arc<Plan>>,
    pub(crate) key: CounterKey,
}
