//! `/v1/destinations`: the external services events are delivered to.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::api_key::Role;
use switchyard_core::destination::{
    CircuitBreakerPolicy, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, Destination, DestinationKind,
    DestinationView, RateLimit, RetryPolicy, forget_shown_rotation, restore_absent_secrets,
};
use switchyard_core::error::Violations;
use switchyard_core::id::DestinationId;
use switchyard_core::time::now_millis;
use switchyard_core::transport::Transports;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::auth::Principal;
use crate::envelope::{Failure, Paged, Reply, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, IfMatch, MergePatch, from_value, merge_patch};
use crate::paging::{Collection, list_request};
use crate::routes::{PageQuery, required_name};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(create_destination, list_destinations)).routes(routes!(
        get_destination,
        replace_destination,
        patch_destination,
        delete_destination
    ))
}

const MAX_TIMEOUT_MS: u64 = 300_000;
const MAX_CONNECT_TIMEOUT_MS: u64 = 60_000;

/// A destination as written by clients. Secrets inside `config` are write-only: answers show
/// `"<name>_set": true` instead, and a PUT that leaves a secret out keeps the stored one. The
/// signing secret's rotation state is set only by `POST …/signing-secret/rotate`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DestinationInput {
    /// 1 to 200 characters once trimmed.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200, pattern = r"\S", example = "billing webhook")]
    name: Option<String>,
    #[schema(value_type = DestinationKind, required = true, example = "http")]
    kind: Option<String>,
    /// Kind-specific; for `http`: `url`, `method`, `headers`, `secret_headers` (sent like
    /// `headers`, but write-only: shown as `secret_headers_set` with each name `true`), `auth`,
    /// `signing_secret`. `previous_signing_secret` and `previous_signing_secret_expires_at` are
    /// refused: only `POST …/signing-secret/rotate` sets them.
    #[schema(value_type = Object, required = true, example = json!({"url": "https://billing.example.com/hooks"}))]
    config: Option<Value>,
    /// Whole-request timeout (default 30000).
    #[schema(minimum = 1, maximum = 300_000)]
    timeout_ms: Option<u64>,
    /// Connect timeout (default 5000, or `timeout_ms` when shorter); at most `timeout_ms`.
    #[schema(minimum = 1, maximum = 60_000)]
    connect_timeout_ms: Option<u64>,
    retry: Option<RetryPolicy>,
    rate_limit: Option<RateLimit>,
    circuit_breaker: Option<CircuitBreakerPolicy>,
    enabled: Option<bool>,
}

impl DestinationInput {
    /// Validates the whole input; `stored` is the destination being replaced, whose secrets
    /// the input may leave out. The kind's transport checks `config`, which may resolve host
    /// names (the SSRF guard).
    async fn into_destination(
        self,
        id: DestinationId,
        stored: Option<&Destination>,
        now: i64,
        transports: &Transports,
    ) -> Result<Destination, ValidationError> {
        let mut v = Violations::default();
        let name = required_name(&mut v, self.name.as_deref());
        let kind = match self.kind.as_deref() {
            Some(raw) => {
                let kind = DestinationKind::parse(raw);
                if kind.is_none() {
                    v.push("kind", "must be one of http, nats, amqp, redis, mqtt");
                }
                kind
            }
            None => {
                v.push("kind", "is required");
                None
            }
        };
        let validated = match (kind, self.config) {
            (Some(kind), Some(mut config)) => {
                if let Some(stored) = stored.filter(|s| s.kind == kind) {
                    restore_absent_secrets(&mut config, stored);
                }
                v.check(transports.validate(kind, config).await)
            }
            (_, None) => {
                v.push("config", "is required");
                None
            }
            (None, Some(_)) => None,
        };
        let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
            v.push("timeout_ms", format!("must be between 1 and {MAX_TIMEOUT_MS}"));
        }
        let connect_timeout_ms =
            self.connect_timeout_ms.unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS.min(timeout_ms));
        if !(1..=MAX_CONNECT_TIMEOUT_MS).contains(&connect_timeout_ms) || connect_timeout_ms > timeout_ms {
            v.push(
                "connect_timeout_ms",
                format!("must be between 1 and {MAX_CONNECT_TIMEOUT_MS} and at most timeout_ms"),
            );
        }
        let retry = self.retry.unwrap_or_default();
        v.check(retry.validate().map_err(|e| e.nested("retry")));
        if let Some(limit) = &self.rate_limit {
            v.check(limit.validate().map_err(|e| e.nested("rate_limit")));
        }
        let circuit_breaker = self.circuit_breaker.unwrap_or_default();
        v.check(circuit_breaker.validate().map_err(|e| e.nested("circuit_breaker")));
        v.into_result()?;
        let (Some(name), Some(kind), Some(validated)) = (name, kind, validated) else {
            return Err(ValidationError::single("body", "is incomplete"));
        };
        Ok(Destination {
            id,
            name,
            kind,
            config: validated.config,
            secrets: validated.secrets,
            timeout_ms,
            connect_timeout_ms,
            retry,
            rate_limit: self.rate_limit,
            circuit_breaker,
            enabled: self.enabled.unwrap_or(true),
            version: stored.map_or(1, |s| s.version),
            created_at: stored.map_or(now, |s| s.created_at),
            updated_at: now,
        })
    }
}

/// The writable form of a stored destination, secrets included: the base of a merge patch.
fn writable(destination: &Destination) -> Value {
    serde_json::json!({
        "name": destination.name,
        "kind": destination.kind,
        "config": destination.writable_config(),
        "timeout_ms": destination.timeout_ms,
        "connect_timeout_ms": destination.connect_timeout_ms,
        "retry": destination.retry,
        "rate_limit": destination.rate_limit,
        "circuit_breaker": destination.circuit_breaker,
        "enabled": destination.enabled,
    })
}

fn shown(destination: &Destination) -> Reply {
    Reply::ok(destination.view()).etag(destination.version)
}

/// Create a destination.
#[utoipa::path(
    post, path = "/v1/destinations", tag = "destinations",
    request_body = DestinationInput,
    responses(
        (status = 201, description = "Created", body = Success<DestinationView>),
        (status = 400, description = "Invalid destination", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn create_destination(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(input): ApiJson<DestinationInput>,
) -> ApiResult<Reply> {
    principal.require(Role::Operator)?;
    let transports = state.control().transports();
    let destination =
        input.into_destination(DestinationId::generate(), None, now_millis(), transports).await?;
    state.store().create_destination(&destination).await?;
    let location = format!("/v1/destinations/{}", destination.id);
    Ok(Reply::created(destination.view(), location).etag(destination.version))
}

/// List destinations, oldest first.
#[utoipa::path(
    get, path = "/v1/destinations", tag = "destinations",
    params(PageQuery),
    responses((status = 200, description = "A page of destinations", body = Paged<DestinationView>)),
    security(("api_key" = [])),
)]
async fn list_destinations(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Reply> {
    principal.require(Role::Viewer)?;
    let request = list_request(query.page, query.per_page, None, Collection::Mutable)?;
    let listing = state.store().list_destinations(request).await?;
    Ok(Reply::list(listing.map(|d| d.view()), request, false))
}

pub(crate) async fn load(state: &ApiState, raw: &str) -> Result<Destination, ApiError> {
    let id = DestinationId::from_trusted(raw);
    state.store().get_destination(&id).await?.ok_or_else(|| ApiError::not_found("destination", raw))
}

/// Read a destination (secrets are shown as `<name>_set`).
#[utoipa::path(
    get, path = "/v1/destinations/{id}", tag = "destinations",
    params(("id" = String, Path, description = "The destination's id")),
    responses(
        (status = 200, description = "The destination", body = Success<DestinationView>),
        (status = 404, description = "No such destination", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn get_destination(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply> {
    principal.require(Role::Viewer)?;
    Ok(shown(&load(&state, &id).await?))
}

async fn save(
    state: &ApiState,
    current: &Destination,
    next: Destination,
    if_match: &IfMatch,
) -> ApiResult<Reply> {
    let stored =
        state.store().update_destination(&next, current.version).await.map_err(|e| if_match.on_race(e))?;
    // This node's connection to the old configuration closes now; other nodes replace theirs
    // at their next delivery to it.
    state.control().transports().forget(current.kind, &current.id).await;
    Ok(shown(&stored))
}

/// Replace a destination. Secrets left out of `config` keep their stored values.
#[utoipa::path(
    put, path = "/v1/destinations/{id}", tag = "destinations",
    params(("id" = String, Path, description = "The destination's id"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 when stale")),
    request_body = DestinationInput,
    responses(
        (status = 200, description = "Replaced", body = Success<DestinationView>),
        (status = 400, description = "Invalid destination", body = Failure),
        (status = 404, description = "No such destination", body = Failure),
        (status = 412, description = "If-Match is stale", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn replace_destination(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    if_match: IfMatch,
    ApiJson(input): ApiJson<DestinationInput>,
) -> ApiResult<Reply> {
    principal.require(Role::Operator)?;
    let current = load(&state, &id).await?;
    if_match.check(current.version)?;
    let transports = state.control().transports();
    let mut next =
        input.into_destination(current.id.clone(), Some(&current), now_millis(), transports).await?;
    next.keep_rotation_of(&current);
    save(&state, &current, next, &if_match).await
}

/// Update a destination with a JSON Merge Patch (`null` removes a field; a removed signing
/// secret is replaced by a new one).
#[utoipa::path(
    patch, path = "/v1/destinations/{id}", tag = "destinations",
    params(("id" = String, Path, description = "The destination's id"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 when stale")),
    request_body(content = Object, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Updated", body = Success<DestinationView>),
        (status = 400, description = "Invalid result", body = Failure),
        (status = 404, description = "No such destination", body = Failure),
        (status = 412, description = "If-Match is stale", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn patch_destination(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    if_match: IfMatch,
    MergePatch(patch): MergePatch,
) -> ApiResult<Reply> {
    principal.require(Role::Operator)?;
    let current = load(&state, &id).await?;
    if_match.check(current.version)?;
    let mut merged = writable(&current);
    merge_patch(&mut merged, &Value::Object(patch));
    if let Some(config) = merged.get_mut("config") {
        forget_shown_rotation(config, &current);
    }
    let input: DestinationInput = from_value(merged)?;
    let transports = state.control().transports();
    let mut next = input.into_destination(current.id.clone(), None, now_millis(), transports).await?;
    next.created_at = current.created_at;
    next.keep_rotation_of(&current);
    save(&state, &current, next, &if_match).await
}

/// Delete a destination that no subscription uses any more.
#[utoipa::path(
    delete, path = "/v1/destinations/{id}", tag = "destinations",
    params(("id" = String, Path, description = "The destination's id"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 when stale")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such destination", body = Failure),
        (status = 409, description = "Subscriptions still use it", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn delete_destination(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    principal.require(Role::Operator)?;
    let current = load(&state, &id).await?;
    if_match.check(current.version)?;
    if !state.store().delete_destination(&current.id).await? {
        return Err(ApiError::not_found("destination", &id));
    }
    state.control().transports().forget(current.kind, &current.id).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
