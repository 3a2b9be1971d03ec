//! The `http` adapter against a real receiver on loopback.

mod auth;
mod delivery;
mod signing;
mod sink;
mod ssrf;

use serde_json::{Value, json};
use switchyard_adapters::UrlPolicy;
use switchyard_adapters::http::config::validate;
use switchyard_adapters::http::{HttpAdapter, HttpSettings};
use switchyard_core::destination::{
    CircuitBreakerPolicy, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, Destination, DestinationKind,
    PREVIOUS_SIGNING_SECRET, PREVIOUS_SIGNING_SECRET_EXPIRES_AT, RetryPolicy,
};
use switchyard_core::event::{Event, EventId, EventMetadata, EventSource, EventType};
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::transport::{DeliveryError, OutboundMessage, Receipt, Transport};

pub use sink::Sink;

/// An adapter allowed to reach the loopback sink (`security.allow_private_destinations`).
pub fn adapter() -> HttpAdapter {
    HttpAdapter::new(HttpSettings::default(), UrlPolicy::AllowPrivate)
}

/// A destination as the API would store it: `config` validated (with private addresses
/// allowed, as the sink is on loopback), secrets split out.
pub fn destination(config: Value) -> Destination {
    let validated = validate(config, UrlPolicy::AllowPrivate).expect("a valid http configuration");
    Destination {
        id: DestinationId::generate(),
        name: "sink".into(),
        kind: DestinationKind::Http,
        config: validated.config,
        secrets: validated.secrets,
        timeout_ms: DEFAULT_TIMEOUT_MS,
        connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
        retry: RetryPolicy::default(),
        rate_limit: None,
        circuit_breaker: CircuitBreakerPolicy::default(),
        enabled: true,
        version: 1,
        created_at: 0,
        updated_at: 0,
    }
}

/// [`destination`] mid-rotation, as `POST …/signing-secret/rotate` leaves it: `previous` signs
/// beside the current secret until `expires_at` (milliseconds since the Unix epoch).
pub fn rotating(config: Value, previous: &str, expires_at: i64) -> Destination {
    let mut destination = destination(config);
    destination.secrets.insert(PREVIOUS_SIGNING_SECRET.to_owned(), json!(previous));
    destination.config[PREVIOUS_SIGNING_SECRET_EXPIRES_AT] = json!(expires_at);
    destination
}

pub fn event() -> Event {
    Event {
        event_id: EventId::from_trusted("ord-1001-created"),
        event_type: EventType::from_trusted("order.created"),
        timestamp: 1_700_000_000_000,
        payload: json!({"order": 1001}),
        metadata: EventMetadata {
            correlation_id: "corr-42".into(),
            causation_id: Some("cart-7-checked-out".into()),
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            request_id: None,
            headers: None,
        },
        ordering_key: None,
        source: EventSource::api(),
        received_at: 1_700_000_000_000,
        published_by: None,
        content_hash: String::new(),
        seq: 1,
    }
}

/// What a subscription's transform might produce: not the payload, with characters that
/// serialise to more than one byte.
pub fn body() -> Value {
    json!({"order": 1001, "note": "crème brûlée", "lines": [{"sku": "A-1", "qty": 2}]})
}

/// One attempt of `delivery_id` to `destination`.
pub async fn deliver(
    adapter: &HttpAdapter,
    destination: &Destination,
    delivery_id: &DeliveryId,
    attempt: u32,
) -> Result<Receipt, DeliveryError> {
    let event = event();
    let body = body();
    let message = OutboundMessage { delivery_id, attempt, event: &event, body: &body, destination };
    adapter.deliver(&message).await
}

/// One first attempt of a fresh delivery.
pub async fn deliver_once(
    adapter: &HttpAdapter,
    destination: &Destination,
) -> Result<Receipt, DeliveryError> {
    deliver(adapter, destination, &DeliveryId::generate(), 1).await
}

/// The delivery's error, failing the test when it succeeded.
pub fn expect_err(outcome: Result<Receipt, DeliveryError>) -> DeliveryError {
    match outcome {
        Ok(receipt) => panic!("expected a failed delivery, got {receipt:?}"),
        Err(err) => err,
    }
}
