//! `/v1/event-types`: the optional registry of event types and their payload schemas.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use switchyard_core::api_key::Role;
use switchyard_core::error::Violations;
use switchyard_core::event::EventType;
use switchyard_core::event_type::EventTypeDefinition;
use switchyard_core::json::pointer_to_path;
use switchyard_core::time::now_millis;
use switchyard_core::{FieldError, ValidationError};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::auth::Principal;
use crate::envelope::{Failure, Paged, Reply, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, IfMatch, MergePatch, from_value, merge_patch};
use crate::paging::{Collection, list_request};
use crate::routes::PageQuery;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(create_event_type, list_event_types)).routes(routes!(
        get_event_type,
        replace_event_type,
        patch_event_type,
        delete_event_type
    ))
}

const MAX_DESCRIPTION: usize = 2_000;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTypeInput {
    /// Dotted lowercase segments; required to register, and on PUT, when given, the path's.
    #[schema(value_type = Option<EventType>, example = "order.created")]
    name: Option<String>,
    #[schema(max_length = 2000)]
    description: Option<String>,
    /// JSON Schema (draft 2020-12) for payloads of this type.
    #[schema(value_type = Option<Object>)]
    schema: Option<Value>,
    deprecated: Option<bool>,
}

impl EventTypeInput {
    /// Validates the input into a definition named `path_name` (when the name comes from the
    /// path) or by the input's own `name`.
    fn into_definition(
        self,
        path_name: Option<&EventType>,
        now: i64,
    ) -> Result<EventTypeDefinition, ValidationError> {
        let mut v = Violations::default();
        let name = match (self.name.as_deref(), path_name) {
            (Some(given), Some(path)) if given != path.as_str() => {
                v.push("name", "cannot be changed; it must match the path");
                None
            }
            (_, Some(path)) => Some(path.clone()),
            (Some(given), None) => v.check(EventType::parse(given).map_err(|e| e.at("name"))),
            (None, None) => {
                v.push("name", "is required");
                None
            }
        };
        if self.description.as_ref().is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
            v.push("description", format!("must be at most {MAX_DESCRIPTION} characters"));
        }
        if let Some(schema) = &self.schema {
            // Compiled at the root so each violation comes back as a JSON pointer into the
            // schema, which is named here like any other field of the body.
            let named = |error: ValidationError| {
                let in_schema =
                    |e: FieldError| FieldError::new(pointer_to_path("schema", &e.field, schema), e.message);
                ValidationError(error.0.into_iter().map(in_schema).collect())
            };
            v.check(switchyard_engine::schema::compile(schema, "").map_err(named));
        }
        v.into_result()?;
        let name = name.ok_or_else(|| ValidationError::single("name", "is required"))?;
        Ok(EventTypeDefinition {
            name,
            description: self.description,
            schema: self.schema,
            deprecated: self.deprecated.unwrap_or(false),
            version: 1,
            created_at: now,
            updated_at: now,
        })
    }
}

/// The writable form of a stored definition, the base a merge patch applies to.
fn writable(definition: &EventTypeDefinition) -> Value {
    let mut map = Map::new();
    map.insert("name".into(), Value::from(definition.name.as_str()));
    if let Some(d) = &definition.description {
        map.insert("description".into(), Value::from(d.as_str()));
    }
    if let Some(s) = &definition.schema {
        map.insert("schema".into(), s.clone());
    }
    map.insert("deprecated".into(), Value::Bool(definition.deprecated));
    Value::Object(map)
}

fn reply(definition: EventTypeDefinition, status: StatusCode) -> Reply {
    let version = definition.version;
    let reply = if status == StatusCode::CREATED {
        let location = format!("/v1/event-types/{}", definition.name);
        Reply::created(definition, location)
    } else {
        Reply::ok(definition)
    };
    reply.etag(version)
}

fn parse_name(raw: &str) -> Result<EventType, ApiError> {
    EventType::parse(raw).map_err(|_| ApiError::not_found("event type", raw))
}

/// Register an event type.
#[utoipa::path(
    post, path = "/v1/event-types", tag = "event types",
    request_body = EventTypeInput,
    responses(
        (status = 201, description = "Registered", body = Success<EventTypeDefinition>),
        (status = 400, description = "Invalid input or schema", body = Failure),
        (status = 409, description = "The name is taken", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn create_event_type(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(input): ApiJson<EventTypeInput>,
) -> ApiResult<Reply> {
    principal.require(Role::Admin)?;
    let definition = input.into_definition(None, now_millis())?;
    let created = state.store().create_event_type(&definition).await;
    state.ingestor().forget_event_types();
    created?;
    Ok(reply(definition, StatusCode::CREATED))
}

/// List event types by name.
#[utoipa::path(
    get, path = "/v1/event-types", tag = "event types",
    params(PageQuery),
    responses((status = 200, description = "A page of event types", body = Paged<EventTypeDefinition>)),
    security(("api_key" = [])),
)]
async fn list_event_types(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Reply> {
    principal.require(Role::Viewer)?;
    let request = list_request(query.page, query.per_page, None, Collection::Mutable)?;
    let listing = state.store().list_event_types(request).await?;
    Ok(Reply::list(listing, request, false))
}

async fn load(state: &ApiState, raw: &str) -> Result<EventTypeDefinition, ApiError> {
    let name = parse_name(raw)?;
    state.store().get_event_type(&name).await?.ok_or_else(|| ApiError::not_found("event type", raw))
}

/// Read an event type.
#[utoipa::path(
    get, path = "/v1/event-types/{name}", tag = "event types",
    params(("name" = String, Path, description = "The event type's name")),
    responses(
        (status = 200, description = "The event type", body = Success<EventTypeDefinition>),
        (status = 404, description = "Not registered", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn get_event_type(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Reply> {
    principal.require(Role::Viewer)?;
    Ok(reply(load(&state, &name).await?, StatusCode::OK))
}

async fn save(
    state: &ApiState,
    current: &EventTypeDefinition,
    next: EventTypeDefinition,
    if_match: &IfMatch,
) -> ApiResult<Reply> {
    let next = EventTypeDefinition { created_at: current.created_at, updated_at: now_millis(), ..next };
    let stored = state.store().update_event_type(&next, current.version).await;
    state.ingestor().forget_event_types();
    let stored = stored.map_err(|e| if_match.on_race(e))?;
    Ok(reply(stored, StatusCode::OK))
}

/// Replace an event type.
#[utoipa::path(
    put, path = "/v1/event-types/{name}", tag = "event types",
    params(("name" = String, Path, description = "The event type's name"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 when stale")),
    request_body = EventTypeInput,
    responses(
        (status = 200, description = "Replaced", body = Success<EventTypeDefinition>),
        (status = 404, description = "Not registered", body = Failure),
        (status = 412, description = "If-Match is stale", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn replace_event_type(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
    if_match: IfMatch,
    ApiJson(input): ApiJson<EventTypeInput>,
) -> ApiResult<Reply> {
    principal.require(Role::Admin)?;
    let current = load(&state, &name).await?;
    if_match.check(current.version)?;
    let next = input.into_definition(Some(&current.name), current.created_at)?;
    save(&state, &current, next, &if_match).await
}

/// Update an event type with a JSON Merge Patch.
#[utoipa::path(
    patch, path = "/v1/event-types/{name}", tag = "event types",
    params(("name" = String, Path, description = "The event type's name"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 when stale")),
    request_body(content = Object, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Updated", body = Success<EventTypeDefinition>),
        (status = 404, description = "Not registered", body = Failure),
        (status = 412, description = "If-Match is stale", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn patch_event_type(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
    if_match: IfMatch,
    MergePatch(patch): MergePatch,
) -> ApiResult<Reply> {
    principal.require(Role::Admin)?;
    let current = load(&state, &name).await?;
    if_match.check(current.version)?;
    let mut merged = writable(&current);
    merge_patch(&mut merged, &Value::Object(patch));
    let input: EventTypeInput = from_value(merged)?;
    let next = input.into_definition(Some(&current.name), current.created_at)?;
    save(&state, &current, next, &if_match).await
}

/// Delete an event type (stored events keep their type).
#[utoipa::path(
    delete, path = "/v1/event-types/{name}", tag = "event types",
    params(("name" = String, Path, description = "The event type's name"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 when stale")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "Not registered", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn delete_event_type(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(name): ApiPath<String>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    principal.require(Role::Admin)?;
    let current = load(&state, &name).await?;
    if_match.check(current.version)?;
    let deleted = state.store().delete_event_type(&current.name).await;
    state.ingestor().forget_event_types();
    if !deleted? {
        return Err(ApiError::not_found("event type", &name));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
