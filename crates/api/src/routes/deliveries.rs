//! `/v1/deliveries` and `/v1/dead-letters`: what the engine did with each event, and what it
//! could not deliver.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use switchyard_core::api_key::Role;
use switchyard_core::delivery::{Attempt, Delivery, DeliveryFilter, DeliveryStatus};
use switchyard_core::error::Violations;
use switchyard_core::event::{EventId, EventType};
use switchyard_core::id::{DeliveryId, DestinationId, SubscriptionId};
use switchyard_core::page::ListRequest;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::auth::Principal;
use crate::envelope::{Failure, Paged, Reply, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::paging::{Collection, instant, list_request};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(retry_delivery))
        .routes(routes!(list_dead_letters))
        .routes(routes!(replay_dead_letters))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    /// Page number (1-based); answers totals.
    #[param(minimum = 1, maximum = 4_294_967_295_u32, format = Int64)]
    page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<u32>,
    /// Keyset cursor: the `pagination.next_cursor` of the previous page.
    #[param(format = "cursor")]
    after: Option<String>,
    /// pending, in_flight, succeeded, dead or filtered.
    #[param(value_type = Option<DeliveryStatus>)]
    status: Option<String>,
    event_id: Option<String>,
    destination_id: Option<String>,
    subscription_id: Option<String>,
    /// Exact event type of the delivered event.
    #[param(value_type = Option<EventType>)]
    event_type: Option<String>,
    /// Created at or after (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Created before (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
}

/// The same filters a query names, checked together.
struct Filters<'a> {
    page: Option<u32>,
    per_page: Option<u32>,
    after: Option<&'a str>,
    status: Option<&'a str>,
    event_id: Option<&'a str>,
    destination_id: Option<&'a str>,
    subscription_id: Option<&'a str>,
    event_type: Option<&'a str>,
    since: Option<&'a str>,
    until: Option<&'a str>,
}

impl Filters<'_> {
    fn parse(self) -> Result<(DeliveryFilter, ListRequest), ApiError> {
        let mut v = Violations::default();
        let request = v.check(list_request(self.page, self.per_page, self.after, Collection::AppendOnly));
        let status = self.status.and_then(|raw| {
            let parsed = DeliveryStatus::parse(raw);
            if parsed.is_none() {
                v.push("status", "must be one of pending, in_flight, succeeded, dead, filtered");
            }
            parsed
        });
        let event_type = self.event_type.and_then(|t| v.check(EventType::parse(t)));
        let since = v.check(instant("since", self.since)).flatten();
        let until = v.check(instant("until", self.until)).flatten();
        v.into_result()?;
        let filter = DeliveryFilter {
            status,
            event_id: self.event_id.map(EventId::from_trusted),
            destination_id: self.destination_id.map(DestinationId::from_trusted),
            subscription_id: self.subscription_id.map(SubscriptionId::from_trusted),
            event_type,
            since,
            until,
        };
        Ok((filter, request.unwrap_or_default()))
    }
}

/// List deliveries in creation order.
#[utoipa::path(
    get, path = "/v1/deliveries", tag = "deliveries",
    params(DeliveryQuery),
    responses((status = 200, description = "A page of deliveries", body = Paged<Delivery>)),
    security(("api_key" = [])),
)]
async fn list_deliveries(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<DeliveryQuery>,
) -> ApiResult<Reply> {
    principal.require(Role::Viewer)?;
    let (filter, request) = Filters {
        page: q.page,
        per_page: q.per_page,
        after: q.after.as_deref(),
        status: q.status.as_deref(),
        event_id: q.event_id.as_deref(),
        destination_id: q.destination_id.as_deref(),
        subscription_id: q.subscription_id.as_deref(),
        event_type: q.event_type.as_deref(),
        since: q.since.as_deref(),
        until: q.until.as_deref(),
    }
    .parse()?;
    let listing = state.store().list_deliveries(&filter, request).await?;
    Ok(Reply::list(listing, request, true))
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryWithAttempts {
    #[serde(flatten)]
    delivery: Delivery,
    attempts: Vec<Attempt>,
}

/// Read a delivery with every attempt made.
#[utoipa::path(
    get, path = "/v1/deliveries/{id}", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id (the receiver's webhook-id)")),
    responses(
        (status = 200, description = "The delivery", body = Success<DeliveryWithAttempts>),
        (status = 404, description = "No such delivery", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn get_delivery(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply> {
    principal.require(Role::Viewer)?;
    let id = DeliveryId::from_trusted(id);
    let delivery =
        state.store().get_delivery(&id).await?.ok_or_else(|| ApiError::not_found("delivery", &id))?;
    let attempts = state.store().attempts_of(&id).await?;
    Ok(Reply::ok(DeliveryWithAttempts { delivery, attempts }))
}

/// Try a dead or pending delivery again now, with a fresh attempt budget.
#[utoipa::path(
    post, path = "/v1/deliveries/{id}/retry", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id")),
    responses(
        (status = 200, description = "Due now", body = Success<Delivery>),
        (status = 404, description = "No such delivery", body = Failure),
        (status = 409, description = "In flight or already succeeded", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn retry_delivery(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Reply> {
    principal.require(Role::Operator)?;
    let id = DeliveryId::from_trusted(id);
    let delivery = state.control().retry(&id).await?.ok_or_else(|| ApiError::not_found("delivery", &id))?;
    Ok(Reply::ok(delivery))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeadLetterQuery {
    /// Page number (1-based); answers totals.
    #[param(minimum = 1, maximum = 4_294_967_295_u32, format = Int64)]
    page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<u32>,
    /// Keyset cursor: the `pagination.next_cursor` of the previous page.
    #[param(format = "cursor")]
    after: Option<String>,
    destination_id: Option<String>,
    subscription_id: Option<String>,
    #[param(value_type = Option<EventType>)]
    event_type: Option<String>,
    #[param(format = DateTime)]
    since: Option<String>,
    #[param(format = DateTime)]
    until: Option<String>,
}

/// List dead deliveries: failed for good, kept until replayed.
#[utoipa::path(
    get, path = "/v1/dead-letters", tag = "dead letters",
    params(DeadLetterQuery),
    responses((status = 200, description = "A page of dead deliveries", body = Paged<Delivery>)),
    security(("api_key" = [])),
)]
async fn list_dead_letters(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(q): ApiQuery<DeadLetterQuery>,
) -> ApiResult<Reply> {
    principal.require(Role::Operator)?;
    let (filter, request) = Filters {
        page: q.page,
        per_page: q.per_page,
        after: q.after.as_deref(),
        status: Some(DeliveryStatus::Dead.as_str()),
        event_id: None,
        destination_id: q.destination_id.as_deref(),
        subscription_id: q.subscription_id.as_deref(),
        event_type: q.event_type.as_deref(),
        since: q.since.as_deref(),
        until: q.until.as_deref(),
    }
    .parse()?;
    let listing = state.store().list_deliveries(&filter, request).await?;
    Ok(Reply::list(listing, request, true))
}

/// Which dead letters to replay; every field narrows the selection, none selects all.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReplayFilter {
    destination_id: Option<String>,
    subscription_id: Option<String>,
    #[schema(value_type = Option<EventType>)]
    event_type: Option<String>,
    /// Created at or after (RFC 3339).
    #[schema(format = DateTime)]
    since: Option<String>,
    /// Created before (RFC 3339).
    #[schema(format = DateTime)]
    until: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ReplayAccepted {
    /// Dead deliveries being replayed.
    count: u64,
}

/// Replay dead deliveries in bulk, in the background.
#[utoipa::path(
    post, path = "/v1/dead-letters/replay", tag = "dead letters",
    request_body = ReplayFilter,
    responses(
        (status = 202, description = "Replay started; data.count deliveries will be retried", body = Success<ReplayAccepted>),
        (status = 400, description = "Invalid filter", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn replay_dead_letters(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<ReplayFilter>,
) -> ApiResult<(StatusCode, Reply)> {
    principal.require(Role::Operator)?;
    let (filter, _) = Filters {
        page: None,
        per_page: None,
        after: None,
        status: None,
        event_id: None,
        destination_id: body.destination_id.as_deref(),
        subscription_id: body.subscription_id.as_deref(),
        event_type: body.event_type.as_deref(),
        since: body.since.as_deref(),
        until: body.until.as_deref(),
    }
    .parse()?;
    let count = state.control().replay_dead(filter).await?;
    Ok((StatusCode::ACCEPTED, Reply::ok(ReplayAccepted { count })))
}
