//! The delivery engine against a real HTTP sink on loopback: success, retries on the policy's
//! schedule, dead letters and their replay, pause and resume, test sends, secret rotation.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::sink::{Behaviour, Sink};

const DEADLINE: Duration = Duration::from_secs(20);

/// A destination at `url` with a fast, jitter-free retry policy.
async fn destination(app: &TestApp, url: &str, retry: Value, extra: Value) -> String {
    let mut body = json!({"name": "sink", "kind": "http", "config": {"url": url}, "retry": retry});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let answer = app.post("/v1/destinations", body).await;
    answer.assert_status(201);
    answer.data()["id"].as_str().expect("an id").to_owned()
}

fn fast_retry(max_attempts: u32) -> Value {
    json!({"max_attempts": max_attempts, "initial_delay_ms": 100, "multiplier": 2.0, "jitter": 0.0, "max_delay_ms": 10_000})
}

/// Polls the delivery of `event_id` until it has `status`.
pub async fn delivery_with_status(app: &TestApp, event_id: &str, status: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let event = app.get(&format!("/v1/events/{event_id}")).await;
        let first = event.data()["deliveries"].as_array().and_then(|d| d.first());
        if let Some(delivery) = first.filter(|d| d["status"] == status) {
            let id = delivery["id"].as_str().expect("an id");
            return app.get(&format!("/v1/deliveries/{id}")).await.data().clone();
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the delivery of {event_id} never became {status}: {}",
            event.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn outcomes(delivery: &Value) -> Vec<(String, Option<u64>)> {
    delivery["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .map(|a| (a["outcome"].as_str().unwrap_or("?").to_owned(), a["status_code"].as_u64()))
        .collect()
}

#[tokio::test]
async fn a_published_event_reaches_the_sink_with_the_standard_webhook_headers() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(204)).await;
    let destination = destination(&app, &sink.url, fast_retry(3), json!({})).await;
    app.create_subscription(&destination, &["order.*"]).await;
    let published = app
        .send(
            app.request(reqwest::Method::POST, "/v1/events")
                .header("x-correlation-id", "checkout-77")
                .json(&json!({"event_id": "o-1", "event_type": "order.created", "payload": {"total": 5},
                              "metadata": {"causation_id": "cart-9"}})),
        )
        .await;
    published.assert_status(201);

    let received = sink.wait_for(DEADLINE, |r| !r.is_empty()).await;
    let request = &received[0];
    let delivery = delivery_with_status(&app, "o-1", "succeeded").await;
    assert_eq!(request.header("webhook-id"), delivery["id"].as_str().expect("an id"));
    assert!(request.header("webhook-signature").starts_with("v1,"));
    assert!(request.header("webhook-timestamp").parse::<i64>().is_ok());
    assert_eq!(request.header("x-event-type"), "order.created");
    assert_eq!(request.header("x-event-id"), "o-1");
    assert_eq!(request.header("x-correlation-id"), "checkout-77");
    assert_eq!(request.header("x-causation-id"), "cart-9");
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(serde_json::from_slice::<Value>(&request.body).expect("JSON"), json!({"total": 5}));
    assert_eq!(outcomes(&delivery), [("succeeded".to_owned(), Some(204))]);
    assert_eq!(delivery["attempt_count"], 1);
}

#[tokio::test]
async fn server_errors_are_retried_on_the_policy_schedule_until_the_sink_recovers() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::FailFirst { times: 3, status: 500 }).await;
    let destination = destination(&app, &sink.url, fast_retry(5), json!({})).await;
    app.create_subscription(&destination, &["#"]).await;
    app.publish(json!({"event_id": "r-1", "event_type": "a", "payload": {}})).await.assert_status(201);

    let received = sink.wait_for(DEADLINE, |r| r.len() >= 4).await;
    let ids: Vec<&str> = received.iter().map(|r| r.header("webhook-id")).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "webhook-id changed between attempts: {ids:?}");
    for (gap, (earlier, later)) in [100u64, 200, 400].iter().zip(received.iter().zip(received.iter().skip(1)))
    {
        let waited = later.at.duration_since(earlier.at);
        assert!(
            waited >= Duration::from_millis(gap - 10),
            "retry came after {waited:?}, policy says {gap} ms"
        );
    }
    let delivery = delivery_with_status(&app, "r-1", "succeeded").await;
    assert_eq!(
        outcomes(&delivery),
        [
            ("retryable".to_owned(), Some(500)),
            ("retryable".to_owned(), Some(500)),
            ("retryable".to_owned(), Some(500)),
            ("succeeded".to_owned(), Some(200))
        ]
    );
    let numbers: Vec<u64> = delivery["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter_map(|a| a["number"].as_u64())
        .collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(sink.received().len(), 4, "nothing after success");
}

#[tokio::test]
async fn a_client_error_is_dead_at_once_and_replay_delivers_it_after_the_fix() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(422)).await;
    let destination = destination(&app, &sink.url, fast_retry(5), json!({})).await;
    app.create_subscription(&destination, &["#"]).await;
    app.publish(json!({"event_id": "d-1", "event_type": "a", "payload": {}})).await.assert_status(201);

    let dead = delivery_with_status(&app, "d-1", "dead").await;
    assert_eq!(outcomes(&dead), [("permanent".to_owned(), Some(422))]);
    assert!(dead["last_error"].as_str().unwrap_or("").contains("422"));
    let letters = app.get("/v1/dead-letters").await;
    assert_eq!(letters.body["pagination"]["total_items"], 1);
    assert_eq!(letters.data()[0]["id"], dead["id"]);

    sink.set(Behaviour::Status(200));
    let replay = app.post("/v1/dead-letters/replay", json!({"destination_id": destination})).await;
    replay.assert_status(202);
    assert_eq!(replay.data()["count"], 1);
    let delivered = delivery_with_status(&app, "d-1", "succeeded").await;
    assert_eq!(
        outcomes(&delivered),
        [("permanent".to_owned(), Some(422)), ("succeeded".to_owned(), Some(200))]
    );
    assert_eq!(app.get("/v1/dead-letters").await.body["pagination"]["total_items"], 0);
    let ids: Vec<String> = sink.received().iter().map(|r| r.header("webhook-id").to_owned()).collect();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1], "a replay keeps the delivery's webhook-id");
}

#[tokio::test]
async fn exhausted_retries_go_dead_and_one_delivery_can_be_retried() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(503)).await;
    let destination = destination(&app, &sink.url, fast_retry(3), json!({})).await;
    app.create_subscription(&destination, &["#"]).await;
    app.publish(json!({"event_id": "x-1", "event_type": "a", "payload": {}})).await.assert_status(201);
    let dead = delivery_with_status(&app, "x-1", "dead").await;
    assert_eq!(outcomes(&dead).len(), 3);
    assert_eq!(sink.received().len(), 3);

    let id = dead["id"].as_str().expect("an id");
    sink.set(Behaviour::Status(200));
    let retried = app.post(&format!("/v1/deliveries/{id}/retry"), json!({})).await;
    retried.assert_status(200);
    assert_eq!(retried.data()["attempt_count"], 0, "a fresh attempt budget");
    delivery_with_status(&app, "x-1", "succeeded").await;
    app.post(&format!("/v1/deliveries/{id}/retry"), json!({})).await.assert_error(409, "conflict");
    app.post("/v1/deliveries/dlv_missing/retry", json!({})).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::TooManyRequests { retry_after_s: 1 }).await;
    let destination = destination(&app, &sink.url, fast_retry(2), json!({})).await;
    app.create_subscription(&destination, &["#"]).await;
    app.publish(json!({"event_id": "t-1", "event_type": "a", "payload": {}})).await.assert_status(201);
    let received = sink.wait_for(DEADLINE, |r| r.len() >= 2).await;
    let waited = received[1].at.duration_since(received[0].at);
    assert!(waited >= Duration::from_millis(950), "Retry-After: 1 was not honoured (waited {waited:?})");
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retryable() {
    let app = spawn_app().await;
    let hanging = Sink::start(Behaviour::Hang).await;
    let slow =
        destination(&app, &hanging.url, fast_retry(2), json!({"timeout_ms": 200, "connect_timeout_ms": 200}))
            .await;
    app.create_subscription(&slow, &["slow"]).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("an address").port();
        drop(listener);
        format!("http://127.0.0.1:{port}/hook")
    };
    let refused = destination(&app, &closed, fast_retry(2), json!({})).await;
    app.create_subscription(&refused, &["refused"]).await;
    app.publish(json!({"event_id": "slow-1", "event_type": "slow", "payload": {}})).await.assert_status(201);
    app.publish(json!({"event_id": "ref-1", "event_type": "refused", "payload": {}}))
        .await
        .assert_status(201);

    let timed_out = delivery_with_status(&app, "slow-1", "dead").await;
    let errors: Vec<&str> = timed_out["attempts"]
        .as_array()
        .expect("attempts")
        .iter()
        .filter_map(|a| a["error"].as_str())
        .collect();
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|e| e.contains("timed out")), "{errors:?}");
    assert!(timed_out["attempts"].as_array().expect("attempts").iter().all(|a| a["outcome"] == "retryable"));

    let unreachable = delivery_with_status(&app, "ref-1", "dead").await;
    let error = unreachable["attempts"][0]["error"].as_str().unwrap_or("");
    assert!(error.contains("connect"), "{error}");
    assert_eq!(unreachable["attempts"][0]["outcome"], "retryable");
}

#[tokio::test]
async fn a_paused_destination_holds_its_deliveries_until_resumed() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(200)).await;
    let destination = destination(&app, &sink.url, fast_retry(3), json!({})).await;
    app.create_subscription(&destination, &["a"]).await;
    let paused = app.post(&format!("/v1/destinations/{destination}/pause"), json!({})).await;
    assert_eq!(paused.data()["enabled"], false);
    for i in 0..5 {
        app.publish(json!({"event_id": format!("p-{i}"), "event_type": "a", "payload": {}}))
            .await
            .assert_status(201);
    }
    // A sentinel to a second, active destination shows the engine has been running meanwhile.
    let other = Sink::start(Behaviour::Status(200)).await;
    let active = destination_named(&app, &other.url).await;
    app.create_subscription(&active, &["sentinel"]).await;
    app.publish(json!({"event_type": "sentinel", "payload": {}})).await.assert_status(201);
    other.wait_for(DEADLINE, |r| !r.is_empty()).await;
    assert!(sink.received().is_empty(), "a paused destination received requests");
    let pending = app.get(&format!("/v1/deliveries?destination_id={destination}&status=pending")).await;
    assert_eq!(pending.body["pagination"]["total_items"], 5);

    let resumed = app.post(&format!("/v1/destinations/{destination}/resume"), json!({})).await;
    assert_eq!(resumed.data()["enabled"], true);
    sink.wait_for(DEADLINE, |r| r.len() >= 5).await;
}

async fn destination_named(app: &TestApp, url: &str) -> String {
    destination(app, url, fast_retry(3), json!({})).await
}

#[tokio::test]
async fn a_test_send_reports_what_the_destination_answered() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(201)).await;
    let destination = destination(&app, &sink.url, fast_retry(3), json!({})).await;
    let answer = app.post(&format!("/v1/destinations/{destination}/test"), json!({})).await;
    answer.assert_status(200);
    assert_eq!(answer.data()["success"], true);
    assert_eq!(answer.data()["status_code"], 201);
    let received = sink.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("x-event-type"), "switchyard.ping");
    sink.set(Behaviour::Status(500));
    let failing = app.post(&format!("/v1/destinations/{destination}/test"), json!({})).await;
    assert_eq!(failing.data()["success"], false);
    assert_eq!(failing.data()["status_code"], 500);
    assert_eq!(app.count("/v1/deliveries").await, 0, "test sends are not stored");
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_old_one() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(200)).await;
    let destination = destination(&app, &sink.url, fast_retry(3), json!({})).await;
    app.create_subscription(&destination, &["#"]).await;
    let before = app.get(&format!("/v1/destinations/{destination}/signing-secret")).await;
    let old = before.data()["signing_secret"].as_str().expect("a secret").to_owned();
    assert!(old.starts_with("whsec_"));
    let rotated = app.post(&format!("/v1/destinations/{destination}/signing-secret/rotate"), json!({})).await;
    rotated.assert_status(200);
    let new = rotated.data()["signing_secret"].as_str().expect("a secret").to_owned();
    assert_ne!(old, new);
    assert!(rotated.data()["previous_secret_expires_at"].is_string());
    app.publish(json!({"event_type": "a", "payload": {}})).await.assert_status(201);
    let received = sink.wait_for(DEADLINE, |r| !r.is_empty()).await;
    assert_eq!(received[0].header("webhook-signature").split(' ').count(), 2);
    let shown = app.get(&format!("/v1/destinations/{destination}")).await;
    assert!(!shown.body.to_string().contains(&old) && !shown.body.to_string().contains(&new));
    app.patch(&format!("/v1/destinations/{destination}"), json!({"name": "still valid"}))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn an_attempt_slower_than_the_lease_is_not_claimed_again_while_it_runs() {
    let lease_ms = 300;
    let app = crate::helpers::spawn_app_with(|config| config.engine.lease_ms = lease_ms).await;
    let sink = Sink::start(Behaviour::Slow { delay: Duration::from_millis(5 * lease_ms), status: 204 }).await;
    let destination = destination(&app, &sink.url, fast_retry(3), json!({"timeout_ms": 10_000})).await;
    app.create_subscription(&destination, &["slow.answer"]).await;
    app.post("/v1/events", json!({"event_id": "slow-1", "event_type": "slow.answer", "payload": {}}))
        .await
        .assert_status(201);

    let delivery = delivery_with_status(&app, "slow-1", "succeeded").await;
    assert_eq!(outcomes(&delivery), [("succeeded".to_owned(), Some(204))]);
    assert_eq!(sink.received().len(), 1, "the renewed lease kept the delivery from a second claim");
}
