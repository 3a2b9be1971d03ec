//! Operational events: what the hub says about itself, published into itself with `source`
//! [`SOURCE`] so that ordinary subscriptions route them (`switchyard.#`, or one type).
//!
//! This module names them, shapes their payloads and gives the JSON Schema each type is
//! registered with; the engine decides when they happen and publishes them.

use serde::Serialize;
use serde_json::{Value, json};

use crate::event::{Event, EventSource, EventType};
use crate::event_type::EventTypeDefinition;
use crate::pattern::EventTypePattern;
use crate::time::{self, Millis};

/// The `source` of every operational event; no other origin can carry it.
pub const SOURCE: &str = "switchyard";
/// The first segment of every operational event type.
pub const NAMESPACE: &str = "switchyard";

pub const CIRCUIT_OPENED: &str = "switchyard.destination.circuit_opened";
pub const CIRCUIT_CLOSED: &str = "switchyard.destination.circuit_closed";
pub const DELIVERY_DEAD: &str = "switchyard.delivery.dead";
pub const SOURCE_FAILING: &str = "switchyard.source.failing";

/// How many delivery ids one `delivery.dead` event lists, at most.
pub const MAX_LISTED_DELIVERIES: usize = 10;

pub fn source() -> EventSource {
    EventSource::from_trusted(SOURCE)
}

/// Whether a subscription's `pattern` routes events of `event_type`: it matches, and when the
/// type lies in the hub's namespace (`switchyard.…`) the pattern names it (its first segment
/// is `switchyard`); wildcards alone (`#`, `*.…`) never route the hub's events.
pub fn pattern_routes(pattern: &EventTypePattern, event_type: &EventType) -> bool {
    let reserved = event_type.segments().next() == Some(NAMESPACE);
    pattern.matches(event_type) && (!reserved || pattern.as_str().split('.').next() == Some(NAMESPACE))
}

/// Whether `event` is one the hub published about itself: what happens to its deliveries
/// raises no operational event, so one can never cause another.
pub fn is_operational(event: &Event) -> bool {
    event.source.as_str() == SOURCE
}

/// `switchyard.destination.circuit_opened`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitOpened {
    pub destination_id: String,
    pub destination_name: Option<String>,
    /// Why it opened, e.g. `5 consecutive failures`.
    pub reason: Option<String>,
    /// The error of the attempt that opened it.
    pub last_error: Option<String>,
    #[serde(with = "time::rfc3339::option")]
    pub opened_at: Option<Millis>,
    /// When the half-open probe may go.
    #[serde(with = "time::rfc3339::option")]
    pub next_probe_at: Option<Millis>,
    pub cooldown_ms: u64,
    /// Attempts, and failed ones, in the breaker's window when it opened.
    pub window_attempts: u64,
    pub window_failed: u64,
}

/// `switchyard.destination.circuit_closed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CircuitClosed {
    pub destination_id: String,
    pub destination_name: Option<String>,
    /// When the opening that ended began.
    #[serde(with = "time::rfc3339::option")]
    pub opened_at: Option<Millis>,
    #[serde(with = "time::rfc3339")]
    pub closed_at: Millis,
    pub open_for_ms: Option<u64>,
    /// Why it had last opened.
    pub reason: Option<String>,
}

/// `switchyard.delivery.dead`: one dead delivery, or a summary of those of one destination
/// within a window (`count` > 1).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveriesDead {
    pub destination_id: String,
    pub destination_name: Option<String>,
    /// Dead deliveries this event reports.
    pub count: u64,
    /// The first of them, at most [`MAX_LISTED_DELIVERIES`].
    pub delivery_ids: Vec<String>,
    /// The last of them, in full.
    pub delivery_id: String,
    pub event_id: String,
    /// Null when its event no longer exists.
    pub event_type: Option<String>,
    pub subscription_id: String,
    pub last_error: Option<String>,
    pub attempt_count: u32,
    /// When the first and the last of them went dead.
    #[serde(with = "time::rfc3339")]
    pub first_dead_at: Millis,
    #[serde(with = "time::rfc3339")]
    pub last_dead_at: Millis,
}

/// `switchyard.source.failing`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceFailing {
    pub source_id: String,
    pub source_name: String,
    pub kind: String,
    /// The last failure.
    pub error: String,
    pub consecutive_failures: u32,
    /// The node that saw it fail.
    pub node_id: String,
}

/// The event types registered at start-up, with their payload schemas, stamped `now`.
pub fn definitions(now: Millis) -> Vec<EventTypeDefinition> {
    let define = |name: &str, description: &str, schema: Value| EventTypeDefinition {
        name: EventType::from_trusted(name),
        description: Some(description.to_owned()),
        schema: Some(schema),
        deprecated: false,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    vec![
        define(
            CIRCUIT_OPENED,
            "A destination's circuit breaker opened: nothing is sent to it until its probe succeeds.",
            object(
                &["destination_id", "opened_at", "cooldown_ms"],
                json!({
                    "destination_id": {"type": "string"},
                    "destination_name": {"type": ["string", "null"]},
                    "reason": {"type": ["string", "null"]},
                    "last_error": {"type": ["string", "null"]},
                    "opened_at": {"type": "string", "format": "date-time"},
                    "next_probe_at": {"type": ["string", "null"], "format": "date-time"},
                    "cooldown_ms": {"type": "integer", "minimum": 0},
                    "window_attempts": {"type": "integer", "minimum": 0},
                    "window_failed": {"type": "integer", "minimum": 0}
                }),
            ),
        ),
        define(
            CIRCUIT_CLOSED,
            "A destination's circuit breaker closed again: its probe succeeded.",
            object(
                &["destination_id", "closed_at"],
                json!({
                    "destination_id": {"type": "string"},
                    "destination_name": {"type": ["string", "null"]},
                    "opened_at": {"type": ["string", "null"], "format": "date-time"},
                    "closed_at": {"type": "string", "format": "date-time"},
                    "open_for_ms": {"type": ["integer", "null"], "minimum": 0},
                    "reason": {"type": ["string", "null"]}
                }),
            ),
        ),
        define(
            DELIVERY_DEAD,
            "Deliveries to a destination went dead: the first at once, later ones of the same \
             destination summarised (count, first ids) at the end of a window.",
            object(
                &["destination_id", "count", "delivery_ids", "delivery_id", "event_id", "subscription_id"],
                json!({
                    "destination_id": {"type": "string"},
                    "destination_name": {"type": ["string", "null"]},
                    "count": {"type": "integer", "minimum": 1},
                    "delivery_ids": {"type": "array", "items": {"type": "string"},
                        "maxItems": MAX_LISTED_DELIVERIES},
                    "delivery_id": {"type": "string"},
                    "event_id": {"type": "string"},
                    "event_type": {"type": ["string", "null"]},
                    "subscription_id": {"type": "string"},
                    "last_error": {"type": ["string", "null"]},
                    "attempt_count": {"type": "integer", "minimum": 0},
                    "first_dead_at": {"type": "string", "format": "date-time"},
                    "last_dead_at": {"type": "string", "format": "date-time"}
                }),
            ),
        ),
        define(
            SOURCE_FAILING,
            "A pull source's reader failed several times in a row (lease, connection or read).",
            object(
                &["source_id", "kind", "error", "consecutive_failures"],
                json!({
                    "source_id": {"type": "string"},
                    "source_name": {"type": "string"},
                    "kind": {"type": "string"},
                    "error": {"type": "string"},
                    "consecutive_failures": {"type": "integer", "minimum": 1},
                    "node_id": {"type": "string"}
                }),
            ),
        ),
    ]
}

fn object(required: &[&str], properties: Value) -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": required,
        "properties": properties
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_parses_and_lives_under_switchyard() {
        let names: Vec<String> = definitions(0).into_iter().map(|d| d.name.to_string()).collect();
        assert_eq!(names, [CIRCUIT_OPENED, CIRCUIT_CLOSED, DELIVERY_DEAD, SOURCE_FAILING]);
        assert!(names.iter().all(|name| name.starts_with("switchyard.") && EventType::parse(name).is_ok()));
    }

    #[test]
    fn only_patterns_that_name_the_namespace_route_it() {
        let routes = |pattern: &str, event_type: &str| {
            pattern_routes(&EventTypePattern::parse(pattern).unwrap(), &EventType::parse(event_type).unwrap())
        };
        for pattern in ["switchyard.#", "switchyard.*.*", "switchyard.destination.circuit_opened"] {
            assert!(routes(pattern, CIRCUIT_OPENED), "{pattern}");
        }
        for pattern in ["#", "*.destination.*", "switchyard.*"] {
            assert!(!routes(pattern, CIRCUIT_OPENED), "{pattern}");
        }
        assert!(routes("#", "switchyard_app.created") && routes("*.b", "a.b"));
    }

    #[test]
    fn payloads_name_their_schemas_required_fields() {
        let dead = DeliveriesDead {
            destination_id: "dst_1".into(),
            destination_name: None,
            count: 1,
            delivery_ids: vec!["dlv_1".into()],
            delivery_id: "dlv_1".into(),
            event_id: "e1".into(),
            event_type: Some("order.created".into()),
            subscription_id: "sub_1".into(),
            last_error: Some("HTTP 500".into()),
            attempt_count: 3,
            first_dead_at: 0,
            last_dead_at: 0,
        };
        let payload = serde_json::to_value(dead).unwrap();
        let schema = definitions(0).into_iter().find(|d| d.name.as_str() == DELIVERY_DEAD).unwrap();
        for field in schema.schema.unwrap()["required"].as_array().unwrap() {
            assert!(payload.get(field.as_str().unwrap()).is_some(), "{field}");
        }
        assert_eq!(payload["first_dead_at"], "1970-01-01T00:00:00.000Z");
    }
}
