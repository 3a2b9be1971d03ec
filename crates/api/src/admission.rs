//! What a request must pass before anything else looks at it, judged on its head alone: the
//! length of its URL, how many headers it carries and the body size it announces. Refusals are
//! answered in the envelope before authentication and before a byte of the body is read, so a
//! client that sent `Expect: 100-continue` gets its answer instead of `100 Continue`.
//!
//! - URL: at most [`MAX_URL_BYTES`]. SPEC §4 has no code for 414, so a longer one is a 400
//!   `validation_error` on the field `url`.
//! - Headers: at most [`MAX_HEADER_COUNT`]; more is a 400 `validation_error` on `headers` (no
//!   code for 431 either, as for the header block's size in [`crate::limits`]).
//! - Body: a `Content-Length` over `limits.max_body_bytes` is a 413 `payload_too_large` at
//!   once. A body sent without a length is still held to the limit as it is read.
//!
//! The HTTP server's own parser limits sit above these (see `HYPER_MAX_HEADERS` in the
//! binary), so what it refuses with a bare status is only what cannot be parsed at all.

use axum::extract::Request;
use axum::http::{HeaderMap, Uri, header};
use axum::response::{IntoResponse, Response};
use switchyard_core::ValidationError;

use crate::ApiState;
use crate::error::ApiError;

/// Longest URL (path and query, and scheme and authority when sent in absolute form), in bytes.
pub const MAX_URL_BYTES: usize = 8 * 1024;
/// Most headers one request may carry.
pub const MAX_HEADER_COUNT: usize = 100;

/// A step of [`crate::front`]: refuses a request whose head is over a limit, without reading
/// its body; passes the others to `inner`.
pub(crate) async fn around<F, Fut>(state: &ApiState, request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    match judge(request.uri(), request.headers(), state.settings().max_body_bytes) {
        Ok(()) => inner(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

fn judge(uri: &Uri, headers: &HeaderMap, max_body_bytes: usize) -> Result<(), ApiError> {
    let url_bytes = url_length(uri);
    if url_bytes > MAX_URL_BYTES {
        let message = format!("is {url_bytes} bytes long; the limit is {MAX_URL_BYTES} bytes");
        return Err(ValidationError::single("url", message).into());
    }
    let count = headers.len();
    if count > MAX_HEADER_COUNT {
        let message = format!("are {count} in all; the limit is {MAX_HEADER_COUNT} headers");
        return Err(ValidationError::single("headers", message).into());
    }
    if let Some(announced) = content_length(headers)
        && announced > max_body_bytes as u64
    {
        return Err(ApiError::PayloadTooLarge(format!(
            "the request announces a body of {announced} bytes; the limit (limits.max_body_bytes) is {max_body_bytes} bytes"
        )));
    }
    Ok(())
}

/// The URL as the request line carried it.
fn url_length(uri: &Uri) -> usize {
    let scheme = uri.scheme_str().map_or(0, |scheme| scheme.len() + "://".len());
    let authority = uri.authority().map_or(0, |authority| authority.as_str().len());
    let rest = uri.path_and_query().map_or(0, |path| path.as_str().len());
    scheme + authority + rest
}

/// The announced body size; the server has already refused an unparseable `Content-Length`.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn fields(result: Result<(), ApiError>) -> Vec<String> {
        match result {
            Err(ApiError::Validation(ValidationError(details))) => {
                details.into_iter().map(|d| d.field).collect()
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn uri(text: &str) -> Uri {
        text.parse().expect("a test URI")
    }

    #[test]
    fn urls_are_measured_as_sent_and_refused_past_the_limit() {
        let at_limit = format!("/v1/events?q={}", "a".repeat(MAX_URL_BYTES - "/v1/events?q=".len()));
        assert_eq!(url_length(&uri(&at_limit)), MAX_URL_BYTES);
        assert!(judge(&uri(&at_limit), &HeaderMap::new(), 10).is_ok());
        assert_eq!(fields(judge(&uri(&format!("{at_limit}b")), &HeaderMap::new(), 10)), ["url"]);
        assert_eq!(
            url_length(&uri("http://hub.invalid:8080/v1?x=1")),
            "http://hub.invalid:8080/v1?x=1".len()
        );
    }

    #[test]
    fn headers_are_counted_each_repeat_included() {
        let mut headers = HeaderMap::new();
        for _ in 0..MAX_HEADER_COUNT {
            headers.append("x-repeat", HeaderValue::from_static("1"));
        }
        assert!(judge(&uri("/"), &headers, 10).is_ok());
        headers.append("x-one-more", HeaderValue::from_static("1"));
        assert_eq!(fields(judge(&uri("/"), &headers, 10)), ["headers"]);
    }

    #[test]
    fn an_announced_body_over_the_limit_is_too_large() {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("1024"));
        assert!(judge(&uri("/"), &headers, 1024).is_ok());
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("1025"));
        match judge(&uri("/"), &headers, 1024) {
            Err(ApiError::PayloadTooLarge(message)) => {
                assert!(message.contains("1025") && message.contains("limits.max_body_bytes"), "{message}");
            }
            other => panic!("expected payload_too_large, got {other:?}"),
        }
    }
}
