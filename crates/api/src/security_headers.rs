//! Response headers that tell browsers how to treat every answer: never sniff a content type
//! (`X-Content-Type-Options: nosniff`, on all of them, errors included), never store a `/v1`
//! answer (`Cache-Control: no-store`: they carry API key tokens, signing secrets and event
//! payloads), and never frame the `/docs` page (`Content-Security-Policy: frame-ancestors
//! 'none'`, and `X-Frame-Options: DENY` for browsers that predate it). The dashboard at `/ui`
//! gets a strict policy: its own script and stylesheet only, nothing inline, no framing; its
//! pages are never stored either (they show payloads and, once, a signing secret), while its
//! assets keep the `Cache-Control` their handler set.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::response::Response;

/// The dashboard's Content-Security-Policy.
pub const UI_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A step of [`crate::front`]: adds the headers to every answer `inner` gives, whichever layer
/// made it.
pub(crate) async fn around<F, Fut>(request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let path = request.uri().path();
    let api = is_under(path, "/v1");
    let docs = is_under(path, "/docs");
    let ui = is_under(path, "/ui");
    let ui_asset = is_under(path, "/ui/assets");
    let mut response = inner(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if api {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if ui {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(UI_POLICY));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        if !ui_asset {
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
    }
    if docs {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("frame-ancestors 'none'"));
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}

/// `path` is `prefix` or lies below it (`/v1`, `/v1/events`, but not `/v1events`).
fn is_under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::is_under;

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(is_under("/v1", "/v1"));
        assert!(is_under("/v1/api-keys", "/v1"));
        assert!(is_under("/docs/", "/docs"));
        assert!(!is_under("/v1events", "/v1"));
        assert!(!is_under("/metrics", "/v1"));
    }
}
