//! `ResponseFuture`: the future a [`Throttle`](crate::Throttle) returns.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
};

use axum::body::Body;
use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;
use tower::BoxError;

use crate::{
    limiter::{Decision, Plan},
    shared::Shared,
};

type Boxed<E> = Pin<Box<dyn Future<Output = Result<Response<Body>, E>> + Send>>;

pin_project! {
    /// The response of a [`Throttle`](crate::Throttle): the inner service's (with the
    /// rate-limit headers added), a 429 decided at once, or — when counting in a cache —
    /// the check and the call in one boxed future.
    pub struct ResponseFuture<F, E> {
        #[pin]
        kind: Kind<F, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, E> {
        Inner {
            #[pin]
            future: F,
            finish: Option<Finish>,
        },
        Ready {
            response: Option<Response<Body>>,
        },
        Boxed {
            future: Boxed<E>,
        },
    }
}

/// What an admitted request's response still needs once the inner service answers.
pub(crate) struct Finish {
    pub(crate) decision: Decision,
    /// The limits decided for the request, when not the layer's fixed ones.
    pub(crate) dynamic: Option<Arc<Plan>>,
    pub(crate) shared: Arc<Shared>,
    /// The request matched no route (see `Shared::finish`).
    pub(crate) unmatched: bool,
}

impl<F, E> ResponseFuture<F, E> {
    /// The inner service's response, finished by the decision that admitted it when there is
    /// one (an uncounted request has none).
    pub(crate) fn inner(future: F, finish: Option<Finish>) -> Self {
        Self {
            kind: Kind::Inner { future, finish },
        }
    }

    /// A response known without calling the inner service.
    pub(crate) fn ready(response: Response<Body>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    /// Work that must wait (on the cache) before it knows.
    pub(crate) fn boxed(
        future: impl Future<Output = Result<Response<Body>, E>> + Send + 'static,
    ) -> Self {
        Self {
            kind: Kind::Boxed {
                future: Box::pin(future),
            },
        }
    }
}

impl<F, E, B> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future, finish } => {
                let mut response = ready!(future.poll(cx))?.map(Body::new);
                if let Some(Finish {
                    decision,
                    dynamic,
                    shared,
                    unmatched,
                }) = finish.take()
                {
                    shared.responder.finish(
                        &mut response,
                        dynamic.as_deref(),
                        &decision,
                        unmatched,
                    );
                }
                Poll::Ready(Ok(response))
            }
            KindProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("a ResponseFuture was polled after it completed"),
            },
            KindProj::Boxed { future } => future.as_mut().poll(cx),
        }
    }
}

impl<F, E> fmt::Debug for ResponseFuture<F, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
