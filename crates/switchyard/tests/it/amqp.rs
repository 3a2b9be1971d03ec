//! Delivering to RabbitMQ end to end (`AMQP_URL`, by default
//! amqp://guest:guest@127.0.0.1:5672/%2f): a destination written through the API (its password
//! never shown back), an event published, the message read back with `lapin`.

use lapin::options::{BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, ConnectionProperties, ExchangeKind};
use serde_json::{Value, json};

use crate::delivery::delivery_with_status;
use crate::helpers::spawn_app;

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

#[tokio::test]
async fn a_published_event_reaches_a_queue_through_an_amqp_destination() {
    let Some(channel) = broker().await else { return };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let name = format!("switchyard-it-{:x}{:x}", std::process::id(), now.as_nanos());
    let exchange_options = ExchangeDeclareOptions { auto_delete: true, ..Default::default() };
    channel
        .exchange_declare(
            ShortString::from(name.as_str()),
            ExchangeKind::Topic,
            exchange_options,
            FieldTable::default(),
        )
        .await
        .expect("an exchange");
    let queue_options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
    channel
        .queue_declare(ShortString::from(name.as_str()), queue_options, FieldTable::default())
        .await
        .expect("a queue");
    let bind = QueueBindOptions::default();
    let (queue, exchange) = (ShortString::from(name.as_str()), ShortString::from(name.as_str()));
    channel
        .queue_bind(queue, exchange, ShortString::from("order.#"), bind, FieldTable::default())
        .await
        .expect("bound");

    let app = spawn_app().await;
    let config = json!({"url": amqp_url(), "exchange": name, "routing_key": "{event_type}"});
    let created =
        app.post("/v1/destinations", json!({"name": "rabbit", "kind": "amqp", "config": config})).await;
    created.assert_status(201);
    assert!(!created.body.to_string().contains("guest:guest"), "the password is not shown: {}", created.body);
    let destination = created.data()["id"].as_str().expect("an id").to_owned();
    app.create_subscription(&destination, &["order.*"]).await;
    let payload = json!({"order": 1001, "total": "12.50"});
    app.publish(json!({"event_id": "amqp-1", "event_type": "order.created", "payload": payload}))
        .await
        .assert_status(201);

    let delivery = delivery_with_status(&app, "amqp-1", "succeeded").await;
    let got = channel
        .basic_get(ShortString::from(name.as_str()), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .expect("a message");
    let message = got.delivery;
    assert_eq!(serde_json::from_slice::<Value>(&message.data).expect("JSON"), payload);
    let properties = &message.properties;
    assert_eq!(properties.message_id().as_ref().map(ShortString::as_str), delivery["id"].as_str());
    assert_eq!(properties.kind().as_ref().map(ShortString::as_str), Some("order.created"));
    let event_id = properties.headers().as_ref().and_then(|h| h.inner().get("X-Event-ID").cloned());
    assert_eq!(event_id, Some(lapin::types::AMQPValue::LongString("amqp-1".into())));
}
