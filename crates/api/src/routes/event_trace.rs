//! `GET /v1/events/{event_id}/trace`: the events of one business flow (its correlation id) as
//! a causation tree.

use std::collections::{HashMap, HashSet};

use axum::extract::State;
use serde::Serialize;
use switchyard_core::api_key::Role;
use switchyard_core::event::{EventId, EventLink};
use switchyard_core::time::{self, Millis};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::ApiState;
use crate::auth::Principal;
use crate::envelope::{Failure, Reply, Success};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiPath;

/// The most events one trace reads; a larger flow is answered truncated.
pub const MAX_TRACE_EVENTS: usize = 1_000;

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(event_trace))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventTrace {
    /// The flow: every event below shares it.
    pub correlation_id: String,
    /// The event asked about.
    pub event_id: String,
    /// Events in the tree.
    pub event_count: usize,
    /// Whether the flow has more than the first 1000 events, which alone are shown.
    pub truncated: bool,
    /// Events without a cause in the flow (no `causation_id`, or one naming an event outside
    /// it), each with its consequences below, in ingest order.
    pub roots: Vec<TraceNode>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(no_recursion)]
pub struct TraceNode {
    pub event_id: String,
    pub event_type: String,
    pub causation_id: Option<String>,
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: Millis,
    #[serde(with = "time::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub received_at: Millis,
    /// The events whose `causation_id` is this event's id, in ingest order.
    pub children: Vec<TraceNode>,
}

/// The causation tree of the event's correlation id.
///
/// Every event sharing the event's `metadata.correlation_id`, linked by
/// `metadata.causation_id`: an event's children are the events caused by it.
#[utoipa::path(
    get, path = "/v1/events/{event_id}/trace", tag = "events",
    params(("event_id" = String, Path, description = "The event's id")),
    responses(
        (status = 200, description = "The tree", body = Success<EventTrace>),
        (status = 404, description = "No such event", body = Failure),
    ),
    security(("api_key" = [])),
)]
async fn event_trace(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(event_id): ApiPath<String>,
) -> ApiResult<Reply> {
    principal.require(Role::Viewer)?;
    let id = EventId::from_trusted(event_id);
    let event = state.store().get_event(&id).await?.ok_or_else(|| ApiError::not_found("event", &id))?;
    let correlation_id = event.metadata.correlation_id.clone();
    // One beyond the cap says whether the flow is longer.
    let mut events = state.store().links_of_flow(&correlation_id, MAX_TRACE_EVENTS as u32 + 1).await?;
    let truncated = events.len() > MAX_TRACE_EVENTS;
    events.truncate(MAX_TRACE_EVENTS);
    let event_count = events.len();
    Ok(Reply::ok(EventTrace {
        correlation_id,
        event_id: id.to_string(),
        event_count,
        truncated,
        roots: build_tree(events),
    }))
}

/// Links `events` (in ingest order) by causation. A cycle (possible only with hand-picked
/// ids) cannot hang it: each event is placed once, and events on a cycle become roots.
pub(crate) fn build_tree(events: Vec<EventLink>) -> Vec<TraceNode> {
    let ids: HashSet<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    let mut children: HashMap<String, Vec<usize>> = HashMap::new();
    let mut roots = Vec::new();
    for (at, event) in events.iter().enumerate() {
        match &event.causation_id {
            Some(cause) if ids.contains(cause) && *cause != event.event_id.as_str() => {
                children.entry(cause.clone()).or_default().push(at)
            }
            _ => roots.push(at),
        }
    }
    let mut placed = vec![false; events.len()];
    let mut tree: Vec<TraceNode> =
        roots.iter().map(|&at| node(&events, at, &children, &mut placed)).collect();
    // Whatever a root does not reach sits on a causation cycle: show it from its first event.
    for at in 0..events.len() {
        if !placed[at] {
            tree.push(node(&events, at, &children, &mut placed));
        }
    }
    tree
}

fn node(
    events: &[EventLink],
    at: usize,
    children: &HashMap<String, Vec<usize>>,
    placed: &mut [bool],
) -> TraceNode {
    placed[at] = true;
    let event = &events[at];
    let kids = children.get(event.event_id.as_str()).map(Vec::as_slice).unwrap_or_default();
    let mut below = Vec::new();
    for &kid in kids {
        if !placed[kid] {
            below.push(node(events, kid, children, placed));
        }
    }
    TraceNode {
        event_id: event.event_id.to_string(),
        event_type: event.event_type.to_string(),
        causation_id: event.causation_id.clone(),
        timestamp: event.timestamp,
        received_at: event.received_at,
        children: below,
    }
}

#[cfg(test)]
mod tests {
    use switchyard_core::event::EventType;

    use super::*;

    fn event(id: &str, cause: Option<&str>) -> EventLink {
        EventLink {
            event_id: EventId::from_trusted(id),
            event_type: EventType::from_trusted("t.x"),
            causation_id: cause.map(str::to_owned),
            timestamp: 0,
            received_at: 0,
        }
    }

    fn shape(nodes: &[TraceNode]) -> Vec<(String, Vec<String>)> {
        nodes
            .iter()
            .map(|n| (n.event_id.clone(), n.children.iter().map(|c| c.event_id.clone()).collect()))
            .collect()
    }

    #[test]
    fn children_hang_under_their_cause_and_strangers_are_roots() {
        let tree = build_tree(vec![
            event("a", None),
            event("b", Some("a")),
            event("c", Some("a")),
            event("d", Some("b")),
            event("e", Some("elsewhere")),
        ]);
        assert_eq!(shape(&tree), vec![("a".into(), vec!["b".into(), "c".into()]), ("e".into(), vec![])]);
        assert_eq!(shape(&tree[0].children), vec![("b".into(), vec!["d".into()]), ("c".into(), vec![])]);
    }

    #[test]
    fn a_cycle_is_shown_once() {
        let tree = build_tree(vec![event("a", Some("b")), event("b", Some("a"))]);
        assert_eq!(shape(&tree), vec![("a".into(), vec!["b".into()])]);
    }
}
