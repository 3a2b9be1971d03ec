//! `/v1/api-keys`: issue, list and revoke API keys (admin only). Tokens are shown once.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchyard_core::ValidationError;
use switchyard_core::api_key::{ApiKey, Role};
use switchyard_core::error::Violations;
use switchyard_core::id::ApiKeyId;
use switchyard_core::time::now_millis;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::auth::Principal;
use crate::envelope::{Failure, Paged, Reply, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::paging::{Collection, list_request};
use crate::routes::PageQuery;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(create_api_key, list_api_keys)).routes(routes!(revoke_api_key))
}

const MAX_NAME: usize = 200;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyInput {
    /// 1 to 200 characters once trimmed.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200, pattern = r"\S", example = "checkout service")]
    name: Option<String>,
    #[schema(value_type = Role, required = true, example = "publisher")]
    role: Option<String>,
}

/// A new key; `token` is shown this once and never again.
#[derive(Serialize, ToSchema)]
pub struct IssuedApiKey {
    #[serde(flatten)]
    key: ApiKey,
    #[schema(example = "sy_3kTqZ0c9mW2rVb8yXn5uP1aLd7fGh4jKs6eQo0tR")]
    token: String,
}

/// Issue an API key.
#[utoipa::path(
    post, path = "/v1/api-keys", tag = "api keys",
    request_body = ApiKeyInput,
    responses(
        (status = 201, description = "Issued; the token is in data.token", body = Success<IssuedApiKey>),
        (status = 400, description = "Invalid name or role", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn create_api_key(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(input): ApiJson<ApiKeyInput>,
) -> ApiResult<Reply> {
    principal.require(Role::Admin)?;
    let mut v = Violations::default();
    let name = input.name.as_deref().map(str::trim).unwrap_or("");
    if name.is_empty() || name.chars().count() > MAX_NAME {
        v.push("name", format!("must be 1 to {MAX_NAME} characters"));
    }
    let role = input.role.as_deref().and_then(Role::parse);
    if role.is_none() {
        v.push("role", "must be one of admin, operator, publisher, viewer");
    }
    v.into_result()?;
    let role = role.ok_or_else(|| ValidationError::single("role", "is required"))?;
    let issued = ApiKey::issue(name.to_owned(), role, now_millis());
    state.store().create_api_key(&issued.key).await?;
    let location = format!("/v1/api-keys/{}", issued.key.id);
    Ok(Reply::created(IssuedApiKey { key: issued.key, token: issued.token }, location))
}

/// List active API keys (never their tokens).
#[utoipa::path(
    get, path = "/v1/api-keys", tag = "api keys",
    params(PageQuery),
    responses((status = 200, description = "A page of keys", body = Paged<ApiKey>)),
    security(("api_key" = [])),
)]
async fn list_api_keys(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Reply> {
    principal.require(Role::Admin)?;
    let request = list_request(query.page, query.per_page, None, Collection::Mutable)?;
    let listing = state.store().list_api_keys(request).await?;
    Ok(Reply::list(listing, request, false))
}

/// Revoke an API key; it stops working at once.
#[utoipa::path(
    delete, path = "/v1/api-keys/{id}", tag = "api keys",
    params(("id" = String, Path, description = "The key's id (not its token)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such active key", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn revoke_api_key(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    principal.require(Role::Admin)?;
    let key_id = ApiKeyId::from_trusted(id.as_str());
    let revoked = state.store().revoke_api_key(&key_id, now_millis()).await;
    state.forget_api_keys();
    if !revoked? {
        return Err(ApiError::not_found("active API key", &id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
