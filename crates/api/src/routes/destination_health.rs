//! `GET /v1/destinations/{id}/health`: the destination's circuit breaker, as every node sees
//! it, and how its recent attempts went.

use axum::extract::State;
use switchyard_core::api_key::Role;
use switchyard_core::flow::DestinationHealth;
use switchyard_core::time::now_millis;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::auth::Principal;
use crate::envelope::{Failure, Reply, Success};
use crate::error::ApiResult;
use crate::extract::ApiPath;
use crate::routes::destinations::load;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(destination_health))
}

/// The destination's circuit (state, opened-at, reason), success rate and latency.
///
/// The success rate and latency percentiles cover the circuit breaker's window (`window_ms`,
/// 60 s by default); the percentiles are histogram estimates, within about 10 %.
#[utoipa::path(
    get, path = "/v1/destinations/{id}/health", tag = "destinations",
    params(("id" = String, Path, description = "The destination's id")),
    responses(
        (status = 200, description = "The destination's health", body = Success<DestinationHealth>),
        (status = 404, description = "No such destination", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn destination_health(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply> {
    principal.require(Role::Viewer)?;
    let destination = load(&state, &id).await?;
    let flow = state.store().destination_flow(&destination.id).await?;
    let health = DestinationHealth::of(
        destination.id.clone(),
        flow.as_ref(),
        &destination.circuit_breaker,
        now_millis(),
    );
    Ok(Reply::ok(health))
}
