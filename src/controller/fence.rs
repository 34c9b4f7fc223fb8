//! Fencing: the controllers' Kubernetes client sends a write (anything but `GET`, `HEAD` and
//! `OPTIONS`) only while this process leads ([`Leadership`]), and gives up waiting for one
//! whose answer has not come when the leadership ends.
//!
//! Stopping the controllers when the lease is lost is done by dropping them; this layer closes
//! the gap between the moment the leadership ends by the clock and the moment some task
//! notices, as after the process was frozen (SIGSTOP, a stalled VM) past its lease: a
//! reconcile woken by a watch event before the renewal loop runs finds its writes refused.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request};
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::leader::{Leadership, Tenure};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A write the fence did not let through, or stopped waiting for.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("not leading: {method} {path} not sent")]
    NotLeading { method: Method, path: String },
    #[error("leadership ended while {method} {path} was awaiting its answer")]
    EndedInFlight { method: Method, path: String },
}

/// Whether a request only reads.
pub fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The [`Layer`] that fences a Kubernetes client's writes by a [`Leadership`].
#[derive(Clone, Debug)]
pub struct FenceLayer {
    leadership: Arc<Leadership>,
}

impl FenceLayer {
    pub fn new(leadership: Arc<Leadership>) -> Self {
        Self { leadership }
    }
}

impl<S> Layer<S> for FenceLayer {
    type Service = Fence<S>;

    fn layer(&self, inner: S) -> Fence<S> {
        Fence {
            inner,
            leadership: self.leadership.clone(),
        }
    }
}

/// See [`FenceLayer`].
#[derive(Clone, Debug)]
pub struct Fence<S> {
    inner: S,
    leadership: Arc<Leadership>,
}

impl<S, B> Service<Request<B>> for Fence<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError> + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.method().clone();
        if is_read(&method) {
            let response = self.inner.call(request);
            return Box::pin(async move { response.await.map_err(Into::into) });
        }
        let path = request.uri().path().to_owned();
        if self.leadership.tenure(Instant::now()) == Tenure::NotLeading {
            tracing::warn!(%method, %path, "not leading: write refused");
            return Box::pin(std::future::ready(Err(FenceError::NotLeading {
                method,
                path,
            }
            .into())));
        }
        let response = self.inner.call(request);
        let leadership = self.leadership.clone();
        Box::pin(while_leading(leadership, method, path, response))
    }
}

/// `response`, unless the leadership ends first: then it is dropped, and a request not yet
/// sent (still waiting for a connection, say) never is.
async fn while_leading<F, T, E>(
    leadership: Arc<Leadership>,
    method: Method,
    path: String,
    response: F,
) -> Result<T, BoxError>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    tokio::pin!(response);
    loop {
        let until = match leadership.tenure(Instant::now()) {
            Tenure::Unconditional => return response.await.map_err(Into::into),
            Tenure::Until(until) => until,
            Tenure::NotLeading => {
                tracing::warn!(%method, %path, "leadership ended: write abandoned");
                return Err(FenceError::EndedInFlight { method, path }.into());
            }
        };
        tokio::select! {
            answer = &mut response => return answer.map_err(Into::into),
            // A renewal may have moved the deadline on meanwhile: look again.
            () = tokio::time::sleep_until(until) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Answers every request after `delay`, counting what reached it.
    #[derive(Clone)]
    struct Backend {
        delay: Duration,
        received: Arc<AtomicUsize>,
    }

    impl Service<Request<()>> for Backend {
        type Response = &'static str;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<&'static str, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: Request<()>) -> Self::Future {
            self.received.fetch_add(1, Ordering::SeqCst);
            let delay = self.delay;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok("answered")
            })
        }
    }

    fn fenced(leadership: &Arc<Leadership>, delay: Duration) -> (Fence<Backend>, Arc<AtomicUsize>) {
        let received = Arc::new(AtomicUsize::new(0));
        let backend = Backend {
            delay,
            received: received.clone(),
        };
        (FenceLayer::new(leadership.clone()).layer(backend), received)
    }

    fn request(method: Method) -> Request<()> {
        let mut request = Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = http::Uri::from_static("/apis/datamesh.dev/v1alpha1/domains/a");
        request
    }

    const RENEW: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn a_standby_reads_but_does_not_write() {
        let leadership = Leadership::elected(RENEW);
        let (mut fence, received) = fenced(&leadership, Duration::ZERO);
        assert!(fence.call(request(Method::GET)).await.is_ok());
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let refused = fence.call(request(method.clone())).await;
            assert!(
                refused.is_err_and(|e| e
                    .downcast_ref::<FenceError>()
                    .is_some_and(|e| matches!(e, FenceError::NotLeading { .. }))),
                "{method} must be refused"
            );
        }
        assert_eq!(received.load(Ordering::SeqCst), 1, "only the read was sent");
    }

    #[tokio::test(start_paused = true)]
    async fn the_leader_writes_until_its_renew_deadline_passes() {
        let leadership = Leadership::elected(RENEW);
        leadership.renewed(Instant::now());
        let (mut fence, received) = fenced(&leadership, Duration::ZERO);
        assert!(fence.call(request(Method::PATCH)).await.is_ok());
        // Frozen past the deadline with no task noticing: the next write is not sent.
        tokio::time::advance(RENEW).await;
        assert!(fence.call(request(Method::PATCH)).await.is_err());
        assert_eq!(received.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_still_awaiting_its_answer_is_abandoned_when_leading_ends() {
        let leadership = Leadership::elected(RENEW);
        let start = Instant::now();
        leadership.renewed(start);
        let (mut fence, _) = fenced(&leadership, Duration::from_secs(60));
        let abandoned = fence.call(request(Method::PUT)).await;
        assert!(abandoned.is_err_and(|e| {
            e.downcast_ref::<FenceError>()
                .is_some_and(|e| matches!(e, FenceError::EndedInFlight { .. }))
        }));
        assert_eq!(start.elapsed(), RENEW);
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_while_a_write_waits_extends_it() {
        let leadership = Leadership::elected(RENEW);
        leadership.renewed(Instant::now());
        let (mut fence, _) = fenced(&leadership, Duration::from_secs(12));
        let renewer = {
            let leadership = leadership.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                leadership.renewed(Instant::now());
            })
        };
        assert!(fence.call(request(Method::PUT)).await.is_ok());
        assert!(renewer.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn without_leader_election_everything_passes() {
        let (mut fence, received) = fenced(&Leadership::unconditional(), Duration::from_secs(60));
        assert!(fence.call(request(Method::DELETE)).await.is_ok());
        assert_eq!(received.load(Ordering::SeqCst), 1);
    }
}
