//! A hello-world server for the HTTP load benchmark (`scripts/bench-http`), on **one** Tokio
//! worker thread (the script pins it to one core and the load generator to the other), in
//! one of these modes:
//!
//! | mode | what guards the route |
//! |---|---|
//! | `plain` | nothing |
//! | `layer` | a tower layer that does nothing: what wrapping the routes costs any middleware |
//! | `headers` | a layer that only adds the two `X-RateLimit-*` headers, fixed values: what sending them costs any limiter |
//! | `headers-keyed` | the same with one counter per client and route in a keyed concurrent map (DashMap with aHash, as the memory limiter keys its counters): the floor of a per-client limiter that sends a live count |
//! | `headers-windowed` | `headers-keyed` with a fixed window: the clock read once per request (`MonotonicClock`, the limiter's), and the key's window end and count in one word stepped by a compare-and-swap (as the memory limiter's fixed window is): the floor of a per-client fixed-window limiter that sends a live count — no expiry, no memory bound, no 429, no decision carried |
//! | `headers-counted` | the least any per-client limiter that sends a live count must do, with no keyed store: read the peer's address and the matched route (the key's parts), step one shared atomic counter, send the limit (fixed) and the remaining count (a number made per request, `HeaderValue::from`) |
//! | `fixed-429` | nothing, but the handler answers the very 429 a flooded `ThrottleLayer` sends (status, headers, JSON body; fixed values): a handler building that answer per request, for comparison with the layer's flood |
//! | `governor` | tower_governor with its headers on |
//! | `memory` | `ThrottleLayer` in process memory |
//! | `memory-flood` | the same, with a quota the first requests use up: every later one is a 429 |
//! | `incr` | a bare `from_fn` middleware doing one `INCR` per request on one multiplexed redis-rs connection: the floor of any Redis-backed limiter |
//! | `redis` | `ThrottleLayer` over `REDIS_URL` |
//! | `redis-flood` | the same, flooded (the local deny cache answers) |
//! | `static-4k` | a handler answering 4 KB of static bytes (`Cache-Control: public, max-age=3600`): the floor of a cached response |
//! | `static-4k-hit` | the same handler adding the three fields a hit carries (`ETag`, `Age`, `X-Cache`): a hit's exact bytes, the floor of a cached response over HTTP |
//! | `cached-4k` | the same handler behind `jtc_http::ResponseCacheLayer` on the array driver: every request after the first is a hit |
//! | `redis-get-4k` | a handler answering 4 KB it reads with one `GET` per request on a multiplexed redis-rs connection: the floor of a response cached in Redis |
//! | `cache-get-4k-redis` | a handler answering 4 KB it reads with one `Cache::get_bytes` per request on `RedisDriver` (`REDIS_URL`): the floor of a response cached through jtc's Redis driver |
//! | `cached-4k-redis` | the `static-4k` handler behind `ResponseCacheLayer` on `REDIS_URL` |
//! | `redis-two` | `ThrottleLayer::dynamic` with two limits over Redis |
//!
//! `cargo run --release --example bench_server -- MODE 127.0.0.1:8080`
//!
//! With `JTC_CALLS=N` the server does not listen: it calls the router `N` times in process
//! (`oneshot`, a peer address set as `axum::serve` sets it) and exits — for counting a
//! mode's instructions per request with `valgrind --tool=callgrind` (two runs with different
//! `N`: the difference over the difference in calls), which, unlike requests per second on a
//! shared VM, does not move from run to run.
//!
//! Pass-path modes get 8,000,000 requests a minute per client: far above what one run sends,
//! so each limiter does its full work on every request and none rejects, with header values of
//! a realistic width. Flood modes get 10 a minute.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::{Context, bail};
use axum::{
    Router,
    extract::{Request, State},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use http::HeaderValue;
use jtc_cache::{Cache, RedisDriver};
use jtc_throttle::{
    Limit, ThrottleLayer, X_RATELIMIT_LIMIT, X_RATELIMIT_REMAINING, X_RATELIMIT_RESET,
};

/// Requests per minute per client in the pass-path modes.
const QUOTA: u64 = 8_000_000;
/// Requests per minute per client in the flood modes.
const FLOOD_QUOTA: u64 = 10;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "plain".to_owned());
    let address = args.next().unwrap_or_else(|| "127.0.0.1:8080".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(&mode, &address))
}

async fn serve(mode: &str, address: &str) -> anyhow::Result<()> {
    let app = Router::new().route("/", get(|| async { "Hello, World!" }));
    let app = match mode {
        "plain" => app,
        "layer" => app.layer(tower::layer::layer_fn(|inner| PassThrough { inner })),
        "headers" => app.layer(tower::util::MapResponseLayer::new(with_fixed_headers)),
        "headers-keyed" => {
            let counters = Arc::new(KeyedCounters::default());
            app.layer(
                tower::ServiceBuilder::new()
                    .map_request(move |request| count_keyed(request, &counters))
                    .map_response(with_keyed_headers),
            )
        }
        "headers-windowed" => {
            let windows = Arc::new(Windows::default());
            app.layer(
                tower::ServiceBuilder::new()
                    .map_request(move |request| count_windowed(request, &windows))
                    .map_response(with_keyed_headers),
            )
        }
        "headers-counted" => {
            let remaining = Arc::new(AtomicU64::new(QUOTA));
            app.layer(
                tower::ServiceBuilder::new()
                    .map_request(read_key_parts)
                    .map_response(move |response| with_counted_headers(response, &remaining)),
            )
        }
        "fixed-429" => Router::new().route("/", get(|| async { fixed_429() })),
        "governor" => {
            let config = tower_governor::governor::GovernorConfigBuilder::default()
                .per_nanosecond(600)
                .burst_size(QUOTA as u32)
                .use_headers()
                .finish()
                .context("governor config")?;
            app.layer(tower_governor::GovernorLayer::new(config))
        }
        "memory" => app.layer(ThrottleLayer::new(QUOTA, 60)),
        "memory-flood" => app.layer(ThrottleLayer::new(FLOOD_QUOTA, 60)),
        "incr" => {
            let client = redis::Client::open(redis_url()?)?;
            let connection = client.get_multiplexed_async_connection().await?;
            app.layer(middleware::from_fn_with_state(connection, incr_per_request))
        }
        "redis" => app.layer(ThrottleLayer::new(QUOTA, 60).with_cache(redis_cache().await?)),
        "redis-flood" => {
            app.layer(ThrottleLayer::new(FLOOD_QUOTA, 60).with_cache(redis_cache().await?))
        }
        "redis-two" => {
            let layer = ThrottleLayer::dynamic(|_| {
                vec![Limit::per_second(QUOTA), Limit::per_minute(QUOTA)].into()
            });
            app.layer(layer.with_cache(redis_cache().await?))
        }
        "static-4k" => Router::new().route("/", get(|| async { page_4k() })),
        "static-4k-hit" => Router::new().route("/", get(|| async { page_4k_as_hit() })),
        "cached-4k" => Router::new().route("/", get(|| async { page_4k() })).layer(
            jtc_http::ResponseCacheLayer::new(Cache::new(jtc_cache::ArrayDriver::new())),
        ),
        "redis-get-4k" => {
            let client = redis::Client::open(redis_url()?)?;
            let mut connection = client.get_multiplexed_async_connection().await?;
            let () = redis::cmd("SET")
                .arg("bench:page")
                .arg(PAGE_4K)
                .query_async(&mut connection)
                .await?;
            Router::new()
                .route("/", get(page_from_redis))
                .with_state(connection)
        }
        "cache-get-4k-redis" => {
            // Uncompressed, as the response cache stores its entries: the 4 KB cross the
            // network on every read, as they do for the floor and the cached page.
            let cache = redis_cache().await?.without_compression();
            cache
                .put_bytes("cached-page", PAGE_4K, std::time::Duration::from_secs(3600))
                .await?;
            Router::new()
                .route("/", get(page_from_cache))
                .with_state(cache)
        }
        "cached-4k-redis" => Router::new()
            .route("/", get(|| async { page_4k() }))
            .layer(jtc_http::ResponseCacheLayer::new(redis_cache().await?)),
        other => bail!(
            "unknown mode {other:?}; expected plain, layer, headers, headers-counted, headers-keyed, headers-windowed, static-4k, \
             static-4k-hit, cached-4k, cache-get-4k-redis, \
             redis-get-4k, cached-4k-redis, fixed-429, governor, \
             memory, memory-flood, incr, redis, redis-flood or redis-two"
        ),
    };
    if let Ok(calls) = std::env::var("JTC_CALLS") {
        let calls: u64 = calls.parse().context("JTC_CALLS: a number of calls")?;
        return call_in_process(app, calls).await;
    }
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("listening on http://{} ({mode})", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

/// Calls `app` `calls` times as `axum::serve` would (handlers compiled into routes once, a
/// peer address in each request), checking every answer is a 200 or a 429.
async fn call_in_process(app: Router, calls: u64) -> anyhow::Result<()> {
    use tower::ServiceExt;
    let app: Router = app.with_state(());
    let peer: SocketAddr = "203.0.113.9:50000".parse()?;
    for _ in 0..calls {
        let mut request = Request::get("/").body(axum::body::Body::empty())?;
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let response = app.clone().oneshot(request).await?;
        let status = response.status().as_u16();
        if status != 200 && status != 429 {
            bail!("the router answered {status}");
        }
        std::hint::black_box(response);
    }
    Ok(())
}

/// A middleware that only calls the service it wraps.
#[derive(Clone)]
struct PassThrough<S> {
    inner: S,
}

impl<S: tower::Service<Request>> tower::Service<Request> for PassThrough<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.inner.call(request)
    }
}

fn redis_url() -> anyhow::Result<String> {
    std::env::var("REDIS_URL").context("REDIS_URL is needed in the Redis modes")
}

async fn redis_cache() -> anyhow::Result<Cache> {
    Ok(Cache::new(
        RedisDriver::connect(&redis_url()?, "bench:").await?,
    ))
}

/// The 4 KB page of the response-cache modes.
const PAGE_4K: &[u8] = &[b'x'; 4096];

fn page_4k() -> Response {
    (
        [(http::header::CACHE_CONTROL, "public, max-age=3600")],
        bytes::Bytes::from_static(PAGE_4K),
    )
        .into_response()
}

/// `static-4k-hit`: the page with the fields a cache hit adds, byte for byte what the
/// response cache sends for it.
fn page_4k_as_hit() -> Response {
    (
        [
            (http::header::CACHE_CONTROL, "public, max-age=3600"),
            (http::header::ETAG, "\"f2c16813a782b7a1bf6d00f2a6ff2d5e\""),
            (http::header::AGE, "0"),
            (http::HeaderName::from_static("x-cache"), "hit"),
        ],
        bytes::Bytes::from_static(PAGE_4K),
    )
        .into_response()
}

/// `redis-get-4k`: the page read from Redis, one `GET` per request.
async fn page_from_redis(
    State(mut connection): State<redis::aio::MultiplexedConnection>,
) -> Response {
    let page: redis::RedisResult<Vec<u8>> = redis::cmd("GET")
        .arg("bench:page")
        .query_async(&mut connection)
        .await;
    match page {
        Ok(page) => (
            [(http::header::CACHE_CONTROL, "public, max-age=3600")],
            page,
        )
            .into_response(),
        Err(_) => http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// `cache-get-4k-redis`: the page read with one `Cache::get_bytes` per request.
async fn page_from_cache(State(cache): State<Cache>) -> Response {
    match cache.get_bytes("cached-page").await {
        Ok(Some(page)) => (
            [(http::header::CACHE_CONTROL, "public, max-age=3600")],
            page,
        )
            .into_response(),
        _ => http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The floor: one `INCR` per request on a shared multiplexed connection, nothing else.
async fn incr_per_request(
    State(mut connection): State<redis::aio::MultiplexedConnection>,
    request: Request,
    next: Next,
) -> Response {
    let count: redis::RedisResult<i64> = redis::cmd("INCR")
        .arg("bench:floor")
        .query_async(&mut connection)
        .await;
    match count {
        Ok(_) => next.run(request).await,
        Err(_) => http::StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

/// The two headers every pass-path limiter here sends, with the values they have at the start
/// of a run and nothing counted: the floor of a limiter that sends them.
fn with_fixed_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from_static("8000000"));
    headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from_static("7999999"));
    response
}

/// The parts of a limiter's key, read as a limiter reads them (and kept from being optimised
/// away).
fn read_key_parts(request: Request) -> Request {
    std::hint::black_box(
        request
            .extensions()
            .get::<axum::extract::ConnectInfo<SocketAddr>>(),
    );
    std::hint::black_box(request.extensions().get::<axum::extract::MatchedPath>());
    request
}

/// The two headers with a live count: one atomic step, one number made into a header value.
fn with_counted_headers(mut response: Response, remaining: &AtomicU64) -> Response {
    let left = remaining.fetch_sub(1, Ordering::Relaxed);
    let headers = response.headers_mut();
    headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from_static("8000000"));
    headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(left));
    response
}

/// One count per client address and route; the route is known by its template's address
/// (a limiter that interned its routes could key them so), so no string is compared.
type KeyedCounters = dashmap::DashMap<(std::net::IpAddr, usize), AtomicU64, ahash::RandomState>;

thread_local! {
    /// The count the request side of `headers-keyed` took, for its response side (the
    /// benchmark server runs on one thread, and each response follows its request).
    static LEFT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The key of the floor modes: the peer's address and the route, the route known by its
/// template's address (a limiter that interned its routes could key them so), so no string is
/// compared.
#[inline(always)]
fn floor_key(request: &Request) -> (std::net::IpAddr, usize) {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or(0, |path| path.as_str().as_ptr() as usize);
    (
        peer.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        route,
    )
}

/// `headers-keyed`, the request side: the key's parts, then one step of the key's counter.
fn count_keyed(request: Request, counters: &KeyedCounters) -> Request {
    let key = floor_key(&request);
    let left = match counters.get(&key) {
        Some(counter) => counter.fetch_sub(1, Ordering::Relaxed),
        None => counters
            .entry(key)
            .or_insert_with(|| AtomicU64::new(QUOTA))
            .fetch_sub(1, Ordering::Relaxed),
    };
    LEFT.set(left);
    request
}

/// One fixed window per client address and route (keyed as `headers-keyed` keys), and the
/// clock it is read by.
#[derive(Default)]
struct Windows {
    words: dashmap::DashMap<(std::net::IpAddr, usize), AtomicU64, ahash::RandomState>,
    clock: jtc_cache::MonotonicClock,
}

/// `headers-windowed`'s window: the end (ms) in the high bits, the count in the low 24.
const WINDOW_MS: u64 = 60_000;
const COUNT_BITS: u32 = 24;

/// `headers-windowed`, the request side: the key's parts, the clock, one step of the key's
/// window (a new window when the last one ended), its remaining count for the response side.
fn count_windowed(request: Request, windows: &Windows) -> Request {
    use jtc_cache::Clock;
    let key = floor_key(&request);
    let now = windows.clock.now_ms();
    let step = |word: &AtomicU64| {
        let mut seen = word.load(Ordering::Acquire);
        loop {
            let (end, count) = (seen >> COUNT_BITS, seen & ((1 << COUNT_BITS) - 1));
            let (end, count) = if now >= end {
                (now + WINDOW_MS, 0)
            } else {
                (end, count)
            };
            let next = (end << COUNT_BITS) | (count + 1);
            match word.compare_exchange_weak(seen, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return QUOTA.saturating_sub(count + 1),
                Err(actual) => seen = actual,
            }
        }
    };
    let left = match windows.words.get(&key) {
        Some(word) => step(&word),
        None => step(&windows.words.entry(key).or_default()),
    };
    LEFT.set(left);
    request
}

/// `headers-keyed` and `headers-windowed`, the response side.
fn with_keyed_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from_static("8000000"));
    headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(LEFT.get()));
    response
}

/// The answer of a flooded `ThrottleLayer::new(10, 60)` in English (the message of
/// `jtc-throttle`'s `lang/en.json`), byte for byte but for the figures' values, with no
/// limiter: the floor of the flood modes.
fn fixed_429() -> Response {
    const BODY: &str = "{\"error\":\"Too many requests. Please slow down and try again later.\",\"retry_after\":60,\"limit\":10}";
    let mut response = (http::StatusCode::TOO_MANY_REQUESTS, BODY).into_response();
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::CONTENT_LANGUAGE,
        HeaderValue::from_static("en"),
    );
    headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from_static("0"));
    headers.insert(X_RATELIMIT_LIMIT, HeaderValue::from_static("10"));
    headers.insert(X_RATELIMIT_RESET, HeaderValue::from_static("1796228853"));
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("60"));
    response
}
