//! `ThrottleLayer`: the configuration, its setters, and `impl Layer`.

use std::{fmt, net::IpAddr, sync::Arc, time::Duration};

use axum::body::Body;
use http::Response;
use ipnet::IpNet;
use jtc_cache::{Cache, Clock, MonotonicClock};
use tower::Layer;

use crate::{
    Algorithm, Limited, RequestInfo, StoreErrorPolicy, Throttle,
    key::Identity,
    lang,
    limiter::Quota,
    response::OnLimited,
    shared::{Config, KeyFn, Shared},
};

/// Keys the in-process counters keep at most, unless told otherwise.
const DEFAULT_MEMORY_CAPACITY: u64 = 100_000;

/// Limits requests per client and route: `max_requests` per window.
///
/// Cheap to clone (an `Arc` inside); every clone and every service it makes share one set of
/// counters. Without [`with_cache`](Self::with_cache) the counters live in process memory;
/// with it they live in the cache, so every app instance sharing that Redis shares the limit.
///
/// ```
/// use jtc_throttle::{Algorithm, ThrottleLayer};
///
/// let login = ThrottleLayer::new(5, 60).name("login");
/// let api = ThrottleLayer::new(600, 60)
///     .algorithm(Algorithm::SlidingWindow)
///     .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
///     .ietf_headers(true);
/// ```
#[derive(Clone)]
#[must_use]
pub struct ThrottleLayer {
    pub(crate) shared: Arc<Shared>,
}

impl ThrottleLayer {
    /// At most `max_requests` per `window_secs` seconds (at least 1) per client and route,
    /// counted in process memory.
    pub fn new(max_requests: u64, window_secs: u64) -> Self {
        Self::per(max_requests, Duration::from_secs(window_secs.max(1)))
    }

    /// At most `max_requests` per `window` (at least 1 ms).
    pub fn per(max_requests: u64, window: Duration) -> Self {
        let config = Config {
            quota: Quota {
                limit: max_requests,
                window: window.max(Duration::from_millis(1)),
                algorithm: Algorithm::default(),
            },
            name: None,
            cache: None,
            identity: Identity::default(),
            key_fn: None,
            on_limited: None,
            on_store_error: StoreErrorPolicy::default(),
            ietf_headers: false,
            fallback_locale: lang::DEFAULT_LOCALE,
            memory_capacity: DEFAULT_MEMORY_CAPACITY,
            clock: Arc::new(MonotonicClock::new()),
        };
        Self {
            shared: Arc::new(Shared::new(config)),
        }
    }

    fn with(self, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.shared.config.clone();
        change(&mut config);
        Self {
            shared: Arc::new(Shared::new(config)),
        }
    }

    /// Counts in `cache` (file, Redis, Redis Cluster) instead of process memory: one atomic
    /// operation per request, shared by every instance that uses the same cache.
    pub fn with_cache(self, cache: Cache) -> Self {
        self.with(|c| c.cache = Some(cache))
    }

    /// Names the limiter; its counters are stored under `throttle:<name>:`. Layers with the
    /// same settings on one route need different names, or they count twice in one bucket.
    /// Default: derived from the limit and window (`60per60000ms`).
    pub fn name(self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.with(|c| c.name = Some(name))
    }

    /// The algorithm. Default: [`Algorithm::FixedWindow`].
    pub fn algorithm(self, algorithm: Algorithm) -> Self {
        self.with(|c| c.quota.algorithm = algorithm)
    }

    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers are believed. Default: none, so
    /// the socket peer is always the client.
    pub fn trusted_proxies(self, networks: impl IntoIterator<Item = IpNet>) -> Self {
        let networks: Vec<IpNet> = networks.into_iter().collect();
        self.with(|c| c.identity.trusted_proxies = networks)
    }

    /// Trusts one proxy address.
    pub fn trust_proxy(self, ip: IpAddr) -> Self {
        self.with(|c| c.identity.trusted_proxies.push(IpNet::from(ip)))
    }

    /// How many leading bits of an IPv6 address identify a client (0–128). Default: 64.
    pub fn ipv6_prefix(self, bits: u8) -> Self {
        self.with(|c| c.identity.ipv6_prefix = bits.min(128))
    }

    /// Counts requests under the key `key_fn` returns instead of client and route; `None`
    /// lets the request through uncounted (an allow-list). Default: client and route.
    pub fn key_fn(
        self,
        key_fn: impl Fn(&RequestInfo<'_>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        let key_fn: KeyFn = Arc::new(key_fn);
        self.with(|c| c.key_fn = Some(key_fn))
    }

    /// Builds the 429 response; the layer still adds the rate-limit headers. Default: JSON
    /// `{"error": <translated message>, "retry_after": <seconds>, "limit": <n>}`.
    pub fn on_limited(
        self,
        hook: impl Fn(&Limited) -> Response<Body> + Send + Sync + 'static,
    ) -> Self {
        let hook: OnLimited = Arc::new(hook);
        self.with(|c| c.on_limited = Some(hook))
    }

    /// What to do while the cache cannot be reached. Default:
    /// [`StoreErrorPolicy::FallbackToMemory`].
    pub fn on_store_error(self, policy: StoreErrorPolicy) -> Self {
        self.with(|c| c.on_store_error = policy)
    }

    /// Also sends the IETF draft `RateLimit-Policy` and `RateLimit` fields. Default: off.
    pub fn ietf_headers(self, enabled: bool) -> Self {
        self.with(|c| c.ietf_headers = enabled)
    }

    /// The locale of 429 bodies when `Accept-Language` names none we ship (`en`, `pt_BR`;
    /// `pt-BR` and `pt` work too). An unknown value keeps `en`. Default: `en`. Apps usually
    /// pass `APP_LOCALE` here.
    pub fn fallback_locale(self, locale: &str) -> Self {
        let locale = lang::supported(locale).unwrap_or(lang::DEFAULT_LOCALE);
        self.with(|c| c.fallback_locale = locale)
    }

    /// How many client keys the in-process counters hold at most (also the fallback store's
    /// size). When full, finished windows are dropped first, then the lightest counters.
    /// Default: 100,000.
    pub fn memory_capacity(self, keys: u64) -> Self {
        self.with(|c| c.memory_capacity = keys.max(1))
    }

    /// The clock for windows and the `X-RateLimit-Reset` header; tests pass a
    /// [`jtc_cache::ManualClock`]. Default: [`MonotonicClock`].
    pub fn clock(self, clock: impl Clock) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(clock);
        self.with(|c| c.clock = clock)
    }
}

impl fmt::Debug for ThrottleLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.shared.config;
        f.debug_struct("ThrottleLayer")
            .field("limit", &config.quota.limit)
            .field("window", &config.quota.window)
            .field("algorithm", &config.quota.algorithm)
            .field("prefix", &self.shared.prefix)
            .field("cache", &config.cache)
            .field("on_store_error", &config.on_store_error)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = Throttle<S>;

    fn layer(&self, inner: S) -> Throttle<S> {
        Throttle {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}
