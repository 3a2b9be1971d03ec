//! The dashboard at `/ui`: server-rendered pages, signed in with a session cookie.

use axum::Router;

use crate::ApiState;

/// Every `/ui` route, with its own authentication (a session cookie, never a bearer token).
pub fn router(_state: ApiState) -> Router<ApiState> {
    Router::new()
}
