//! The steps a request passes around its handler, in two layers: [`front`] for every request
//! (security headers on the answer, the request id, metrics, admission on the head alone, the
//! deadline) and [`guard`] for `/v1` (authentication, the rate limit, the audit log,
//! idempotency keys), each list outermost first.
//!
//! Each step was a layer of its own. axum wraps every layer of a router around each route in
//! a box of its own, and on every request each layer clones the boxed layers beneath it; with
//! ten layers that was about a seventh of the server's CPU under `ingest`
//! (docs/benchmarks.md). Here they run in the same order, each around the next.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::audit::AuditRecorder;
use crate::rate_limit::RateLimiter;
use crate::{
    ApiState, admission, audit, auth, deadline, idempotency, observe, rate_limit, request_id,
    security_headers,
};

/// Middleware: runs the steps around the rest of the router.
pub async fn front(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    security_headers::around(request, |request| {
        request_id::around(request, |request| {
            observe::around(&state, request, |request| {
                admission::around(&state, request, |request| {
                    deadline::around(&state, request, |request| next.run(request))
                })
            })
        })
    })
    .await
}

/// What [`guard`] needs besides the state.
#[derive(Clone)]
pub struct Guard {
    pub state: ApiState,
    pub limiter: Arc<RateLimiter>,
    pub recorder: AuditRecorder,
}

/// Middleware of `/v1`: runs its steps around the handler.
pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let Guard { state, limiter, recorder } = &guard;
    auth::authenticated(state, request, |request| {
        rate_limit::around(limiter, request, |request| {
            audit::around(recorder, request, |request| {
                idempotency::around(state, request, |request| next.run(request))
            })
        })
    })
    .await
}
