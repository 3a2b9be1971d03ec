//! The `mqtt` transport against the real Mosquitto (`MQTT_URL`, by default
//! mqtt://127.0.0.1:1883): a subscriber of the test's own, on a topic of its own, receives what
//! the transport publishes.

use std::collections::HashMap;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use serde_json::{Value, json};
use switchyard_adapters::UrlPolicy;
use switchyard_adapters::mqtt::MqttTransport;
use switchyard_core::destination::{
    CircuitBreakerPolicy, DEFAULT_CONNECT_TIMEOUT_MS, Destination, DestinationKind, RetryPolicy,
};
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::transport::{DeliveryError, OutboundMessage, Receipt, Transport};
use tokio::sync::mpsc;

use crate::http::{body, event};

fn mqtt_url() -> String {
    std::env::var("MQTT_URL").unwrap_or_else(|_| "mqtt://127.0.0.1:1883".to_owned())
}

/// A subscriber to `filter` on the test broker, or `None` (said loudly) when it is unreachable
/// outside CI; under `CI=true` an unreachable broker fails the test.
async fn subscriber(filter: &str) -> Option<(AsyncClient, mpsc::UnboundedReceiver<Publish>)> {
    let url = url::Url::parse(&mqtt_url()).expect("a URL");
    let id = format!("switchyard-test-{:016x}", rand::random::<u64>());
    let options = MqttOptions::new(id, url.host_str().unwrap_or_default(), url.port().unwrap_or(1883));
    let (client, mut events) = AsyncClient::new(options, 64);
    client.subscribe(filter, QoS::AtLeastOnce).await.expect("queued");
    let (received, receiver) = mpsc::unbounded_channel();
    let subscribed = async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(5), subscribed).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("Mosquitto at {} is unreachable under CI=true: {error}", mqtt_url())
        }
        other => {
            eprintln!(
                "SKIPPED: Mosquitto at {} is unreachable ({other:?}); start it to run this test",
                mqtt_url()
            );
            return None;
        }
    }
    tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            if let Event::Incoming(Packet::Publish(publish)) = event
                && received.send(publish).is_err()
            {
                break;
            }
        }
    });
    Some((client, receiver))
}

fn destination(config: Value) -> Destination {
    let validated = switchyard_adapters::mqtt::config::validate(config, UrlPolicy::AllowPrivate)
        .expect("a valid mqtt config");
    Destination {
        id: DestinationId::generate(),
        name: "mosquitto".into(),
        kind: DestinationKind::Mqtt,
        config: validated.config,
        secrets: validated.secrets,
        timeout_ms: 5_000,
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

async fn deliver(
    transport: &MqttTransport,
    destination: &Destination,
    delivery_id: &DeliveryId,
) -> Result<Receipt, DeliveryError> {
    let event = event();
    let body = body();
    let message = OutboundMessage { delivery_id, attempt: 1, event: &event, body: &body, destination };
    transport.deliver(&message).await
}

fn user_properties(publish: &Publish) -> HashMap<String, String> {
    publish.properties.as_ref().map(|p| p.user_properties.iter().cloned().collect()).unwrap_or_default()
}

async fn next(receiver: &mut mpsc::UnboundedReceiver<Publish>) -> Publish {
    tokio::time::timeout(Duration::from_secs(5), receiver.recv()).await.expect("in time").expect("a message")
}

#[tokio::test]
async fn a_delivery_is_acknowledged_and_arrives_with_its_identity_as_user_properties() {
    let prefix = format!("switchyard-test/{:016x}", rand::random::<u64>());
    let Some((_subscriber, mut received)) = subscriber(&format!("{prefix}/#")).await else { return };
    let transport = MqttTransport::new(UrlPolicy::AllowPrivate);
    let destination = destination(json!({"url": mqtt_url(), "topic": format!("{prefix}/{{event_type}}")}));
    let delivery = DeliveryId::generate();

    let receipt = deliver(&transport, &destination, &delivery).await.expect("acknowledged");
    assert!(receipt.response_body.is_some_and(|b| b.starts_with("PUBACK")));
    let publish = next(&mut received).await;
    assert_eq!(String::from_utf8_lossy(&publish.topic), format!("{prefix}/order.created"));
    assert_eq!(serde_json::from_slice::<Value>(&publish.payload).expect("JSON"), body());
    let properties = user_properties(&publish);
    assert_eq!(properties["webhook-id"], delivery.as_str());
    assert_eq!(properties["X-Event-ID"], "ord-1001-created");
    assert_eq!(properties["X-Event-Type"], "order.created");
    assert_eq!(properties["X-Correlation-ID"], "corr-42");
    assert_eq!(properties["X-Causation-ID"], "cart-7-checked-out");
    assert!(properties["traceparent"].starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
    transport.close().await;
}

#[tokio::test]
async fn concurrent_deliveries_each_get_their_own_acknowledgement() {
    let prefix = format!("switchyard-test/{:016x}", rand::random::<u64>());
    let Some((_subscriber, mut received)) = subscriber(&format!("{prefix}/#")).await else { return };
    let transport = MqttTransport::new(UrlPolicy::AllowPrivate);
    let destination = destination(json!({"url": mqtt_url(), "topic": format!("{prefix}/orders")}));
    let deliveries: Vec<DeliveryId> = (0..50).map(|_| DeliveryId::generate()).collect();
    let outcomes =
        futures_util::future::join_all(deliveries.iter().map(|id| deliver(&transport, &destination, id)))
            .await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..deliveries.len() {
        seen.insert(user_properties(&next(&mut received).await)["webhook-id"].clone());
    }
    assert_eq!(seen.len(), deliveries.len(), "every delivery arrived, each once");
    transport.close().await;
}

#[tokio::test]
async fn an_unreachable_broker_is_retried_and_a_private_one_refused_under_the_guard() {
    // Nothing listens on port 1 of the loopback address.
    let closed = destination(json!({"url": "mqtt://127.0.0.1:1", "topic": "t"}));
    let err = deliver(&MqttTransport::new(UrlPolicy::AllowPrivate), &closed, &DeliveryId::generate())
        .await
        .expect_err("unreachable");
    assert!(err.retryable && err.message.contains("127.0.0.1:1"), "{err:?}");
    let err = deliver(&MqttTransport::new(UrlPolicy::PublicOnly), &closed, &DeliveryId::generate())
        .await
        .expect_err("refused");
    assert!(!err.retryable && err.message.contains("refused to connect"), "{err:?}");
}
