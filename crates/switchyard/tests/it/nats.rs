//! Delivering to NATS JetStream end to end (`NATS_URL`, by default nats://127.0.0.1:4222): a
//! destination written through the API, an event published, the message read back from the
//! stream with the broker's own client.

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use serde_json::{Value, json};

use crate::delivery::delivery_with_status;
use crate::helpers::spawn_app;
use crate::process::Scenario;

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

/// A stream of its own for one test: its name and the subject prefix it takes (`<prefix>.>`).
async fn test_stream(jetstream: &jetstream::Context) -> (String, String) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let suffix = format!("{:x}{:x}", std::process::id(), now.as_nanos());
    let (name, prefix) = (format!("SWITCHYARD_IT_{suffix}"), format!("switchyard-it.{suffix}"));
    let config =
        stream::Config { name: name.clone(), subjects: vec![format!("{prefix}.>")], ..Default::default() };
    jetstream.create_stream(config).await.expect("a test stream");
    (name, prefix)
}

async fn messages_in(jetstream: &jetstream::Context, name: &str) -> u64 {
    let mut stream = jetstream.get_stream(name).await.expect("the stream");
    stream.info().await.expect("its info").state.messages
}

#[tokio::test]
async fn a_published_event_reaches_the_stream_of_a_nats_destination() {
    let Some(jetstream) = broker().await else { return };
    let (name, prefix) = test_stream(&jetstream).await;

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
    assert_eq!(messages_in(&jetstream, &name).await, 2);
    let _ = jetstream.delete_stream(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_leaves_every_event_in_the_stream_exactly_once() {
    let Some(jetstream) = broker().await else { return };
    let (name, prefix) = test_stream(&jetstream).await;
    let scenario = Scenario::new();
    let mut node = scenario.start().await;
    let config = json!({"url": nats_url(), "subject": format!("{prefix}.{{event_type}}")});
    let destination = scenario
        .post(&node, "/v1/destinations", json!({"name": "broker", "kind": "nats", "config": config}))
        .await;
    let id = destination["data"]["id"].as_str().expect("an id").to_owned();
    scenario
        .post(&node, "/v1/subscriptions", json!({"name": "all", "destination_id": id, "event_types": ["#"]}))
        .await;
    let total = 3_000;
    scenario.publish(&node, total).await;
    let started = Instant::now();
    while messages_in(&jetstream, &name).await < 200 {
        assert!(started.elapsed() < Duration::from_secs(60), "nothing reached the stream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.child.kill().expect("SIGKILL is sent");
    node.child.wait().expect("the node is gone");
    let at_kill = messages_in(&jetstream, &name).await;
    assert!(at_kill < total as u64, "everything was delivered before the kill; the test proves nothing");

    let mut restarted = scenario.start().await;
    let started = Instant::now();
    while messages_in(&jetstream, &name).await < total as u64 {
        assert!(started.elapsed() < Duration::from_secs(90), "the stream never had every event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Deliveries that were in flight at the kill went again; the stream dropped the copies.
    let pending = scenario.get_answer(&restarted, "/v1/deliveries?status=pending").await;
    assert_eq!(pending["data"].as_array().map(Vec::len), Some(0), "{pending}");
    assert_eq!(messages_in(&jetstream, &name).await, total as u64, "one message per delivery");
    restarted.child.kill().expect("stopped");
    let _ = restarted.child.wait();
    let _ = jetstream.delete_stream(&name).await;
}
