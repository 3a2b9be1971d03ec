//! Actions on one destination: send a test, pause and resume delivery, read and rotate its
//! signing secret.

use axum::extract::State;
use serde::Serialize;
use serde_json::Value;
use switchyard_core::api_key::Role;
use switchyard_core::destination::{
    Destination, DestinationView, PREVIOUS_SIGNING_SECRET, PREVIOUS_SIGNING_SECRET_EXPIRES_AT,
};
use switchyard_core::time::{self, Millis, now_millis};
use switchyard_engine::TestResult;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::auth::Principal;
use crate::envelope::{Failure, Reply, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;
use crate::routes::destinations::load;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(test_destination))
        .routes(routes!(pause_destination))
        .routes(routes!(resume_destination))
        .routes(routes!(get_signing_secret))
        .routes(routes!(rotate_signing_secret))
}

pub(crate) const SIGNING_SECRET: &str = "signing_secret";
/// How long the replaced secret keeps signing after a rotation, so receivers can switch over.
const ROTATION_OVERLAP_MS: Millis = 24 * 3_600_000;

/// Send a `switchyard.ping` event to the destination now and report how it went.
///
/// Nothing is stored or retried; the answer is 200 whatever the destination said.
#[utoipa::path(
    post, path = "/v1/destinations/{id}/test", tag = "destinations",
    params(("id" = String, Path, description = "The destination's id")),
    responses(
        (status = 200, description = "The outcome of the test send", body = Success<TestResult>),
        (status = 404, description = "No such destination", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn test_destination(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply> {
    principal.require(Role::Operator)?;
    let destination = load(&state, &id).await?;
    Ok(Reply::ok(state.control().test_destination(&destination).await))
}

async fn set_enabled(state: &ApiState, id: &str, enabled: bool) -> ApiResult<Reply> {
    let stored = store_enabled(state, id, enabled).await?;
    Ok(Reply::ok(stored.view()).etag(stored.version))
}

/// Pauses or resumes the destination (the dashboard's buttons too).
pub(crate) async fn store_enabled(state: &ApiState, id: &str, enabled: bool) -> ApiResult<Destination> {
    let current = load(state, id).await?;
    let next = Destination { enabled, updated_at: now_millis(), ..current.clone() };
    let stored = state.store().update_destination(&next, current.version).await?;
    if enabled {
        state.control().wake();
    }
    Ok(stored)
}

/// Stop delivering to the destination; its deliveries wait, none fail.
#[utoipa::path(
    post, path = "/v1/destinations/{id}/pause", tag = "destinations",
    params(("id" = String, Path, description = "The destination's id")),
    responses(
        (status = 200, description = "Paused (enabled = false)", body = Success<DestinationView>),
        (status = 404, description = "No such destination", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn pause_destination(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply> {
    principal.require(Role::Operator)?;
    set_enabled(&state, &id, false).await
}

/// Resume delivering to the destination; waiting deliveries start at once.
#[utoipa::path(
    post, path = "/v1/destinations/{id}/resume", tag = "destinations",
    params(("id" = String, Path, description = "The destination's id")),
    responses(
        (status = 200, description = "Resumed (enabled = true)", body = Success<DestinationView>),
        (status = 404, description = "No such destination", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn resume_destination(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply> {
    principal.require(Role::Operator)?;
    set_enabled(&state, &id, true).await
}

#[derive(Serialize, ToSchema)]
pub struct SigningSecret {
    /// `whsec_…`: verify `webhook-signature` with it.
    signing_secret: String,
    /// Until when the secret replaced by the last rotation still signs too.
    #[schema(value_type = Option<String>, format = DateTime)]
    previous_secret_expires_at: Option<String>,
}

fn signing_secret_of(destination: &Destination) -> Result<SigningSecret, ApiError> {
    let secret =
        destination.secrets.get(SIGNING_SECRET).and_then(Value::as_str).ok_or_else(|| {
            ApiError::NotFound(format!("destination {} has no signing secret", destination.id))
        })?;
    let expires = destination
        .config
        .get(PREVIOUS_SIGNING_SECRET_EXPIRES_AT)
        .and_then(Value::as_i64)
        .filter(|at| *at > now_millis());
    Ok(SigningSecret {
        signing_secret: secret.to_owned(),
        previous_secret_expires_at: expires.map(time::format_rfc3339),
    })
}

/// Read the destination's signing secret.
#[utoipa::path(
    get, path = "/v1/destinations/{id}/signing-secret", tag = "destinations",
    params(("id" = String, Path, description = "The destination's id")),
    responses(
        (status = 200, description = "The secret", body = Success<SigningSecret>),
        (status = 404, description = "No such destination, or it does not sign", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn get_signing_secret(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply> {
    principal.require(Role::Operator)?;
    let destination = load(&state, &id).await?;
    Ok(Reply::ok(signing_secret_of(&destination)?))
}

/// Replace the signing secret; the old one keeps signing beside it for 24 hours.
#[utoipa::path(
    post, path = "/v1/destinations/{id}/signing-secret/rotate", tag = "destinations",
    params(("id" = String, Path, description = "The destination's id")),
    responses(
        (status = 200, description = "The new secret", body = Success<SigningSecret>),
        (status = 404, description = "No such destination, or it does not sign", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn rotate_signing_secret(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply> {
    principal.require(Role::Operator)?;
    let stored = rotate(&state, &id).await?;
    Ok(Reply::ok(signing_secret_of(&stored)?).etag(stored.version))
}

/// Rotates the signing secret, keeping the old one valid for the overlap; answers the stored
/// destination (its `signing_secret` is the new one).
pub(crate) async fn rotate(state: &ApiState, id: &str) -> ApiResult<Destination> {
    let current = load(state, id).await?;
    let old = signing_secret_of(&current)?.signing_secret;
    let fresh = state.control().transports().get(current.kind).and_then(|t| t.new_signing_secret());
    let Some(fresh) = fresh else {
        return Err(ApiError::NotFound(format!("destination {} does not sign what it sends", current.id)));
    };
    let now = now_millis();
    let mut next = Destination { updated_at: now, ..current.clone() };
    next.secrets.insert(SIGNING_SECRET.into(), Value::from(fresh));
    next.secrets.insert(PREVIOUS_SIGNING_SECRET.into(), Value::from(old));
    if let Some(config) = next.config.as_object_mut() {
        config.insert(PREVIOUS_SIGNING_SECRET_EXPIRES_AT.into(), Value::from(now + ROTATION_OVERLAP_MS));
    }
    Ok(state.store().update_destination(&next, current.version).await?)
}
