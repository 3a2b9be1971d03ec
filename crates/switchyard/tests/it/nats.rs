//! Delivering to NATS JetStream end to end (`NATS_URL`, by default nats://127.0.0.1:4222): a
//! destination written through the API, an event published, the message read back from the
//! stream with the broker's own client.

use async_nats::jetstream::{self, stream};
use serde_json::{Value, json};

use crate::delivery::delivery_with_status;
use crate::helpers::spawn_app;

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A JetStream context on the test broker, or `None` (said loudly) when it is unreachable
/// outside CI; under `CI=true` an unreachable broker fails the test.
async fn broker() -> Option<jetstream::Context> {
    match async_nats::connect(nats_url()).await {
        Ok(client) => Some(jetstream::new(client)),
        Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("NATS at {} is unreachable under CI=true: {error}", nats_url())
        }
        Err(error) => {
            eprintln!("SKIPPED: NATS at {} is unreachable ({error}); start it to run this test", nats_url());
            None
        }
    }
}

#[tokio::test]
async fn a_published_event_reaches_the_stream_of_a_nats_destination() {
    let Some(jetstream) = broker().await else { return };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let suffix = format!("{:x}{:x}", std::process::id(), now.as_nanos());
    let (name, prefix) = (format!("SWITCHYARD_IT_{suffix}"), format!("switchyard-it.{suffix}"));
    let config =
        stream::Config { name: name.clone(), subjects: vec![format!("{prefix}.>")], ..Default::default() };
    jetstream.create_stream(config).await.expect("a test stream");

    let app = spawn_app().await;
    let created = app
        .post(
            "/v1/destinations",
            json!({"name": "broker", "kind": "nats", "config": {"url": nats_url(), "subject": format!("{prefix}.{{event_type}}")}}),
        )
        .await;
    created.assert_status(201);
    let destination = created.data()["id"].as_str().expect("an id").to_owned();
    app.create_subscription(&destination, &["order.*"]).await;
    let payload = json!({"order": 1001, "total": "12.50"});
    app.publish(json!({"event_id": "nats-1", "event_type": "order.created", "payload": payload}))
        .await
        .assert_status(201);

    let delivery = delivery_with_status(&app, "nats-1", "succeeded").await;
    let stream = jetstream.get_stream(&name).await.expect("the stream");
    let message = stream.get_raw_message(1).await.expect("the message");
    assert_eq!(message.subject.as_str(), format!("{prefix}.order.created"));
    assert_eq!(serde_json::from_slice::<Value>(&message.payload).expect("JSON"), payload);
    let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header("Nats-Msg-Id").as_deref(), delivery["id"].as_str(), "the delivery id is the dedup key");
    assert_eq!(header("X-Event-ID").as_deref(), Some("nats-1"));
    assert_eq!(header("X-Event-Type").as_deref(), Some("order.created"));

    // A test send goes the same way.
    let tested = app.post(&format!("/v1/destinations/{destination}/test"), json!({})).await;
    tested.assert_status(200);
    assert_eq!(tested.data()["success"], true, "{}", tested.body);
    let mut stream = jetstream.get_stream(&name).await.expect("the stream");
    assert_eq!(stream.info().await.expect("its info").state.messages, 2);
    let _ = jetstream.delete_stream(&name).await;
}
