//! `GET /v1/events/stream` and `GET /v1/deliveries/stream`: Server-Sent Events of what commits,
//! resumable from a frame's `id` (`Last-Event-ID` or `?after=`) with no gap and no repeat.
//!
//! The dashboard mounts [`events`] and [`deliveries`] under its own authentication, so they are
//! public and take the principal from the request's extensions.

mod pump;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use switchyard_core::api_key::Role;
use switchyard_core::delivery::DeliveryStatus;
use switchyard_core::error::Violations;
use switchyard_core::event::EventId;
use switchyard_core::id::{DestinationId, SubscriptionId};
use switchyard_core::pattern::EventTypePattern;
use switchyard_core::stream::{
    DeliveryStreamFilter, EventStreamFilter, StreamCursor, StreamKind, StreamPage,
};
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::auth::Principal;
use crate::envelope::Failure;
use crate::error::ApiResult;
use crate::extract::ApiQuery;
use crate::routes::events::EventWithDeliveries;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(events)).routes(routes!(deliveries))
}

/// The header a reconnecting `EventSource` sends with the last `id` it received.
const LAST_EVENT_ID: &str = "last-event-id";

/// Where a stream starts: `Last-Event-ID` (an `EventSource` reconnecting; it wins over the
/// `after` its URL still carries), else `after`, else `None` for the live end.
fn start(
    v: &mut Violations,
    headers: &HeaderMap,
    after: Option<&str>,
    kind: StreamKind,
) -> Option<StreamCursor> {
    if let Some(raw) = headers.get(LAST_EVENT_ID) {
        let Ok(text) = raw.to_str() else {
            v.push("Last-Event-ID", "is not a cursor of this stream");
            return None;
        };
        return v.check(StreamCursor::decode(text, kind, "Last-Event-ID"));
    }
    after.and_then(|raw| v.check(StreamCursor::decode(raw, kind, "after")))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventStreamQuery {
    /// Resume after this frame `id` (a `Last-Event-ID` header wins over it). Without either,
    /// the stream starts at the live end: only events committed after connecting.
    #[param(format = "cursor")]
    after: Option<String>,
    /// An event type pattern, as subscriptions take (`order.*`, `order.#`).
    #[param(value_type = Option<EventTypePattern>)]
    event_type: Option<String>,
    /// `api`, or `webhook:<source id>` and the like: the event's `source`.
    source: Option<String>,
    correlation_id: Option<String>,
}

/// Stream events as they commit (Server-Sent Events).
///
/// Each frame is `event: event`, `id: <cursor>` and `data: <the event with its deliveries, as
/// `GET /v1/events/{id}` shows it>`, in commit order. Reconnect with `Last-Event-ID` (or `?after=`) set to the last `id` received to miss
/// none and see none twice. Without either the stream starts at the live end: only events
/// committed after connecting. A comment line is sent as a heartbeat every 15 s. A client that
/// reads nothing for 10 s while frames wait gets a final `event: lagged` frame whose data holds
/// the `cursor` to resume from, and the stream ends. On PostgreSQL an event is shown once no
/// transaction older than its own can still commit, so a long transaction on the database
/// delays the stream.
#[utoipa::path(
    get, path = "/v1/events/stream", tag = "events",
    params(
        EventStreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this frame id"),
    ),
    responses(
        (status = 200, description = "The stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid query or cursor", body = Failure),
    ),
    security(("api_key" = [])),
)]
pub async fn events(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<EventStreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    principal.require(Role::Viewer)?;
    let mut v = Violations::default();
    let after = start(&mut v, &headers, query.after.as_deref(), StreamKind::Events);
    let event_type = query
        .event_type
        .as_deref()
        .and_then(|raw| v.check(EventTypePattern::parse(raw).map_err(|e| e.at("event_type"))));
    v.into_result()?;
    let filter = EventStreamFilter { event_type, source: query.source, correlation_id: query.correlation_id };
    let after = match after {
        Some(after) => after,
        None => state.store().stream_head_events().await?,
    };
    let source = move |state: ApiState, at| {
        let filter = filter.clone();
        async move {
            let page = state.store().stream_events(at, &filter, pump::PAGE).await?;
            // Each frame is the event as `GET /v1/events/{id}` shows it: with its deliveries.
            let mut items = Vec::with_capacity(page.items.len());
            for (cursor, event) in page.items {
                let deliveries = state.store().deliveries_of_event(&event.event_id).await?;
                items.push((cursor, EventWithDeliveries::new(event, deliveries)));
            }
            Ok(StreamPage { items, end: page.end, more: page.more })
        }
    };
    Ok(pump::respond(&state, StreamKind::Events, "event", after, source))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryStreamQuery {
    /// Resume after this frame `id` (a `Last-Event-ID` header wins over it). Without either,
    /// the stream starts at the live end: only changes committed after connecting.
    #[param(format = "cursor")]
    after: Option<String>,
    /// Only deliveries now in this status: pending, in_flight, succeeded, dead or filtered.
    #[param(value_type = Option<DeliveryStatus>)]
    status: Option<String>,
    event_id: Option<String>,
    destination_id: Option<String>,
    subscription_id: Option<String>,
}

/// Stream deliveries as their status changes (Server-Sent Events).
///
/// Each frame is `event: delivery`, `id: <cursor>` and `data: <the delivery as JSON>` (without
/// attempts), once when it is created and once per status change, in commit order. The stream
/// is of changes compacted per delivery: one that changed again before the stream read it is
/// shown once, as it is then. Resuming, the live end, heartbeats and `event: lagged` work as on
/// `GET /v1/events/stream`.
#[utoipa::path(
    get, path = "/v1/deliveries/stream", tag = "deliveries",
    params(
        DeliveryStreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this frame id"),
    ),
    responses(
        (status = 200, description = "The stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid query or cursor", body = Failure),
    ),
    security(("api_key" = [])),
)]
pub async fn deliveries(
    State(state): State<ApiState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<DeliveryStreamQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    principal.require(Role::Viewer)?;
    let mut v = Violations::default();
    let after = start(&mut v, &headers, query.after.as_deref(), StreamKind::Deliveries);
    let status = query.status.as_deref().and_then(|raw| {
        let parsed = DeliveryStatus::parse(raw);
        if parsed.is_none() {
            v.push("status", "must be one of pending, in_flight, succeeded, dead, filtered");
        }
        parsed
    });
    v.into_result()?;
    let filter = DeliveryStreamFilter {
        status,
        event_id: query.event_id.map(EventId::from_trusted),
        destination_id: query.destination_id.map(DestinationId::from_trusted),
        subscription_id: query.subscription_id.map(SubscriptionId::from_trusted),
    };
    let after = match after {
        Some(after) => after,
        None => state.store().stream_head_deliveries().await?,
    };
    let source = move |state: ApiState, at| {
        let filter = filter.clone();
        async move { state.store().stream_deliveries(at, &filter, pump::PAGE).await }
    };
    Ok(pump::respond(&state, StreamKind::Deliveries, "delivery", after, source))
}
