//! `/v1/audit-log`: who wrote what on the control plane, and how it went (admin only).

use axum::extract::State;
use serde::Deserialize;
use switchyard_core::api_key::Role;
use switchyard_core::audit::{AuditEntry, AuditFilter};
use switchyard_core::error::Violations;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::auth::Principal;
use crate::envelope::{Failure, Paged, Reply};
use crate::error::ApiResult;
use crate::extract::ApiQuery;
use crate::paging::{Collection, instant, list_request};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(list_audit_log))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditLogQuery {
    /// Page number (1-based); answers totals.
    #[param(minimum = 1, maximum = 4_294_967_295_u32, format = Int64)]
    page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<u32>,
    /// Keyset cursor: the `pagination.next_cursor` of the previous page.
    #[param(format = "cursor")]
    after: Option<String>,
    /// Exact actor (`key:<id>` for an API key, `jwt:<issuer>|<subject>` for a JWT).
    actor: Option<String>,
    /// Exact action, e.g. `destination.create`.
    action: Option<String>,
    /// Answered at or after (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Answered before (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
}

/// List the audit log in the order requests were answered.
///
/// One entry per control-plane request that may write (every method but GET), successful or
/// not: the actor and role, the action and resource, the request id and the outcome.
/// Publishing events (`POST /v1/events`, `POST /v1/events/batch`) is not audited; each event
/// records its publisher in `published_by` instead. Page by number (`page`, with totals) or
/// by cursor (`after`).
#[utoipa::path(
    get, path = "/v1/audit-log", tag = "audit log",
    params(AuditLogQuery),
    responses(
        (status = 200, description = "A page of audit entries", body = Paged<AuditEntry>),
        (status = 400, description = "Invalid query", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn list_audit_log(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<AuditLogQuery>,
) -> ApiResult<Reply> {
    principal.require(Role::Admin)?;
    let mut v = Violations::default();
    let request =
        v.check(list_request(query.page, query.per_page, query.after.as_deref(), Collection::AppendOnly));
    let since = v.check(instant("since", query.since.as_deref())).flatten();
    let until = v.check(instant("until", query.until.as_deref())).flatten();
    v.into_result()?;
    let request = request.unwrap_or_default();
    let filter = AuditFilter { actor: query.actor, action: query.action, since, until };
    let listing = state.store().list_audit_log(&filter, request).await?;
    Ok(Reply::list(listing, request, true))
}
