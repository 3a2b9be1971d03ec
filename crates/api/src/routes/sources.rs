//! `/v1/sources`: where events enter the hub other than through `POST /v1/events` (today,
//! signed provider webhooks; see `source_webhook` for the public endpoint).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::api_key::Role;
use switchyard_core::error::Violations;
use switchyard_core::id::SourceId;
use switchyard_core::secret_paths::split_secrets;
use switchyard_core::source::pull::Pullers;
use switchyard_core::source::{
    SECRET_PATHS, Source, SourceKind, SourceView, WebhookConfig, restore_absent_secrets,
};
use switchyard_core::time::now_millis;
use switchyard_core::transport::ValidatedConfig;
use switchyard_engine::SourceIntake;
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
    OpenApiRouter::new().routes(routes!(create_source, list_sources)).routes(routes!(
        get_source,
        replace_source,
        patch_source,
        delete_source
    ))
}

/// A source as written by clients. Secrets inside `config` (`verification.secret`,
/// `verification.password`, `verification.value`, a pull kind's `password`) are write-only: answers show
/// `"<name>_set": true` instead, and a write that leaves one out keeps the stored one (unless
/// the verification `type` changes).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceInput {
    /// 1 to 200 characters once trimmed.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200, pattern = r"\S", example = "github")]
    name: Option<String>,
    #[schema(value_type = SourceKind, required = true, example = "webhook")]
    kind: Option<String>,
    /// For `webhook`: `verification` (`{"type": "standard_webhooks" | "github" | "stripe" |
    /// "shopify" | "hmac" | "basic" | "api_key" | "none", …}`), `event_type` and `event_id`
    /// (`{"header": …, "prefix": …}`, `{"jq": …, "prefix": …}`, `{"value": …}` for the type;
    /// the provider's defaults when left out), `forward_headers` (names kept in the event's
    /// `metadata.headers`) and `rate_limit` (`{"per_second", "burst"}`, default 100/s, burst 500).
    /// For `outbox`: `database_url`, `table`, `columns`, `after_relay` (`delete` | `mark`),
    /// `mark_column`, `sequence_column`, `batch_size`, `poll_interval_ms`. For `nats`: `url`,
    /// `subject`, `stream`, `durable`, `auth`. For `amqp`: `url`, `queue`, `prefetch`. A
    /// password in a URL is taken out and kept as the write-only secret `password`.
    #[schema(value_type = Object, required = true, example = json!({"verification": {"type": "github", "secret": "It's a Secret to Everybody"}}))]
    config: Option<Value>,
    enabled: Option<bool>,
}

impl SourceInput {
    /// Validates the whole input; `stored` is the source being replaced, whose secrets the
    /// input may leave out.
    async fn into_source(
        self,
        pullers: &Pullers,
        id: SourceId,
        stored: Option<&Source>,
        now: i64,
    ) -> Result<Source, ValidationError> {
        let mut v = Violations::default();
        let name = required_name(&mut v, self.name.as_deref());
        let kind = match self.kind.as_deref() {
            Some(raw) => {
                let kind = SourceKind::parse(raw);
                if kind.is_none() {
                    v.push("kind", "must be webhook, outbox, nats or amqp");
                }
                kind
            }
            None => {
                v.push("kind", "is required");
                None
            }
        };
        let config = match (self.config, kind) {
            (Some(mut config), Some(kind)) => {
                if let Some(stored) = stored {
                    restore_absent_secrets(&mut config, stored);
                }
                match checked_config(pullers, kind, config).await {
                    Ok(validated) => Some(validated),
                    Err(error) => {
                        v.absorb(error);
                        None
                    }
                }
            }
            (Some(_), None) => None,
            (None, _) => {
                v.push("config", "is required");
                None
            }
        };
        v.into_result()?;
        let (Some(name), Some(kind), Some(ValidatedConfig { config, secrets })) = (name, kind, config) else {
            return Err(ValidationError::single("body", "is incomplete"));
        };
        Ok(Source {
            id,
            name,
            kind,
            config,
            secrets,
            enabled: self.enabled.unwrap_or(true),
            version: stored.map_or(1, |s| s.version),
            created_at: stored.map_or(now, |s| s.created_at),
            updated_at: now,
        })
    }
}

/// Checks a configuration of `kind` as written (its stored secrets put back) and splits out its
/// secrets: a webhook's here, a pull kind's by its puller, which also reaches the origin.
async fn checked_config(
    pullers: &Pullers,
    kind: SourceKind,
    mut config: Value,
) -> Result<ValidatedConfig, ValidationError> {
    if kind == SourceKind::Webhook {
        let parsed = WebhookConfig::parse(&config)?;
        SourceIntake::check(&parsed).await?;
        let secrets = split_secrets(&mut config, &SECRET_PATHS);
        return Ok(ValidatedConfig { config, secrets });
    }
    match pullers.get(kind) {
        Some(puller) => puller.validate(config).await,
        None => Err(ValidationError::single("kind", format!("{kind} sources cannot be read by this build"))),
    }
}

/// Where this hub is reached from outside: `server.public_url`, else the request's `Host`.
pub(crate) fn base_url(state: &ApiState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.settings().public_url {
        return url.clone();
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    let scheme = if state.settings().https { "https" } else { "http" };
    format!("{scheme}://{host}")
}

fn view(state: &ApiState, headers: &HeaderMap, source: &Source) -> SourceView {
    source.view(&base_url(state, headers))
}

fn shown(state: &ApiState, headers: &HeaderMap, source: &Source) -> Reply {
    Reply::ok(view(state, headers, source)).etag(source.version)
}

/// Create a source.
#[utoipa::path(
    post, path = "/v1/sources", tag = "sources",
    request_body = SourceInput,
    responses(
        (status = 201, description = "Created; `url` is the endpoint to give the provider", body = Success<SourceView>),
        (status = 400, description = "Invalid source", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn create_source(
    State(state): State<ApiState>,
    principal: Principal,
    headers: HeaderMap,
    ApiJson(input): ApiJson<SourceInput>,
) -> ApiResult<Reply> {
    principal.require(Role::Admin)?;
    let source = input
        .into_source(state.control().pull_sources().pullers(), SourceId::generate(), None, now_millis())
        .await?;
    state.store().create_source(&source).await?;
    let location = format!("/v1/sources/{}", source.id);
    Ok(Reply::created(view(&state, &headers, &source), location).etag(source.version))
}

/// List sources, oldest first.
#[utoipa::path(
    get, path = "/v1/sources", tag = "sources",
    params(PageQuery),
    responses((status = 200, description = "A page of sources", body = Paged<SourceView>)),
    security(("api_key" = [])),
)]
async fn list_sources(
    State(state): State<ApiState>,
    principal: Principal,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Reply> {
    principal.require(Role::Admin)?;
    let request = list_request(query.page, query.per_page, None, Collection::Mutable)?;
    let listing = state.store().list_sources(request).await?;
    let base = base_url(&state, &headers);
    Ok(Reply::list(listing.map(|s| s.view(&base)), request, false))
}

async fn load(state: &ApiState, raw: &str) -> Result<Source, ApiError> {
    let id = SourceId::from_trusted(raw);
    state.store().get_source(&id).await?.ok_or_else(|| ApiError::not_found("source", raw))
}

/// Read a source (secrets are shown as `<name>_set`; `url` is its public endpoint).
#[utoipa::path(
    get, path = "/v1/sources/{id}", tag = "sources",
    params(("id" = String, Path, description = "The source's id")),
    responses(
        (status = 200, description = "The source", body = Success<SourceView>),
        (status = 404, description = "No such source", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn get_source(
    State(state): State<ApiState>,
    principal: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply> {
    principal.require(Role::Admin)?;
    Ok(shown(&state, &headers, &load(&state, &id).await?))
}

async fn save(
    state: &ApiState,
    headers: &HeaderMap,
    current: &Source,
    next: Source,
    if_match: &IfMatch,
) -> ApiResult<Reply> {
    let stored =
        state.store().update_source(&next, current.version).await.map_err(|e| if_match.on_race(e))?;
    state.source_intake().forget(&current.id);
    Ok(shown(state, headers, &stored))
}

/// Replace a source. Secrets left out of `config` keep their stored values.
#[utoipa::path(
    put, path = "/v1/sources/{id}", tag = "sources",
    params(("id" = String, Path, description = "The source's id"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 when stale")),
    request_body = SourceInput,
    responses(
        (status = 200, description = "Replaced", body = Success<SourceView>),
        (status = 400, description = "Invalid source", body = Failure),
        (status = 404, description = "No such source", body = Failure),
        (status = 412, description = "If-Match is stale", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn replace_source(
    State(state): State<ApiState>,
    principal: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    if_match: IfMatch,
    ApiJson(input): ApiJson<SourceInput>,
) -> ApiResult<Reply> {
    principal.require(Role::Admin)?;
    let current = load(&state, &id).await?;
    if_match.check(current.version)?;
    let next = input
        .into_source(
            state.control().pull_sources().pullers(),
            current.id.clone(),
            Some(&current),
            now_millis(),
        )
        .await?;
    save(&state, &headers, &current, next, &if_match).await
}

/// Update a source with a JSON Merge Patch (`null` removes a field).
#[utoipa::path(
    patch, path = "/v1/sources/{id}", tag = "sources",
    params(("id" = String, Path, description = "The source's id"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 when stale")),
    request_body(content = Object, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Updated", body = Success<SourceView>),
        (status = 400, description = "Invalid result", body = Failure),
        (status = 404, description = "No such source", body = Failure),
        (status = 412, description = "If-Match is stale", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn patch_source(
    State(state): State<ApiState>,
    principal: Principal,
    headers: HeaderMap,
    ApiPath(id): ApiPath<String>,
    if_match: IfMatch,
    MergePatch(patch): MergePatch,
) -> ApiResult<Reply> {
    principal.require(Role::Admin)?;
    let current = load(&state, &id).await?;
    if_match.check(current.version)?;
    // A patch that changes the verification scheme starts it without the old scheme's
    // secrets, as a PUT does.
    let scheme = |config: &Value| config.pointer("/verification/type").cloned();
    let new_scheme = patch.get("config").and_then(scheme);
    let base = match new_scheme {
        Some(ref new) if Some(new) != scheme(&current.config).as_ref() => current.config.clone(),
        _ => current.full_config(),
    };
    let mut merged = serde_json::json!({
        "name": current.name,
        "kind": current.kind,
        "config": base,
        "enabled": current.enabled,
    });
    merge_patch(&mut merged, &Value::Object(patch));
    let input: SourceInput = from_value(merged)?;
    let mut next = input
        .into_source(state.control().pull_sources().pullers(), current.id.clone(), None, now_millis())
        .await?;
    next.created_at = current.created_at;
    save(&state, &headers, &current, next, &if_match).await
}

/// Delete a source; its public endpoint answers 404 from then on.
#[utoipa::path(
    delete, path = "/v1/sources/{id}", tag = "sources",
    params(("id" = String, Path, description = "The source's id"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 when stale")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such source", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn delete_source(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    principal.require(Role::Admin)?;
    let current = load(&state, &id).await?;
    if_match.check(current.version)?;
    if !state.store().delete_source(&current.id).await? {
        return Err(ApiError::not_found("source", &id));
    }
    state.source_intake().forget_deleted(&current.id);
    Ok(StatusCode::NO_CONTENT.into_response())
}
