//! `/v1/events`: publish (one or a batch), list and read events.

use axum::extract::State;
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::api_key::Role;
use switchyard_core::delivery::Delivery;
use switchyard_core::error::excerpt;
use switchyard_core::event::{
    Event, EventFilter, EventId, EventInput, EventSource, EventType, IngestContext, IngestOutcome,
};
use switchyard_core::id::is_link_id;
use switchyard_core::time::now_millis;
use switchyard_core::trace::TraceParent;
use switchyard_engine::BatchItem;
use switchyard_engine::ingest::MAX_BATCH;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::auth::Principal;
use crate::envelope::{Failure, Paged, Reply, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::paging::{Collection, instant, list_request};
use crate::request_id::CORRELATION_HEADER;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(publish_event, list_events))
        .routes(routes!(publish_batch))
        .routes(routes!(get_event))
}

/// W3C Trace Context: kept with the events of the request and continued by their deliveries.
const TRACEPARENT_HEADER: &str = "traceparent";

fn ingest_context(
    state: &ApiState,
    principal: &Principal,
    headers: &HeaderMap,
) -> Result<IngestContext, ApiError> {
    // It becomes the events' correlation id, so it is refused rather than dropped: an event
    // must not silently leave the flow its publisher put it in.
    let correlation_id = match headers.get(CORRELATION_HEADER) {
        None => None,
        Some(raw) => {
            Some(raw.to_str().ok().filter(|v| is_link_id(v)).map(str::to_owned).ok_or_else(|| {
                ValidationError::single(
                    "X-Correlation-ID",
                    "must be 1 to 128 visible ASCII characters (no spaces)",
                )
            })?)
        }
    };
    // W3C Trace Context: a receiver that cannot parse `traceparent` ignores it (the trace
    // starts here) rather than refusing the request, so a broken tracer upstream loses no event.
    let traceparent = headers.get(TRACEPARENT_HEADER).and_then(|raw| {
        match raw.to_str().ok().map(|raw| TraceParent::parse(raw.trim())) {
            Some(Ok(parent)) => Some(parent.to_string()),
            _ => {
                let shown = excerpt(&String::from_utf8_lossy(raw.as_bytes()));
                tracing::warn!(traceparent = ?shown, "ignoring a malformed traceparent header");
                None
            }
        }
    });
    Ok(IngestContext {
        source: EventSource::api(),
        correlation_id,
        traceparent,
        request_id: crate::request_id::current(),
        // Publishing is not audited; each event records who published it instead.
        principal: Some(principal.subject()),
        headers: None,
        received_at: now_millis(),
        max_payload_bytes: state.settings().max_payload_bytes,
    })
}

/// Publish one event.
///
/// Stores the event and one pending delivery per matching subscription in one transaction.
/// Publishing the same `event_id` with the same content again answers 200 with the stored
/// event and `metadata.duplicate: true`; with different content, 409. Publishing writes no
/// audit entry: the event records its publisher (`published_by`: the caller and the request id).
#[utoipa::path(
    post, path = "/v1/events", tag = "events",
    request_body = EventInput,
    params(
        ("X-Correlation-ID" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "Default correlation id of the event: 1 to 128 visible ASCII characters, else 400"),
    ),
    responses(
        (status = 201, description = "Stored", body = Success<Event>),
        (status = 200, description = "Stored before (duplicate)", body = Success<Event>),
        (status = 400, description = "Invalid event", body = Failure),
        (status = 409, description = "The event_id is taken by different content", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn publish_event(
    State(state): State<ApiState>,
    principal: Principal,
    headers: HeaderMap,
    ApiJson(input): ApiJson<EventInput>,
) -> ApiResult<Reply> {
    principal.require(Role::Publisher)?;
    let ctx = ingest_context(&state, &principal, &headers)?;
    let outcome = state.ingestor().ingest_one(input, &ctx).await?;
    if let IngestOutcome::Created(event) | IngestOutcome::Duplicate(event) = &outcome {
        // The request span's remaining lines carry the event's correlation id, which may come
        // from the body or default to the event id rather than from a header.
        tracing::Span::current().record("correlation_id", event.metadata.correlation_id.as_str());
    }
    match outcome {
        IngestOutcome::Created(event) => {
            let location = format!("/v1/events/{}", event.event_id);
            Ok(Reply::created(event, location))
        }
        IngestOutcome::Duplicate(event) => Ok(Reply::duplicate(with_duplicate_flag(event))),
        IngestOutcome::Conflict(id) => Err(conflict(&id)),
    }
}

fn conflict(id: &EventId) -> ApiError {
    ApiError::Conflict(format!(
        "an event with event_id {} exists with different content; events are immutable",
        excerpt(id.as_str())
    ))
}

/// The stored event as JSON with `metadata.duplicate = true`, so a client reading only `data`
/// learns it too.
fn with_duplicate_flag(event: Event) -> Value {
    let mut value = serde_json::to_value(event).unwrap_or(Value::Null);
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("duplicate".into(), Value::Bool(true));
    }
    value
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    #[schema(schema_with = batch_events)]
    events: Vec<Value>,
}

/// Any JSON value per item: each is read as an `EventInput` on its own, and an invalid one is
/// an `error` in `results`, not a refused batch.
fn batch_events() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    let json = [Type::Object, Type::Array, Type::String, Type::Number, Type::Boolean, Type::Null];
    ArrayBuilder::new()
        .description(Some(
            "1 to 1000 events, stored in one transaction. Each is checked on its own, as an `EventInput`: \
             an invalid one is an `error` in `results`, not a refused batch.",
        ))
        .items(ObjectBuilder::new().schema_type(SchemaType::Array(json.to_vec())))
        .min_items(Some(1))
        .max_items(Some(1000))
        .build()
}

#[derive(Serialize, ToSchema)]
pub struct BatchResults {
    results: Vec<BatchResult>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchResult {
    event_id: Option<String>,
    /// `created`, `duplicate` or `error`.
    #[schema(example = "created")]
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<BatchItemError>,
}

#[derive(Serialize, ToSchema)]
pub struct BatchItemError {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    details: Vec<switchyard_core::FieldError>,
}

/// Publish up to 1000 events.
///
/// Every valid event is stored, in one transaction, even when others are invalid; `results`
/// has one item per event, in order. Like a single publish, a batch writes no audit entry: each
/// event records its publisher (`published_by`).
#[utoipa::path(
    post, path = "/v1/events/batch", tag = "events",
    request_body = BatchInput,
    params(
        ("X-Correlation-ID" = Option<String>, Header, pattern = "^[!-~]{1,128}$", description = "Default correlation id of the events: 1 to 128 visible ASCII characters, else 400"),
    ),
    responses(
        (status = 200, description = "Per-event results", body = Success<BatchResults>),
        (status = 400, description = "The batch itself is invalid", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn publish_batch(
    State(state): State<ApiState>,
    principal: Principal,
    headers: HeaderMap,
    ApiJson(batch): ApiJson<BatchInput>,
) -> ApiResult<Reply> {
    principal.require(Role::Publisher)?;
    if batch.events.is_empty() || batch.events.len() > MAX_BATCH {
        return Err(ValidationError::single("events", format!("must hold 1 to {MAX_BATCH} events")).into());
    }
    let ctx = ingest_context(&state, &principal, &headers)?;
    let items = state.ingestor().ingest_batch(batch.events, &ctx).await?;
    let results = items.into_iter().map(batch_result).collect();
    Ok(Reply::ok(BatchResults { results }))
}

fn batch_result(item: BatchItem) -> BatchResult {
    match item {
        BatchItem::Stored(IngestOutcome::Created(event)) => {
            BatchResult { event_id: Some(event.event_id.to_string()), status: "created", error: None }
        }
        BatchItem::Stored(IngestOutcome::Duplicate(event)) => {
            BatchResult { event_id: Some(event.event_id.to_string()), status: "duplicate", error: None }
        }
        BatchItem::Stored(IngestOutcome::Conflict(id)) => BatchResult {
            event_id: Some(id.to_string()),
            status: "error",
            error: Some(BatchItemError {
                code: "conflict",
                message: conflict(&id).to_string(),
                details: Vec::new(),
            }),
        },
        BatchItem::Rejected { event_id, error } => BatchResult {
            event_id,
            status: "error",
            error: Some(BatchItemError {
                code: "validation_error",
                message: "the event is invalid; see details".into(),
                details: error.0,
            }),
        },
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Page number (1-based); answers totals.
    #[param(minimum = 1, maximum = 4_294_967_295_u32, format = Int64)]
    page: Option<u32>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    per_page: Option<u32>,
    /// Keyset cursor: the `pagination.next_cursor` of the previous page.
    #[param(format = "cursor")]
    after: Option<String>,
    /// Exact event type.
    #[param(value_type = Option<EventType>)]
    event_type: Option<String>,
    correlation_id: Option<String>,
    /// Received at or after (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Received before (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
}

/// List events in ingest order.
///
/// Page by number (`page`, with totals) or by cursor (`after`, for deep or live paging).
#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(EventQuery),
    responses(
        (status = 200, description = "A page of events", body = Paged<Event>),
        (status = 400, description = "Invalid query", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn list_events(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<EventQuery>,
) -> ApiResult<Reply> {
    principal.require(Role::Viewer)?;
    let mut v = switchyard_core::error::Violations::default();
    let request =
        v.check(list_request(query.page, query.per_page, query.after.as_deref(), Collection::AppendOnly));
    let event_type = query.event_type.as_deref().and_then(|t| v.check(EventType::parse(t)));
    let since = v.check(instant("since", query.since.as_deref())).flatten();
    let until = v.check(instant("until", query.until.as_deref())).flatten();
    v.into_result()?;
    let request = request.unwrap_or_default();
    let filter = EventFilter { event_type, correlation_id: query.correlation_id, since, until };
    let listing = state.store().list_events(&filter, request).await?;
    Ok(Reply::list(listing, request, true))
}

#[derive(Serialize, ToSchema)]
pub struct EventWithDeliveries {
    #[serde(flatten)]
    event: Event,
    deliveries: Vec<Delivery>,
}

impl EventWithDeliveries {
    pub fn new(event: Event, deliveries: Vec<Delivery>) -> Self {
        Self { event, deliveries }
    }
}

/// Read one event with its deliveries.
#[utoipa::path(
    get, path = "/v1/events/{event_id}", tag = "events",
    params(("event_id" = String, Path, description = "The event's id")),
    responses(
        (status = 200, description = "The event", body = Success<EventWithDeliveries>),
        (status = 404, description = "No such event", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn get_event(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(event_id): ApiPath<String>,
) -> ApiResult<Reply> {
    principal.require(Role::Viewer)?;
    let id = EventId::from_trusted(event_id);
    let event = state.store().get_event(&id).await?.ok_or_else(|| ApiError::not_found("event", &id))?;
    let deliveries = state.store().deliveries_of_event(&id).await?;
    Ok(Reply::ok(EventWithDeliveries::new(event, deliveries)))
}
