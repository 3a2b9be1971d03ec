//! The dashboard at `/ui`: server-rendered pages, signed in with a session cookie.
//!
//! Every page is plain HTML from the server; the one script (`assets/app.js`) only adds the
//! live parts (the events tail, replay progress), so each page works without it. Nothing is
//! in the OpenAPI document: these are pages, not API.

mod assets;
mod audit;
mod layout;
mod pages;
mod session;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};

use crate::ApiState;

/// Every `/ui` route, with its own authentication (a session cookie, never a bearer token).
pub fn router(state: ApiState) -> Router<ApiState> {
    let signed_in = Router::new()
        .route("/ui", get(pages::overview::page))
        .route("/ui/events", get(pages::events::list))
        .route("/ui/events/stream", get(crate::routes::streams::events))
        .route("/ui/deliveries/stream", get(crate::routes::streams::deliveries))
        .route("/ui/events/{id}", get(pages::event::page))
        .route("/ui/destinations", get(pages::destinations::list))
        .route("/ui/destinations/{id}/pause", post(pages::destinations::pause))
        .route("/ui/destinations/{id}/resume", post(pages::destinations::resume))
        .route("/ui/destinations/{id}/test", post(pages::destinations::test_send))
        .route("/ui/destinations/{id}/rotate-secret", post(pages::destinations::rotate_secret))
        .route("/ui/dead-letters", get(pages::dead_letters::list))
        .route("/ui/dead-letters/replay", post(pages::dead_letters::replay))
        .route("/ui/dead-letters/progress", get(pages::dead_letters::progress))
        .route("/ui/sources", get(pages::sources::list))
        .route("/ui/audit-log", get(pages::audit::list))
        .route("/ui/sign-out", post(session::sign_out))
        .route_layer(from_fn_with_state(state.clone(), audit::record))
        .route_layer(from_fn_with_state(state, session::require));
    Router::new()
        .route("/ui/sign-in", get(session::sign_in_form).post(session::sign_in))
        .route("/ui/assets/app.css", get(assets::css))
        .route("/ui/assets/app.js", get(assets::js))
        .merge(signed_in)
}
