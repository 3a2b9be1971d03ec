//! How long a request may take once its head has arrived.
//!
//! - Its body may pause at most `body_read_timeout` between two chunks
//!   (`server.body_read_timeout_ms`). A client that stalls gets a 400 `validation_error` on
//!   `body` ("was not received in time") with `Connection: close`, whatever the handler made of
//!   the broken body; the rest of that body is never read. A body that keeps trickling is
//!   bounded by the request's deadline instead.
//! - Its answer must be ready within `request_timeout` (`server.request_timeout_ms`), body
//!   reading included; past it, the handler is dropped and the answer is a 503 `unavailable`.
//!   Work the handler had already committed stays committed, as after any lost answer: clients
//!   retry with the same `Idempotency-Key` or event id. A streamed answer is only timed until
//!   its head is ready, not while it streams.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body::{Body as _, Frame, SizeHint};
use switchyard_core::ValidationError;
use tokio::time::{Instant, Sleep};

use crate::ApiState;
use crate::error::ApiError;

/// A step of [`crate::front`]: times the body's pauses and the whole of `inner`.
pub(crate) async fn around<F, Fut>(state: &ApiState, request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let settings = state.settings();
    let (request_timeout, body_read_timeout) = (settings.request_timeout, settings.body_read_timeout);
    let stalled = Arc::new(AtomicBool::new(false));
    let request = if request.body().is_end_stream() {
        request
    } else {
        let stalled = Arc::clone(&stalled);
        request.map(|body| Body::new(PatientBody::new(body, body_read_timeout, stalled)))
    };
    let answer = tokio::time::timeout(request_timeout, inner(request)).await;
    if stalled.load(Ordering::Acquire) {
        return body_not_received(body_read_timeout);
    }
    match answer {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable(format!(
            "the request was not answered within {} ms (server.request_timeout_ms); try again shortly",
            request_timeout.as_millis()
        ))
        .into_response(),
    }
}

fn body_not_received(timeout: Duration) -> Response {
    let message = format!(
        "was not received in time: nothing arrived for {} ms (server.body_read_timeout_ms)",
        timeout.as_millis()
    );
    let mut response = ApiError::Validation(ValidationError::single("body", message)).into_response();
    // The unread rest of the body makes the connection unusable for another request.
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("the request body sent nothing for {} ms", .0.as_millis())]
pub struct BodyStalled(Duration);

/// A request body that fails when its client sends nothing for `timeout` while it is read, and
/// says so through `stalled`.
struct PatientBody {
    inner: Body,
    timeout: Duration,
    /// Kept between pauses and reset, so a body read in many chunks allocates one timer.
    pause: Option<Pin<Box<Sleep>>>,
    waiting: bool,
    stalled: Arc<AtomicBool>,
}

impl PatientBody {
    fn new(inner: Body, timeout: Duration, stalled: Arc<AtomicBool>) -> Self {
        Self { inner, timeout, pause: None, waiting: false, stalled }
    }

    /// Whether the pause that began at the first `Pending` has lasted `timeout`.
    fn pause_is_over(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = Instant::now() + self.timeout;
        let pause = match (&mut self.pause, self.waiting) {
            (Some(pause), true) => pause,
            (Some(pause), false) => {
                pause.as_mut().reset(deadline);
                pause
            }
            (None, _) => self.pause.insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.waiting = true;
        pause.as_mut().poll(cx).is_ready()
    }
}

impl http_body::Body for PatientBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.stalled.load(Ordering::Relaxed) {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                self.waiting = false;
                Poll::Ready(frame)
            }
            Poll::Pending if self.pause_is_over(cx) => {
                self.stalled.store(true, Ordering::Release);
                let timeout = self.timeout;
                Poll::Ready(Some(Err(axum::Error::new(BodyStalled(timeout)))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tokio::sync::mpsc;

    use super::*;

    /// A body fed through a channel; it ends only when its sender is dropped.
    struct ChannelBody(mpsc::Receiver<Bytes>);

    impl http_body::Body for ChannelBody {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0.poll_recv(cx).map(|chunk| chunk.map(|bytes| Ok(Frame::data(bytes))))
        }
    }

    fn patient(timeout: Duration) -> (mpsc::Sender<Bytes>, PatientBody, Arc<AtomicBool>) {
        let (sender, receiver) = mpsc::channel(16);
        let stalled = Arc::new(AtomicBool::new(false));
        let body = PatientBody::new(Body::new(ChannelBody(receiver)), timeout, Arc::clone(&stalled));
        (sender, body, stalled)
    }

    async fn next_frame(body: &mut PatientBody) -> Option<Result<Frame<Bytes>, axum::Error>> {
        std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await
    }

    #[tokio::test]
    async fn a_body_that_pauses_too_long_fails_and_says_so() {
        let timeout = Duration::from_millis(200);
        let (sender, mut body, stalled) = patient(timeout);
        sender.send(Bytes::from_static(b"{\"a\":")).await.expect("queued");
        let first = next_frame(&mut body).await.expect("a frame").expect("data");
        assert_eq!(first.into_data().ok(), Some(Bytes::from_static(b"{\"a\":")));
        let started = std::time::Instant::now();
        let error = next_frame(&mut body).await.expect("a frame").expect_err("the pause is over");
        assert!(started.elapsed() >= timeout, "gave up after {:?}", started.elapsed());
        assert!(error.to_string().contains("sent nothing for 200 ms"), "{error}");
        assert!(stalled.load(Ordering::Acquire));
        assert!(next_frame(&mut body).await.is_none(), "nothing more is read");
        drop(sender);
    }

    #[tokio::test]
    async fn a_body_that_keeps_coming_is_read_whole_however_long_it_takes() {
        let timeout = Duration::from_millis(300);
        let (sender, mut body, stalled) = patient(timeout);
        let started = std::time::Instant::now();
        let feeder = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(40)).await;
                let _ = sender.send(Bytes::from_static(b"x")).await;
            }
        });
        let mut chunks = 0;
        while let Some(frame) = next_frame(&mut body).await {
            assert!(frame.expect("data within every pause").is_data());
            chunks += 1;
        }
        feeder.await.expect("the feeder");
        assert_eq!(chunks, 10);
        assert!(started.elapsed() > timeout, "longer in all than one pause may last");
        assert!(!stalled.load(Ordering::Acquire));
    }
}
