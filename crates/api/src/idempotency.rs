//! `Idempotency-Key` on every POST: the first answer is kept 24 h and replayed for a retry with
//! the same key and body; the same key with another body is a conflict. "The same body" means
//! the same JSON, compared in canonical form (keys sorted, no insignificant whitespace), so a
//! client that re-serialises its retry is still recognised; a body that is not JSON is
//! compared byte for byte.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use switchyard_core::ValidationError;
use switchyard_core::store::{IdempotencyClaim, StoredResponse};
use switchyard_core::time::now_millis;

use crate::ApiState;
use crate::auth::Principal;
use crate::error::ApiError;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
const RETENTION_MS: i64 = 24 * 3_600_000;
/// How long a claim without a response holds its key: far longer than any request of this API
/// runs, so a claim this old was left by a node that died mid-request.
const ABANDONED_AFTER_MS: i64 = 10 * 60_000;
const MAX_KEY_LEN: usize = 255;

/// Runs `inner` once per idempotency key of a `POST` that sends one, replaying its answer to
/// the requests that repeat the key.
pub(crate) async fn around<F, Fut>(state: &ApiState, request: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    if request.method() != Method::POST || !request.headers().contains_key(HEADER) {
        return inner(request).await;
    }
    match run_once(state, request, inner).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run_once<F, Fut>(state: &ApiState, request: Request, inner: F) -> Result<Response, Response>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let key = idempotency_key(&request).map_err(IntoResponse::into_response)?;
    let scope = request
        .extensions()
        .get::<Principal>()
        .map(Principal::subject)
        .ok_or_else(|| ApiError::Unauthorized("authentication is required".into()).into_response())?;
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, state.settings().max_body_bytes).await.map_err(|_| {
        ApiError::PayloadTooLarge("the request body is larger than the limit (limits.max_body_bytes)".into())
            .into_response()
    })?;
    let request_hash =
        fingerprint(&parts.method, parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or(""), &bytes);
    let now = now_millis();
    let claim = state
        .store()
        .claim_idempotency_key(&scope, &key, &request_hash, now, now - RETENTION_MS, now - ABANDONED_AFTER_MS)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    match claim {
        IdempotencyClaim::Claimed => {}
        IdempotencyClaim::InProgress { .. } => {
            return Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still being processed; retry later".into(),
            )
            .into_response());
        }
        IdempotencyClaim::Completed { request_hash: stored_hash, response } => {
            if stored_hash != request_hash {
                return Err(ApiError::Conflict(
                    "this Idempotency-Key was used with a different request; use a new key".into(),
                )
                .into_response());
            }
            return Ok(replay(response));
        }
    }
    let response = inner(Request::from_parts(parts, Body::from(bytes))).await;
    let status = response.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        // A failure the client should retry must not be frozen under its key.
        if let Err(error) = state.store().release_idempotency_key(&scope, &key, now).await {
            tracing::warn!(%error, "an idempotency key could not be released");
        }
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let stored = StoredResponse {
        status: status.as_u16(),
        location: parts.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned),
        body: body.to_vec(),
    };
    if let Err(error) = state.store().complete_idempotency_key(&scope, &key, now, &stored).await {
        tracing::warn!(%error, "an idempotent response could not be stored");
        let _ = state.store().release_idempotency_key(&scope, &key, now).await;
    }
    Ok(Response::from_parts(parts, Body::from(body)))
}

fn idempotency_key(request: &Request) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::Validation(ValidationError::single(
            "Idempotency-Key",
            "must be 1 to 255 visible ASCII characters",
        ))
    };
    let key = request.headers().get(HEADER).and_then(|v| v.to_str().ok()).ok_or_else(invalid)?;
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    Ok(key.to_owned())
}

fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let canonical = switchyard_core::json::canonical(body);
    let mut hasher = Sha256::new();
    hasher.update(method.as_str().as_bytes());
    hasher.update(b" ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    // Canonical JSON is always valid JSON and the fallback never is, so the two cannot collide.
    hasher.update(canonical.as_deref().unwrap_or(body));
    switchyard_core::digest::hex(&hasher.finalize())
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    if let Some(location) = stored.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_compare_json_not_bytes() {
        let compact = fingerprint(&Method::POST, "/v1/events", br#"{"a":1,"b":[true,null]}"#);
        let spaced = fingerprint(&Method::POST, "/v1/events", b"{ \"b\": [true, null],\n  \"a\": 1 }");
        assert_eq!(compact, spaced);
        assert_ne!(compact, fingerprint(&Method::POST, "/v1/events", br#"{"a":2,"b":[true,null]}"#));
        assert_ne!(compact, fingerprint(&Method::POST, "/v1/other", br#"{"a":1,"b":[true,null]}"#));
        let broken = fingerprint(&Method::POST, "/v1/events", b"{\"a\":");
        assert_ne!(broken, fingerprint(&Method::POST, "/v1/events", b"{\"a\": "));
    }
}
