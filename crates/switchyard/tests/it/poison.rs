//! Poison protection: a delivery whose attempts keep ending without an outcome (the node
//! running it died each time) goes dead instead of crash-looping the nodes, and nothing else
//! is held up by it.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::delivery::delivery_with_status;
use crate::helpers::spawn_app_with;
use crate::process::{Node, Scenario};
use crate::sink::{Behaviour, Sink};

const DEADLINE: Duration = Duration::from_secs(30);

/// What the delivery's last error says after `n` unfinished attempts.
fn crash_loop_error(n: u32) -> String {
    format!(
        "{n} attempts ended without an outcome: the node running it stopped each time (it may \
         crash whoever runs it)"
    )
}

#[tokio::test]
async fn a_delivery_claimed_past_the_maximum_is_recorded_dead_without_being_sent() {
    let app = spawn_app_with(|config| config.engine.max_unfinished_attempts = 2).await;
    let sink = Sink::start(Behaviour::Status(200)).await;
    let destination = app.create_destination(&sink.url).await;
    app.create_subscription(&destination, &["#"]).await;
    // Paused, so nothing is claimed before the count is in place.
    app.post(&format!("/v1/destinations/{destination}/pause"), json!({})).await.assert_status(200);
    for event_id in ["poison", "healthy"] {
        app.publish(json!({"event_id": event_id, "event_type": "a.b", "payload": {}}))
            .await
            .assert_status(201);
    }
    let poison = app.get("/v1/events/poison").await.data()["deliveries"][0]["id"]
        .as_str()
        .expect("a delivery")
        .to_owned();
    // Two leases of it already ended without an outcome: the nodes running it died.
    let database = app.database().await;
    let updated = sqlx::query("UPDATE deliveries SET unfinished_attempts = 2 WHERE id = ?")
        .bind(&poison)
        .execute(&database)
        .await
        .expect("the count is set");
    assert_eq!(updated.rows_affected(), 1);
    database.close().await;

    app.post(&format!("/v1/destinations/{destination}/resume"), json!({})).await.assert_status(200);
    let dead = delivery_with_status(&app, "poison", "dead").await;
    assert_eq!(dead["last_error"], crash_loop_error(2), "{dead}");
    assert_eq!(dead["unfinished_attempts"], 0, "the recorded attempt ends the count: {dead}");
    assert_eq!(dead["attempt_count"], 1);
    let attempt = &dead["attempts"][0];
    assert_eq!((attempt["outcome"].as_str(), attempt["status_code"].as_u64()), (Some("permanent"), None));
    assert_eq!(attempt["error"], crash_loop_error(2));
    let letters = app.get("/v1/dead-letters").await;
    assert_eq!(letters.data()[0]["id"], poison.as_str(), "{}", letters.body);

    // The other delivery goes through; the poisoned one was never sent.
    delivery_with_status(&app, "healthy", "succeeded").await;
    let received = sink.wait_for(DEADLINE, |r| !r.is_empty()).await;
    assert!(received.iter().all(|r| r.header("webhook-id") != poison), "the poisoned delivery was sent");
}

/// Kills `node` as a crash would: no shutdown, its leases left to expire.
fn crash(mut node: Node) {
    node.child.kill().expect("SIGKILL is sent");
    node.child.wait().expect("the node is gone");
}

/// The delivery of `event_id` once `done` holds for it, polled on `node`.
async fn delivery_when(
    scenario: &Scenario,
    node: &Node,
    event_id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let event = scenario.get(node, &format!("/v1/events/{event_id}")).await;
        let delivery = &event["deliveries"][0];
        if done(delivery) {
            return delivery.clone();
        }
        assert!(started.elapsed() < DEADLINE, "the delivery of {event_id} stays {delivery}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_kills_every_node_running_it_goes_dead_after_the_configured_kills() {
    const MAX_UNFINISHED: u32 = 2;
    let max = MAX_UNFINISHED.to_string();
    let env = [("SWITCHYARD_ENGINE__MAX_UNFINISHED_ATTEMPTS", max.as_str())];
    let scenario = Scenario::new();
    // The poisoned delivery's attempt never finishes: it is in flight whenever the node dies.
    let hanging = Sink::start(Behaviour::Hang).await;
    let healthy = Sink::start(Behaviour::Status(200)).await;
    let mut node = scenario.start_with(&env).await;
    for (name, sink, pattern) in [("hanging", &hanging, "poison.#"), ("healthy", &healthy, "fine.#")] {
        let destination = scenario
            .post(
                &node,
                "/v1/destinations",
                json!({"name": name, "kind": "http", "config": {"url": sink.url}, "timeout_ms": 60_000}),
            )
            .await;
        let id = destination["data"]["id"].as_str().expect("an id");
        scenario
            .post(
                &node,
                "/v1/subscriptions",
                json!({"name": name, "destination_id": id, "event_types": [pattern]}),
            )
            .await;
    }
    scenario
        .post(&node, "/v1/events", json!({"event_id": "p-1", "event_type": "poison.item", "payload": {}}))
        .await;

    for kill in 1..=MAX_UNFINISHED as usize {
        hanging.wait_for(DEADLINE, |r| r.len() >= kill).await;
        let leased = delivery_when(&scenario, &node, "p-1", |d| d["status"] == "in_flight").await;
        assert_eq!(leased["unfinished_attempts"], kill, "{leased}");
        crash(node);
        node = scenario.start_with(&env).await;
    }

    // The node started after the last kill records it dead instead of running it.
    let dead = delivery_when(&scenario, &node, "p-1", |d| d["status"] == "dead").await;
    assert_eq!(dead["last_error"], crash_loop_error(MAX_UNFINISHED), "{dead}");
    assert_eq!(dead["attempt_count"], 1, "{dead}");
    assert_eq!(hanging.received().len(), MAX_UNFINISHED as usize, "it was not sent again");

    // Everything else still goes through.
    scenario
        .post(&node, "/v1/events", json!({"event_id": "f-1", "event_type": "fine.item", "payload": {}}))
        .await;
    healthy.wait_for(DEADLINE, |r| r.iter().any(|request| request.succeeded())).await;
    crash(node);
}
