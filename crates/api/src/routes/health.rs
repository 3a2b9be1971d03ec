//! `/health/live` and `/health/ready`: unauthenticated probes for orchestrators.

use std::time::Duration;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::envelope::{Failure, Reply, Success};
use crate::error::{ApiError, ApiResult};

/// How long readiness waits for the database. An orchestrator's probe has a timeout of its own
/// (1 s by default in Kubernetes); a database that does not answer by then is reported as not
/// ready, rather than leaving the probe to wait out the pool's `acquire_timeout_ms`.
const READY_PING_TIMEOUT: Duration = Duration::from_millis(900);

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(live)).routes(routes!(ready))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    status: &'static str,
    /// The database backend, on readiness answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "sqlite")]
    database: Option<&'static str>,
}

/// Whether the process is up.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "Alive", body = Success<Health>)))]
async fn live() -> Reply {
    Reply::ok(Health { status: "ok", database: None })
}

/// Whether the node can serve: the database answers, its schema is current, it can write (a
/// SQLite database out of space is not ready until it has room again) and the delivery engine
/// is running.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Success<Health>),
        (status = 503, description = "Not ready; the message says why", body = Failure),
    ))]
async fn ready(State(state): State<ApiState>) -> ApiResult<Reply> {
    match tokio::time::timeout(READY_PING_TIMEOUT, state.store().ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ApiError::Unavailable(format!("the database is not ready: {e}"))),
        Err(_) => {
            return Err(ApiError::Unavailable(format!(
                "the database did not answer within {} ms",
                READY_PING_TIMEOUT.as_millis()
            )));
        }
    }
    if !state.control().is_running() {
        return Err(ApiError::Unavailable("the delivery engine is not running".into()));
    }
    Ok(Reply::ok(Health { status: "ok", database: Some(state.store().backend()) }))
}
