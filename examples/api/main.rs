//! The example API: caching and rate limiting in one small Axum app.
//!
//! ```sh
//! cargo run --release -p jtc-examples --example api                   # file cache, no servers
//! CACHE_DRIVER=redis cargo run --release -p jtc-examples --example api --features redis
//! ```
//!
//! - `GET /users/{id}`: a user through `cache.remember` (the loader takes 300 ms on purpose,
//!   so a cache hit is visibly faster; the `X-Cache` header says which it was). The first
//!   page of users (1–10) and `config:app` are warmed at start-up (`jtc_cache::warm`), one
//!   instance of a fleet loading each entry
//! - `GET /ready`: 503 with the warming's progress as JSON until it has finished, then 200
//! - `PUT /users/{id}`: forgets the cached user
//! - `GET /reports/{id}`: a slow report (300 ms) sent with `Cache-Control: public, max-age=30`,
//!   its whole response kept by `jtc_http::ResponseCacheLayer` (`x-cache: hit`, `age`)
//! - `POST /login`: its own limit, 5 per minute per client
//! - `POST /notes/{id}` stores the request body for an hour (201 once stored, 503 if the cache
//!   cannot take it); `GET /notes/{id}` reads it back — what `scripts/soak` checks for lost writes
//! - `GET /_cache/stats`: this instance's cache counters as JSON (`jtc cache stats --url`)
//! - `GET /metrics`: the cache's and the rate limiters' metrics in Prometheus text format
//!   (docs/observability.md), outside the rate limit
//! - everything: 60 per minute per client and route, counted in the cache, so several
//!   instances on one Redis share the limit
//!
//! Settings come from the environment and `.env`: `CACHE_DRIVER` and friends (see
//! `.env.example`), `APP_ADDR` (default `127.0.0.1:3000`), `APP_LOCALE` (default `en`),
//! `APP_RATE_LIMIT` (requests per minute per client and route, default 60),
//! `APP_HEADER_TIMEOUT_MS` (a request's headers must arrive within it, default 10,000) and
//! `APP_MAX_CONNECTIONS` (connections served at once, default 512). Built with the
//! `otel` feature, it sends its spans to `OTEL_EXPORTER_OTLP_ENDPOINT` when that is set.

#[cfg(feature = "otel")]
mod otel;
mod serve;

use std::time::Duration;

use anyhow::Context;
use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use jtc_cache::{
    Cache,
    warm::{Readiness, Warmer},
};
use jtc_http::ResponseCacheLayer;
use jtc_throttle::ThrottleLayer;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::{Deserialize, Serialize};

const USER_TTL: Duration = Duration::from_secs(3600);
const SLOW_LOAD: Duration = Duration::from_millis(300);
const NOTE_TTL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    email: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("✗ error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        return Err(error).context("failed to read .env");
    }
    use tracing_subscriber::{Layer, layer::SubscriberExt, util::SubscriberInitExt};
    let console = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        );
    let logs = tracing_subscriber::registry().with(console);
    #[cfg(feature = "otel")]
    let (otel, logs) = {
        let (layer, otel) = otel::layer().context("failed to set up OpenTelemetry")?;
        (otel, logs.with(layer))
    };
    logs.init();

    // The recorder first: caches and limiters bind their metrics to it when they start.
    let metrics = prometheus()?;
    let cache = Cache::from_env().await.with_context(|| {
        let redis =
            std::env::var("CACHE_DRIVER").is_ok_and(|d| d.trim().eq_ignore_ascii_case("redis"));
        if redis && !cfg!(feature = "redis") {
            "failed to open the cache (for Redis, build the example with `-p jtc-examples --features redis`)"
        } else {
            "failed to open the cache"
        }
    })?;
    let address = std::env::var("APP_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let locale = std::env::var("APP_LOCALE").unwrap_or_else(|_| "en".to_owned());
    let limits = serve::Limits::from_env()?;
    let readiness = warm(&cache);
    let app = router(cache.clone(), rate_limit()?, &locale)
        .route(
            "/metrics",
            get(move || std::future::ready(scrape(&metrics))),
        )
        .route("/ready", readiness.route());

    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("failed to listen on {address}"))?;
    let local = listener.local_addr()?;
    println!(
        "listening on http://{local} (cache driver: {})",
        cache.driver().name()
    );
    // Not `axum::serve`: that one reads a request's headers for as long as a client cares
    // to trickle them (serve.rs says what this adds).
    serve::serve(listener, app, limits, shutdown()).await?;
    #[cfg(feature = "otel")]
    otel.shutdown();
    println!("shut down");
    Ok(())
}

/// Warms `config:app` and the first page of users (1–10) in the background, under the
/// cache name `warm` (its traffic apart from the requests' in metrics); across a fleet on one
/// Redis each entry is loaded by one instance. The returned handle answers `/ready`.
fn warm(cache: &Cache) -> Readiness {
    let warmer = Warmer::new(&cache.clone().named("warm"))
        .entry("config:app", USER_TTL, || async {
            Ok::<_, std::convert::Infallible>(
                serde_json::json!({ "name": "jtc example", "page_size": 10 }),
            )
        })
        .entries(
            (1..=10).map(|id| format!("user:{id}")),
            USER_TTL,
            |key| async move {
                let id: u64 = key.trim_start_matches("user:").parse()?;
                Ok::<_, std::num::ParseIntError>(load_user(id).await)
            },
        )
        .concurrency(10)
        .once_per(Duration::from_secs(60));
    let readiness = warmer.readiness();
    tokio::spawn(async move {
        let report = warmer.run().await;
        tracing::info!(
            loaded = report.loaded,
            skipped = report.skipped,
            failed = report.failed.len(),
            took_ms = report.took.as_millis(),
            "cache warmed"
        );
        for (key, error) in &report.failed {
            tracing::warn!(key, %error, "warming an entry failed");
        }
    });
    readiness
}

/// The Prometheus recorder, with histogram buckets for the cache's operation durations, and
/// its upkeep (draining histogram samples) every 5 seconds.
fn prometheus() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(jtc_cache::metrics::DURATION.to_owned()),
            jtc_cache::metrics::DURATION_BUCKETS,
        )?
        .install_recorder()
        .context("failed to install the metrics recorder")?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// `GET /metrics`: every metric in Prometheus text format, the cache's reads published first
/// so that the figures are exact. Keep it off the public internet, as `/_cache/stats`.
fn scrape(handle: &PrometheusHandle) -> Response {
    jtc_cache::metrics::publish();
    let content_type = HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8");
    ([(header::CONTENT_TYPE, content_type)], handle.render()).into_response()
}

/// `APP_RATE_LIMIT`: requests per minute per client and route (default 60).
fn rate_limit() -> anyhow::Result<u64> {
    match std::env::var("APP_RATE_LIMIT") {
        Ok(value) => value.trim().parse().with_context(|| {
            format!("invalid APP_RATE_LIMIT={value:?}: expected requests per minute")
        }),
        Err(_) => Ok(60),
    }
}

/// The routes: a global limit counted in the cache (shared by every instance), and a tighter
/// one on `/login` counted in this process.
fn router(cache: Cache, per_minute: u64, locale: &str) -> Router {
    Router::new()
        .route("/users/{id}", get(show_user).put(forget_user))
        .route("/notes/{id}", get(read_note).post(store_note))
        .route(
            "/reports/{id}",
            get(report).layer(ResponseCacheLayer::new(cache.clone())),
        )
        .route("/_cache/stats", get(cache_stats))
        .route(
            "/login",
            post(login).layer(
                ThrottleLayer::new(5, 60)
                    .name("login")
                    .fallback_locale(locale),
            ),
        )
        .layer(
            ThrottleLayer::new(per_minute, 60)
                .name("global")
                .with_cache(cache.clone())
                .fallback_locale(locale),
        )
        .layer(axum::middleware::from_fn(request_span))
        .with_state(cache)
}

/// Runs each request in an `info` span with its method and route template (not the path: it
/// holds ids), so that the cache's and the limiter's spans and events nest under it.
async fn request_span(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument;
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("(unmatched)", axum::extract::MatchedPath::as_str);
    let span = tracing::info_span!("request", method = %request.method(), route = %route);
    next.run(request).instrument(span).await
}

/// `GET /_cache/stats`: hits, misses, writes, deletes and errors of this instance's cache.
/// Counters are no secret, but keep such endpoints off the public internet all the same.
async fn cache_stats(State(cache): State<Cache>) -> Json<jtc_cache::CacheStats> {
    Json(cache.stats())
}

/// `GET /users/{id}`: the cached user, loaded (slowly) on a miss.
async fn show_user(State(cache): State<Cache>, Path(id): Path<u64>) -> Response {
    let key = format!("user:{id}");
    let cached = match cache.has(&key).await {
        Ok(hit) => hit,
        Err(error) => return unavailable(&error),
    };
    match cache.remember(&key, USER_TTL, || load_user(id)).await {
        Ok(user) => {
            let mut headers = HeaderMap::new();
            let state = if cached { "hit" } else { "miss" };
            headers.insert("x-cache", HeaderValue::from_static(state));
            (headers, Json(user)).into_response()
        }
        Err(error) => unavailable(&error),
    }
}

/// `GET /reports/{id}`: a slow report (300 ms) whose whole response the response cache keeps
/// for 30 s, as its `Cache-Control` allows: the second request is answered from the cache with
/// `x-cache: hit` and `age`, without running this handler.
async fn report(Path(id): Path<u64>) -> Response {
    tokio::time::sleep(Duration::from_millis(300)).await;
    (
        [(header::CACHE_CONTROL, "public, max-age=30")],
        Json(serde_json::json!({ "report": id, "rows": 1_000 + id })),
    )
        .into_response()
}

/// `PUT /users/{id}`: pretend to update the user, and forget the cached copy.
async fn forget_user(State(cache): State<Cache>, Path(id): Path<u64>) -> Response {
    match cache.forget(&format!("user:{id}")).await {
        Ok(existed) => Json(serde_json::json!({ "id": id, "forgotten": existed })).into_response(),
        Err(error) => unavailable(&error),
    }
}

/// `POST /notes/{id}`: stores the body; 201 only once the cache has it.
async fn store_note(State(cache): State<Cache>, Path(id): Path<u64>, body: String) -> Response {
    match cache.put(&format!("note:{id}"), &body, NOTE_TTL).await {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(error) => unavailable(&error),
    }
}

/// `GET /notes/{id}`: the stored body, or 404.
async fn read_note(State(cache): State<Cache>, Path(id): Path<u64>) -> Response {
    match cache.get::<String>(&format!("note:{id}")).await {
        Ok(Some(note)) => note.into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(error) => unavailable(&error),
    }
}

/// `POST /login`: a stand-in for a real login.
async fn login() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "token": "example-token" }))
}

/// The "database": slow on purpose.
async fn load_user(id: u64) -> User {
    tokio::time::sleep(SLOW_LOAD).await;
    User {
        id,
        name: format!("User {id}"),
        email: format!("user{id}@example.com"),
    }
}

fn unavailable(error: &jtc_cache::Error) -> Response {
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    // The cache logs a failing backend itself, at most once a second: one line per failed
    // request here would flood the log during an outage.
    tracing::debug!(error = %reason, "cache unavailable");
    let body = Json(serde_json::json!({ "error": "cache unavailable" }));
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
