//! The identity every transport carries with a message (SPEC §5): who the event is, which flow
//! it belongs to, and the trace it continues. HTTP sends these as headers, brokers as headers,
//! properties or fields of their own.

use switchyard_core::trace::TraceParent;
use switchyard_core::transport::OutboundMessage;

pub const X_EVENT_TYPE: &str = "X-Event-Type";
pub const X_EVENT_ID: &str = "X-Event-ID";
pub const X_CORRELATION_ID: &str = "X-Correlation-ID";
pub const X_CAUSATION_ID: &str = "X-Causation-ID";
pub const TRACEPARENT: &str = "traceparent";

/// The identity of `message`'s event as (name, value) pairs, in a fixed order; the causation id
/// and the trace only when the event has them. Each call makes a new span of the publisher's
/// trace: the same trace id, a new parent id, as each attempt is a span of its own.
pub fn identity(message: &OutboundMessage<'_>) -> Vec<(&'static str, String)> {
    let event = message.event;
    let mut pairs = Vec::with_capacity(5);
    pairs.push((X_EVENT_TYPE, event.event_type.as_str().to_owned()));
    pairs.push((X_EVENT_ID, event.event_id.as_str().to_owned()));
    pairs.push((X_CORRELATION_ID, event.metadata.correlation_id.clone()));
    if let Some(causation) = &event.metadata.causation_id {
        pairs.push((X_CAUSATION_ID, causation.clone()));
    }
    let parent = event.metadata.traceparent.as_deref().and_then(|raw| TraceParent::parse(raw).ok());
    if let Some(parent) = parent {
        pairs.push((TRACEPARENT, parent.child(rand::random())));
    }
    pairs
}
