//! One stream's connection: a task reads pages from the store after the cursor and pushes
//! frames into a bounded channel, which the response body drains. Nothing is buffered beyond
//! the channel: a client that drains nothing for `stream_lag_timeout` is sent `event: lagged`
//! with the cursor of the last frame it was given, and the stream ends.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use serde::Serialize;
use switchyard_core::store::StoreResult;
use switchyard_core::stream::{StreamCursor, StreamKind, StreamPage};
use switchyard_engine::shutdown::Shutdown;
use tokio::sync::mpsc;

use crate::ApiState;

/// Rows read from the store at a time.
pub(super) const PAGE: u32 = 100;

/// Frames waiting for the client; a full channel is a client that does not keep up.
const CHANNEL: usize = 64;

/// How often the store is read when nothing woke the stream: writes of other nodes (and of
/// this one) are seen within it.
const POLL: Duration = Duration::from_millis(250);

/// One frame as written, and the cursor it carries (heartbeats carry none).
struct Outgoing {
    bytes: Bytes,
    id: Option<String>,
}

/// The answer: a `text/event-stream` body fed by a task reading `source` after `after`.
pub(super) fn respond<T, F, Fut>(
    state: &ApiState,
    kind: StreamKind,
    event: &'static str,
    after: StreamCursor,
    source: F,
) -> Response
where
    T: Serialize + Send + 'static,
    F: Fn(ApiState, StreamCursor) -> Fut + Send + 'static,
    Fut: Future<Output = StoreResult<StreamPage<T>>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHANNEL);
    let lagged = Arc::new(AtomicBool::new(false));
    let pump = Pump { state: state.clone(), kind, event, tx, lagged: Arc::clone(&lagged) };
    tokio::spawn(pump.run(after, source));
    let body = SseBody { rx, lagged, last: after.encode(kind), done: false };
    let mut response = Body::new(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies that buffer answers (nginx) would hold frames back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

struct Pump {
    state: ApiState,
    kind: StreamKind,
    event: &'static str,
    tx: mpsc::Sender<Outgoing>,
    lagged: Arc<AtomicBool>,
}

impl Pump {
    async fn run<T, F, Fut>(self, mut at: StreamCursor, source: F)
    where
        T: Serialize,
        F: Fn(ApiState, StreamCursor) -> Fut,
        Fut: Future<Output = StoreResult<StreamPage<T>>>,
    {
        let mut shutdown = self.state.shutdown();
        let heartbeat = self.state.settings().stream_heartbeat;
        let lag_timeout = self.state.settings().stream_lag_timeout;
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        loop {
            let read = tokio::select! {
                biased;
                () = shutdown.requested() => return,
                () = self.tx.closed() => return,
                read = source(self.state.clone(), at) => read,
            };
            let more = match read {
                Ok(page) => {
                    for (cursor, item) in page.items {
                        let data = serde_json::to_string(&item).unwrap_or_else(|_| "null".into());
                        if !self.send(cursor, data, lag_timeout, &mut shutdown).await {
                            return;
                        }
                    }
                    at = page.end.unwrap_or(at);
                    page.more
                }
                Err(error) => {
                    tracing::warn!(%error, "reading a stream failed; trying again");
                    false
                }
            };
            if more {
                continue;
            }
            tokio::select! {
                biased;
                () = shutdown.requested() => return,
                () = self.tx.closed() => return,
                _ = beat.tick() => {
                    // A full channel says enough already.
                    let _ = self.tx.try_send(Outgoing { bytes: Bytes::from_static(b": heartbeat\n\n"), id: None });
                }
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

impl Pump {
    /// Queues one item's frame (`data`: its JSON); false when the stream is over (the client left, lagged, or
    /// the server stops).
    async fn send(
        &self,
        cursor: StreamCursor,
        data: String,
        lag_timeout: Duration,
        shutdown: &mut Shutdown,
    ) -> bool {
        let id = cursor.encode(self.kind);
        let bytes = format!("event: {}\nid: {id}\ndata: {data}\n\n", self.event);
        let frame = Outgoing { bytes: Bytes::from(bytes), id: Some(id) };
        let sent = tokio::select! {
            biased;
            () = shutdown.requested() => return false,
            sent = tokio::time::timeout(lag_timeout, self.tx.send(frame)) => sent,
        };
        match sent {
            Ok(Ok(())) => true,
            // The client is gone.
            Ok(Err(_)) => false,
            Err(_) => {
                // The body sees the flag once the channel closes (the sender drops with the
                // pump) and ends with `lagged`.
                self.lagged.store(true, Ordering::Release);
                false
            }
        }
    }
}

/// The response body: the channel's frames, then `lagged` if the pump gave up on the client.
struct SseBody {
    rx: mpsc::Receiver<Outgoing>,
    lagged: Arc<AtomicBool>,
    /// The cursor of the last frame handed to the connection: where a lagged client resumes.
    last: String,
    done: bool,
}

#[derive(Serialize)]
struct Lagged<'a> {
    message: &'static str,
    cursor: &'a str,
}

impl SseBody {
    fn lagged_frame(&mut self) -> Bytes {
        self.done = true;
        let data = serde_json::to_string(&Lagged {
            message: "the client read too slowly; resume from `cursor` (as Last-Event-ID or after)",
            cursor: &self.last,
        })
        .unwrap_or_else(|_| "{}".into());
        Bytes::from(format!("event: lagged\ndata: {data}\n\n"))
    }
}

impl http_body::Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.done {
            return Poll::Ready(None);
        }
        // Frames still queued when the pump gave up are dropped: the client resumes from the
        // last one it was given.
        if self.lagged.load(Ordering::Acquire) {
            let frame = self.lagged_frame();
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(outgoing)) => {
                if let Some(id) = outgoing.id {
                    self.last = id;
                }
                Poll::Ready(Some(Ok(Frame::data(outgoing.bytes))))
            }
            Poll::Ready(None) if self.lagged.load(Ordering::Acquire) => {
                let frame = self.lagged_frame();
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}
