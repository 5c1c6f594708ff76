//! `Readiness`: whether the first warming run has ended, for probes and for routes that should
//! wait for a warm cache. With the `axum` feature: a `/ready` route and a layer answering 503.

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::sync::Notify;

use super::Progress;

/// Whether a warmer's first run has ended, and its progress meanwhile. Cheap to clone; every
/// clone sees the same state. From [`Warmer::readiness`](super::Warmer::readiness), or
/// [`new`](Self::new) for start-up work of the app's own ([`set_ready`](Self::set_ready)).
///
/// With the `axum` feature, [`route`](Self::route) answers a readiness probe and
/// [`layer`](Self::layer) holds routes back until ready:
///
/// ```
/// # #[cfg(feature = "axum")] {
/// use axum::{Router, routing::get};
/// use jtc_cache::{ArrayDriver, Cache, warm::Warmer};
///
/// let cache = Cache::new(ArrayDriver::new());
/// let warmer = Warmer::new(&cache);
/// let readiness = warmer.readiness();
/// let app: Router = Router::new()
///     .route("/reports", get(|| async { "warm" }))
///     .route_layer(readiness.layer()) // 503 + Retry-After until the first run ends
///     .route("/ready", readiness.route()); // 200 when warm, 503 before; progress as JSON
/// # }
/// ```
#[derive(Clone, Default)]
pub struct Readiness {
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    ready: AtomicBool,
    progress: Mutex<Progress>,
    changed: Notify,
}

impl fmt::Debug for Readiness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Readiness")
            .field("ready", &self.is_ready())
            .field("progress", &self.progress())
            .finish()
    }
}

impl Readiness {
    /// A handle that is not ready yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the run has ended.
    pub fn is_ready(&self) -> bool {
        self.state.ready.load(Ordering::Acquire)
    }

    /// The run's progress so far (the final figures once ready).
    pub fn progress(&self) -> Progress {
        *self
            .state
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks ready: for a handle made with [`new`](Self::new), when the app's own start-up
    /// work is done.
    pub fn set_ready(&self) {
        self.state.ready.store(true, Ordering::Release);
        self.state.changed.notify_waiters();
    }

    /// Waits until ready.
    pub async fn wait(&self) {
        loop {
            let changed = self.state.changed.notified();
            if self.is_ready() {
                return;
            }
            changed.await;
        }
    }

    pub(super) fn update(&self, progress: Progress) {
        *self
            .state
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = progress;
    }

    /// Changes the progress in place and returns it: the one record of a run's progress.
    pub(super) fn step(&self, change: impl FnOnce(&mut Progress)) -> Progress {
        let mut progress = self
            .state
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut progress);
        *progress
    }

    /// The probe's answer as JSON: `{"ready":false,"done":3,"total":10,...}`.
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    fn json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Answer {
            ready: bool,
            #[serde(flatten)]
            progress: Progress,
        }
        serde_json::to_string(&Answer {
            ready: self.is_ready(),
            progress: self.progress(),
        })
        .unwrap_or_default()
    }
}

#[cfg(feature = "axum")]
mod http {
    use std::{
        convert::Infallible,
        future::Future,
        pin::Pin,
        task::{Context, Poll},
    };

    use axum::{
        body::Body,
        http::{HeaderValue, Request, Response, StatusCode, header},
        routing::{MethodRouter, get},
    };

    use super::Readiness;

    /// What a held-back route's `Retry-After` says, in seconds.
    const RETRY_AFTER: &str = "5";

    impl Readiness {
        /// A `GET` route for a readiness probe (`/ready`): 200 once the first run has ended,
        /// 503 before, both with the progress as JSON.
        pub fn route<S: Clone + Send + Sync + 'static>(&self) -> MethodRouter<S> {
            let readiness = self.clone();
            get(move || {
                let readiness = readiness.clone();
                async move {
                    let status = if readiness.is_ready() {
                        StatusCode::OK
                    } else {
                        StatusCode::SERVICE_UNAVAILABLE
                    };
                    json(status, readiness.json())
                }
            })
        }

        /// A layer answering `503 Service Unavailable` with `Retry-After: 5` and the progress
        /// as JSON until the first run has ended; then every request passes. Put it on the
        /// routes that need a warm cache (`route_layer`), not on the probe.
        pub fn layer(&self) -> ReadinessLayer {
            ReadinessLayer {
                readiness: self.clone(),
            }
        }
    }

    fn json(status: StatusCode, body: String) -> Response<Body> {
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }

    /// The layer of [`Readiness::layer`].
    #[derive(Debug, Clone)]
    pub struct ReadinessLayer {
        readiness: Readiness,
    }

    impl<S> tower::Layer<S> for ReadinessLayer {
        type Service = ReadinessService<S>;

        fn layer(&self, inner: S) -> Self::Service {
            ReadinessService {
                inner,
                readiness: self.readiness.clone(),
            }
        }
    }

    /// The service of [`ReadinessLayer`].
    #[derive(Debug, Clone)]
    pub struct ReadinessService<S> {
        inner: S,
        readiness: Readiness,
    }

    type Answer<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

    impl<S, B> tower::Service<Request<B>> for ReadinessService<S>
    where
        S: tower::Service<Request<B>, Response = Response<Body>, Error = Infallible>,
        S::Future: Send + 'static,
    {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = Answer<Infallible>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            self.inner.poll_ready(cx)
        }

        fn call(&mut self, request: Request<B>) -> Self::Future {
            if self.readiness.is_ready() {
                return Box::pin(self.inner.call(request));
            }
            let mut response = json(StatusCode::SERVICE_UNAVAILABLE, self.readiness.json());
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
            Box::pin(std::future::ready(Ok(response)))
        }
    }
}

#[cfg(feature = "axum")]
pub use http::{ReadinessLayer, ReadinessService};
