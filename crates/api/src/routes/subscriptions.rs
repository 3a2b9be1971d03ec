//! `/v1/subscriptions`: routes from event types to a destination.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::api_key::Role;
use switchyard_core::error::Violations;
use switchyard_core::id::{DestinationId, SubscriptionId};
use switchyard_core::pattern::EventTypePattern;
use switchyard_core::subscription::{Ordering, OrderingOnDead, Subscription, SubscriptionFilter};
use switchyard_core::time::now_millis;
use switchyard_engine::jq;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::auth::Principal;
use crate::envelope::{Failure, Paged, Reply, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery, IfMatch, MergePatch, from_value, merge_patch};
use crate::paging::{Collection, list_request};
use crate::routes::required_name;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(create_subscription, list_subscriptions)).routes(routes!(
        get_subscription,
        replace_subscription,
        patch_subscription,
        delete_subscription
    ))
}

const MAX_PATTERNS: usize = 100;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionInput {
    /// 1 to 200 characters once trimmed.
    #[schema(value_type = String, required = true, min_length = 1, max_length = 200, pattern = r"\S", example = "orders to billing")]
    name: Option<String>,
    /// An existing destination's id.
    #[schema(value_type = String, required = true, min_length = 1)]
    destination_id: Option<String>,
    /// 1 to 100 patterns: exact (`order.created`), one segment (`order.*`), any depth
    /// (`order.#`), all (`#`).
    #[schema(value_type = Vec<EventTypePattern>, required = true, min_items = 1, max_items = 100, example = json!(["order.*"]))]
    event_types: Option<Vec<String>>,
    /// jq expression run on `{"event": {...}}`; the event is delivered only when its first
    /// output is exactly `true`. Compiled when written: a 400 names the problem.
    #[schema(format = "jq", example = ".event.payload.total > 100")]
    filter: Option<String>,
    /// jq expression run on `{"event": {...}}`; its first output is the delivered body (no
    /// output filters the event out). Compiled when written: a 400 names the problem.
    #[schema(format = "jq", example = "{id: .event.event_id, total: .event.payload.total}")]
    transform: Option<String>,
    ordering: Option<Ordering>,
    ordering_on_dead: Option<OrderingOnDead>,
    enabled: Option<bool>,
}

impl SubscriptionInput {
    /// Checks every field, the jq programs by compiling them (off the async runtime).
    async fn into_subscription(
        self,
        id: SubscriptionId,
        stored: Option<&Subscription>,
        now: i64,
    ) -> Result<Subscription, ValidationError> {
        let mut v = Violations::default();
        for (field, program) in [("filter", &self.filter), ("transform", &self.transform)] {
            if let Some(program) = program
                && let Err(error) = jq::compile(program.clone()).await
            {
                v.push(field, error.message());
            }
        }
        let name = required_name(&mut v, self.name.as_deref());
        let destination_id = match self.destination_id {
            Some(id) if !id.is_empty() => Some(DestinationId::from_trusted(id)),
            _ => {
                v.push("destination_id", "is required");
                None
            }
        };
        let patterns = match self.event_types {
            Some(raw) if !raw.is_empty() && raw.len() <= MAX_PATTERNS => {
                let parsed: Vec<Option<EventTypePattern>> = raw
                    .iter()
                    .enumerate()
                    .map(|(i, p)| {
                        v.check(EventTypePattern::parse(p).map_err(|e| e.at(&format!("event_types[{i}]"))))
                    })
                    .collect();
                parsed.into_iter().collect::<Option<Vec<_>>>()
            }
            _ => {
                v.push("event_types", format!("must list 1 to {MAX_PATTERNS} patterns"));
                None
            }
        };
        v.into_result()?;
        let (Some(name), Some(destination_id), Some(event_types)) = (name, destination_id, patterns) else {
            return Err(ValidationError::single("body", "is incomplete"));
        };
        Ok(Subscription {
            id,
            name,
            destination_id,
            event_types,
            filter: self.filter,
            transform: self.transform,
            ordering: self.ordering.unwrap_or_default(),
            ordering_on_dead: self.ordering_on_dead.unwrap_or_default(),
            enabled: self.enabled.unwrap_or(true),
            version: stored.map_or(1, |s| s.version),
            created_at: stored.map_or(now, |s| s.created_at),
            updated_at: now,
        })
    }
}

fn writable(subscription: &Subscription) -> Value {
    serde_json::json!({
        "name": subscription.name,
        "destination_id": subscription.destination_id,
        "event_types": subscription.event_types,
        "filter": subscription.filter,
        "transform": subscription.transform,
        "ordering": subscription.ordering,
        "ordering_on_dead": subscription.ordering_on_dead,
        "enabled": subscription.enabled,
    })
}

fn shown(subscription: Subscription) -> Reply {
    let version = subscription.version;
    Reply::ok(subscription).etag(version)
}

/// Create a subscription.
#[utoipa::path(
    post, path = "/v1/subscriptions", tag = "subscriptions",
    request_body = SubscriptionInput,
    responses(
        (status = 201, description = "Created", body = Success<Subscription>),
        (status = 400, description = "Invalid subscription or unknown destination", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn create_subscription(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(input): ApiJson<SubscriptionInput>,
) -> ApiResult<Reply> {
    principal.require(Role::Operator)?;
    let subscription = input.into_subscription(SubscriptionId::generate(), None, now_millis()).await?;
    state.store().create_subscription(&subscription).await?;
    let location = format!("/v1/subscriptions/{}", subscription.id);
    let version = subscription.version;
    Ok(Reply::created(subscription, location).etag(version))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionQuery {
    /// Page number (1-based).
    #[param(minimum = 1, maximum = 4_294_967_295_u32, format = Int64)]
    page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<u32>,
    /// Only subscriptions to this destination.
    destination_id: Option<String>,
}

/// List subscriptions, oldest first.
#[utoipa::path(
    get, path = "/v1/subscriptions", tag = "subscriptions",
    params(SubscriptionQuery),
    responses((status = 200, description = "A page of subscriptions", body = Paged<Subscription>)),
    security(("api_key" = [])),
)]
async fn list_subscriptions(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<SubscriptionQuery>,
) -> ApiResult<Reply> {
    principal.require(Role::Viewer)?;
    let request = list_request(query.page, query.per_page, None, Collection::Mutable)?;
    let filter = SubscriptionFilter { destination_id: query.destination_id.map(DestinationId::from_trusted) };
    let listing = state.store().list_subscriptions(&filter, request).await?;
    Ok(Reply::list(listing, request, false))
}

async fn load(state: &ApiState, raw: &str) -> Result<Subscription, ApiError> {
    let id = SubscriptionId::from_trusted(raw);
    state.store().get_subscription(&id).await?.ok_or_else(|| ApiError::not_found("subscription", raw))
}

/// Read a subscription.
#[utoipa::path(
    get, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription's id")),
    responses(
        (status = 200, description = "The subscription", body = Success<Subscription>),
        (status = 404, description = "No such subscription", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn get_subscription(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply> {
    principal.require(Role::Viewer)?;
    Ok(shown(load(&state, &id).await?))
}

async fn save(
    state: &ApiState,
    current: &Subscription,
    next: Subscription,
    if_match: &IfMatch,
) -> ApiResult<Reply> {
    let stored =
        state.store().update_subscription(&next, current.version).await.map_err(|e| if_match.on_race(e))?;
    Ok(shown(stored))
}

/// Replace a subscription.
#[utoipa::path(
    put, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription's id"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 when stale")),
    request_body = SubscriptionInput,
    responses(
        (status = 200, description = "Replaced", body = Success<Subscription>),
        (status = 400, description = "Invalid subscription", body = Failure),
        (status = 404, description = "No such subscription", body = Failure),
        (status = 412, description = "If-Match is stale", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn replace_subscription(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    if_match: IfMatch,
    ApiJson(input): ApiJson<SubscriptionInput>,
) -> ApiResult<Reply> {
    principal.require(Role::Operator)?;
    let current = load(&state, &id).await?;
    if_match.check(current.version)?;
    let next = input.into_subscription(current.id.clone(), Some(&current), now_millis()).await?;
    save(&state, &current, next, &if_match).await
}

/// Update a subscription with a JSON Merge Patch.
#[utoipa::path(
    patch, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription's id"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 when stale")),
    request_body(content = Object, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Updated", body = Success<Subscription>),
        (status = 400, description = "Invalid result", body = Failure),
        (status = 404, description = "No such subscription", body = Failure),
        (status = 412, description = "If-Match is stale", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn patch_subscription(
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
    let input: SubscriptionInput = from_value(merged)?;
    let next = input.into_subscription(current.id.clone(), Some(&current), now_millis()).await?;
    save(&state, &current, next, &if_match).await
}

/// Delete a subscription; deliveries already made for it are kept.
#[utoipa::path(
    delete, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = String, Path, description = "The subscription's id"),
           ("If-Match" = Option<String>, Header, description = "The ETag last read; 412 when stale")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such subscription", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn delete_subscription(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    if_match: IfMatch,
) -> ApiResult<Response> {
    principal.require(Role::Operator)?;
    let current = load(&state, &id).await?;
    if_match.check(current.version)?;
    if !state.store().delete_subscription(&current.id).await? {
        return Err(ApiError::not_found("subscription", &id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
