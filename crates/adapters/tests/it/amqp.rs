//! The `amqp` transport against the real RabbitMQ (`AMQP_URL`, by default
//! amqp://guest:guest@127.0.0.1:5672/%2f): each test declares an exchange and a queue of its
//! own and reads back, with `lapin`, what the transport published.

use lapin::options::{BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ConnectionProperties, ExchangeKind};
use serde_json::{Value, json};
use switchyard_adapters::UrlPolicy;
use switchyard_adapters::amqp::AmqpTransport;
use switchyard_core::destination::{
    CircuitBreakerPolicy, DEFAULT_CONNECT_TIMEOUT_MS, Destination, DestinationKind, RetryPolicy,
};
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::transport::{DeliveryError, OutboundMessage, Receipt, Transport};

use crate::http::{body, event};

pub(crate) fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A channel on the test broker, or `None` (said loudly) when it is unreachable outside CI;
/// under `CI=true` an unreachable broker fails the test.
pub(crate) async fn broker() -> Option<Channel> {
    let opened = async {
        let connection = lapin::Connection::connect(&amqp_url(), ConnectionProperties::default()).await?;
        connection.create_channel().await
    };
    match opened.await {
        Ok(channel) => Some(channel),
        Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("RabbitMQ at {} is unreachable under CI=true: {error}", amqp_url())
        }
        Err(error) => {
            eprintln!(
                "SKIPPED: RabbitMQ at {} is unreachable ({error}); start it to run this test",
                amqp_url()
            );
            None
        }
    }
}

/// A topic exchange of its own for one test (deleted with its last binding), and, when
/// `bound`, an exclusive queue taking everything it routes.
async fn exchange(channel: &Channel, bound: bool) -> (String, String) {
    let suffix = format!("{:016x}", rand::random::<u64>());
    let (exchange, queue) = (format!("switchyard-test-{suffix}"), format!("switchyard-test-{suffix}"));
    let options = ExchangeDeclareOptions { auto_delete: true, ..Default::default() };
    channel
        .exchange_declare(
            ShortString::from(exchange.as_str()),
            ExchangeKind::Topic,
            options,
            FieldTable::default(),
        )
        .await
        .expect("an exchange");
    if bound {
        let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        channel
            .queue_declare(ShortString::from(queue.as_str()), options, FieldTable::default())
            .await
            .expect("a queue");
        channel
            .queue_bind(
                ShortString::from(queue.as_str()),
                ShortString::from(exchange.as_str()),
                ShortString::from("#"),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bound");
    }
    (exchange, queue)
}

fn destination(config: Value) -> Destination {
    let validated = switchyard_adapters::amqp::config::validate(config, UrlPolicy::AllowPrivate)
        .expect("a valid amqp config");
    Destination {
        id: DestinationId::generate(),
        name: "rabbit".into(),
        kind: DestinationKind::Amqp,
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
    transport: &AmqpTransport,
    destination: &Destination,
    delivery_id: &DeliveryId,
) -> Result<Receipt, DeliveryError> {
    let event = event();
    let body = body();
    let message = OutboundMessage { delivery_id, attempt: 1, event: &event, body: &body, destination };
    transport.deliver(&message).await
}

fn header(table: &Option<FieldTable>, name: &str) -> Option<String> {
    match table.as_ref()?.inner().get(name)? {
        AMQPValue::LongString(text) => Some(String::from_utf8_lossy(text.as_bytes()).into_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn a_confirmed_delivery_arrives_persistent_with_its_identity() {
    let Some(channel) = broker().await else { return };
    let (exchange, queue) = exchange(&channel, true).await;
    let transport = AmqpTransport::new(UrlPolicy::AllowPrivate);
    let destination =
        destination(json!({"url": amqp_url(), "exchange": exchange, "routing_key": "orders.{event_type}"}));
    assert!(destination.secrets.contains_key("password"), "the URL's password is a secret");
    let delivery = DeliveryId::generate();

    let receipt = deliver(&transport, &destination, &delivery).await.expect("confirmed");
    assert!(receipt.response_body.is_some_and(|b| b.contains("confirmed")));
    let got = channel
        .basic_get(ShortString::from(queue.as_str()), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .expect("a message");
    let message = got.delivery;
    assert_eq!(message.routing_key.as_str(), "orders.order.created");
    assert_eq!(serde_json::from_slice::<Value>(&message.data).expect("JSON"), body());
    let properties = &message.properties;
    assert_eq!(properties.message_id().as_ref().map(ShortString::as_str), Some(delivery.as_str()));
    assert_eq!(properties.kind().as_ref().map(ShortString::as_str), Some("order.created"));
    assert_eq!(properties.correlation_id().as_ref().map(ShortString::as_str), Some("corr-42"));
    assert_eq!(*properties.delivery_mode(), Some(2), "persistent");
    assert_eq!(header(properties.headers(), "X-Event-ID").as_deref(), Some("ord-1001-created"));
    assert_eq!(header(properties.headers(), "X-Causation-ID").as_deref(), Some("cart-7-checked-out"));
    assert!(
        header(properties.headers(), "traceparent")
            .is_some_and(|t| t.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"))
    );
    transport.close().await;
}

#[tokio::test]
async fn an_unroutable_message_fails_for_good_and_a_missing_exchange_is_retried() {
    let Some(channel) = broker().await else { return };
    let (unbound, _) = exchange(&channel, false).await;
    let transport = AmqpTransport::new(UrlPolicy::AllowPrivate);
    let nowhere = destination(json!({"url": amqp_url(), "exchange": unbound, "routing_key": "orders"}));
    let err = deliver(&transport, &nowhere, &DeliveryId::generate()).await.expect_err("returned");
    assert!(!err.retryable, "{err:?}");
    assert!(err.message.contains("no queue is bound for routing key \"orders\""), "{}", err.message);

    let missing =
        destination(json!({"url": amqp_url(), "exchange": "switchyard-test-missing", "routing_key": "k"}));
    let err = deliver(&transport, &missing, &DeliveryId::generate()).await.expect_err("no exchange");
    assert!(err.retryable && err.message.contains("NOT_FOUND"), "{err:?}");
    // The channel the broker closed is opened anew for the next delivery.
    let (exchange, _) = exchange(&channel, true).await;
    let mut fixed = missing.clone();
    fixed.config["exchange"] = json!(exchange);
    deliver(&transport, &fixed, &DeliveryId::generate()).await.expect("confirmed on a new channel");
}

#[tokio::test]
async fn an_unreachable_broker_is_retried_and_a_private_one_refused_under_the_guard() {
    // Nothing listens on port 1 of the loopback address.
    let closed = destination(
        json!({"url": "amqp://guest:guest@127.0.0.1:1/%2f", "exchange": "e", "routing_key": "k"}),
    );
    let err = deliver(&AmqpTransport::new(UrlPolicy::AllowPrivate), &closed, &DeliveryId::generate())
        .await
        .expect_err("unreachable");
    assert!(err.retryable && err.message.contains("127.0.0.1:1"), "{err:?}");
    assert!(!err.message.contains("guest:guest"), "the password is never quoted: {}", err.message);
    let err = deliver(&AmqpTransport::new(UrlPolicy::PublicOnly), &closed, &DeliveryId::generate())
        .await
        .expect_err("refused");
    assert!(!err.retryable && err.message.contains("refused to connect"), "{err:?}");
}
