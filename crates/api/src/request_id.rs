//! Request ids: every request gets one (the client's `X-Request-ID` when it is a valid link id,
//! else a fresh UUIDv7), echoed in the response header, the envelope's metadata, the audit log
//! and every log line.
//!
//! `X-Request-ID` and `X-Correlation-ID` are held to the rule of the body's correlation ids
//! (`switchyard_core::id::is_link_id`: 1 to 128 visible ASCII characters) before they are
//! adopted. A request id that breaks it is replaced, since the client only uses it to find its
//! request again; a correlation id that breaks it is left out of the logs here, and refused
//! with a 400 where it would become data (publishing events).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;
use switchyard_core::error::{excerpt, excerpt_of};
use switchyard_core::id::is_link_id;
use tracing::Instrument;

pub const HEADER: &str = "x-request-id";
pub const CORRELATION_HEADER: &str = "x-correlation-id";
/// Longest path a log line shows whole: far past any route of the API, short of what a client
/// can send.
const MAX_LOGGED_PATH_CHARS: usize = 256;

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// A step of [`crate::front`]: runs `inner` with the request's id current and in its span,
/// and echoes the id on the answer.
pub(crate) async fn around<F, Fut>(request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_link_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let correlation_id = request
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_link_id(v))
        .map(str::to_owned);
    // Events published without the header take their own id as correlation id; their
    // deliveries' spans carry it.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        correlation_id = tracing::field::Empty,
        // Both are the client's to choose (extension methods included): logged as excerpts.
        method = %excerpt(request.method().as_str()),
        path = %excerpt_of(request.uri().path(), MAX_LOGGED_PATH_CHARS),
    );
    if let Some(correlation_id) = &correlation_id {
        span.record("correlation_id", correlation_id.as_str());
    }
    let started = std::time::Instant::now();
    let mut response = CURRENT.scope(id.clone(), inner(request).instrument(span.clone())).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "answered"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}
