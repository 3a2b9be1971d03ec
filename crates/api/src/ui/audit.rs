//! The dashboard's writes go into the audit log as the API's do, under the action of the `/v1`
//! route that does the same thing, so the log reads alike whichever way a change was made.

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use switchyard_core::audit::{self, AuditEntry, AuditEntryId, AuditOutcome, AuditResource};
use switchyard_core::time::now_millis;

use crate::ApiState;
use crate::auth::Principal;
use crate::request_id;

/// The `/v1` route each dashboard form stands for.
const ROUTES: [(&str, &str); 5] = [
    ("/ui/destinations/{id}/pause", "/v1/destinations/{id}/pause"),
    ("/ui/destinations/{id}/resume", "/v1/destinations/{id}/resume"),
    ("/ui/destinations/{id}/test", "/v1/destinations/{id}/test"),
    ("/ui/destinations/{id}/rotate-secret", "/v1/destinations/{id}/signing-secret/rotate"),
    ("/ui/dead-letters/replay", "/v1/dead-letters/replay"),
];

pub fn api_route(ui_route: &str) -> Option<&'static str> {
    ROUTES.iter().find(|(ui, _)| *ui == ui_route).map(|(_, api)| *api)
}

/// Middleware inside the session guard: records each write once answered. A failed write of
/// the entry is logged, never answered, as on `/v1`.
pub async fn record(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().and_then(|m| api_route(m.as_str()));
    let principal = request.extensions().get::<Principal>().cloned();
    let (Some(route), Some(principal), true) = (route, principal, request.method() == Method::POST) else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let id = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|params| params.iter().next().map(|(_, value)| value.to_owned()));
    let response = next.run(Request::from_parts(parts, body)).await;
    let (action, kind) = audit::describe("POST", route);
    let entry = AuditEntry {
        id: AuditEntryId::generate(),
        at: now_millis(),
        actor: principal.subject(),
        role: principal.role,
        action,
        method: "POST".to_owned(),
        route: route.to_owned(),
        resource: AuditResource { kind, id },
        request_id: request_id::current().unwrap_or_default(),
        outcome: AuditOutcome::of_status(response.status().as_u16()),
        seq: 0,
    };
    if let Err(error) = state.store().append_audit_entries(&[entry]).await {
        tracing::warn!(%error, "the audit entry of a dashboard action could not be written");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_is_audited_as_its_api_route() {
        assert_eq!(
            api_route("/ui/destinations/{id}/rotate-secret"),
            Some("/v1/destinations/{id}/signing-secret/rotate")
        );
        assert_eq!(api_route("/ui/sign-out"), None);
        for (_, api) in ROUTES {
            assert!(audit::is_audited("POST", api), "{api}");
        }
    }
}
