//! The API the rate-limiter issue pinned, compiled as written and run: dynamic per-user and
//! per-plan limits, `Limit::none()` for admins, two limits for anonymous clients, and the
//! imperative `RateLimiter` of a login handler.

mod common;

use std::time::Duration;

use axum::{Router, body::Body, routing::get};
use common::{header, request, send};
use http::{Response, StatusCode};
use jtc_cache::{ArrayDriver, Cache};
use jtc_throttle::{Limit, RateLimiter, RequestInfo, ThrottleLayer};

#[derive(Clone)]
struct Plan {
    rpm: u64,
}

#[derive(Clone)]
struct User {
    id: u64,
    is_admin: bool,
    plan: Plan,
}

fn too_many(retry_after: Duration) -> Result<Response<Body>, jtc_cache::Error> {
    let mut response = Response::new(Body::from(format!("retry in {retry_after:?}")));
    *response.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    Ok(response)
}

/// The code, word for word inside this function.
async fn as_written(cache: Cache) -> Result<Response<Body>, jtc_cache::Error> {
    // Dynamic limits, decided per request (Laravel's RateLimiter::for + Limit):
    let api = ThrottleLayer::dynamic(|req: &RequestInfo<'_>| match req.extensions.get::<User>() {
        Some(u) if u.is_admin => Limit::none().into(),
        Some(u) => Limit::per_minute(u.plan.rpm).by(u.id.to_string()).into(),
        None => vec![Limit::per_second(2), Limit::per_minute(30)].into(), // all must pass
    })
    .with_cache(cache.clone());

    // Imperative use anywhere (a login handler keyed by e-mail, a job, middleware::from_fn):
    let limiter = RateLimiter::with_cache(cache.clone()); // or RateLimiter::memory()
    let decision = limiter
        .hit("login:alice@example.com", &Limit::per_minute(5))
        .await?;
    if !decision.allowed() {
        return too_many(decision.retry_after());
    }
    limiter
        .check("login:alice@example.com", &Limit::per_minute(5))
        .await?; // reads, counts nothing
    limiter.clear("login:alice@example.com").await?; // e.g. after a success

    // And the layer in an app:
    let app = Router::new().route("/", get(|| async { "ok" })).layer(api);
    let as_user = |user: User| {
        let mut r = request("/", "203.0.113.9:1", &[]);
        r.extensions_mut().insert(user);
        r
    };
    let pro = User {
        id: 7,
        is_admin: false,
        plan: Plan { rpm: 3 },
    };
    for _ in 0..3 {
        assert_eq!(
            send(&app, as_user(pro.clone())).await.status(),
            StatusCode::OK
        );
    }
    let fourth = send(&app, as_user(pro)).await;
    assert_eq!(
        fourth.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "the plan's 3 a minute"
    );
    let admin = User {
        id: 1,
        is_admin: true,
        plan: Plan { rpm: 0 },
    };
    for _ in 0..10 {
        assert_eq!(
            send(&app, as_user(admin.clone())).await.status(),
            StatusCode::OK
        );
    }
    let anonymous = send(&app, request("/", "203.0.113.9:1", &[])).await;
    assert_eq!(
        header(&anonymous, "x-ratelimit-limit"),
        Some("2"),
        "the tightest"
    );
    Ok(anonymous)
}

#[tokio::test]
async fn the_pinned_api_compiles_and_works() {
    let cache = Cache::new(ArrayDriver::new());
    let response = as_written(cache.clone()).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The login limiter was cleared: five more attempts are allowed.
    let limiter = RateLimiter::with_cache(cache);
    let login = Limit::per_minute(5);
    let check = limiter
        .check("login:alice@example.com", &login)
        .await
        .unwrap();
    assert_eq!(check.remaining(), 5);
}
