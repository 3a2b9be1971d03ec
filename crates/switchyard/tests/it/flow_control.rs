//! Flow control against real sinks on loopback: circuit breakers (open, wait without spending
//! attempts, one probe, drain), isolation of a hanging destination, and rate limits.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard_core::time::parse_rfc3339;

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::sink::{Behaviour, Sink};

const DEADLINE: Duration = Duration::from_secs(20);

/// A destination at `url` with `extra` fields (policies) and a subscription to `pattern`.
async fn route(app: &TestApp, url: &str, pattern: &str, extra: Value) -> String {
    let mut body = json!({"name": pattern, "kind": "http", "config": {"url": url}});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let answer = app.post("/v1/destinations", body).await;
    answer.assert_status(201);
    let id = answer.data()["id"].as_str().expect("an id").to_owned();
    app.create_subscription(&id, &[pattern]).await;
    id
}

/// Publishes `count` events of `event_type` in one batch, ids `<prefix>-<n>`.
async fn publish_batch(app: &TestApp, prefix: &str, event_type: &str, count: usize) {
    let events: Vec<Value> = (0..count)
        .map(|n| json!({"event_id": format!("{prefix}-{n}"), "event_type": event_type, "payload": {"n": n}}))
        .collect();
    let answer = app.post("/v1/events/batch", json!({ "events": events })).await;
    answer.assert_status(200);
    assert!(
        answer.data()["results"].as_array().expect("results").iter().all(|r| r["status"] == "created"),
        "{}",
        answer.body
    );
}

async fn health(app: &TestApp, destination: &str) -> Value {
    let answer = app.get(&format!("/v1/destinations/{destination}/health")).await;
    answer.assert_status(200);
    answer.data().clone()
}

/// Polls the destination's health until its circuit is in `state`.
async fn circuit_becomes(app: &TestApp, destination: &str, state: &str) -> Value {
    let started = Instant::now();
    loop {
        let health = health(app, destination).await;
        if health["circuit"]["state"] == state {
            return health;
        }
        assert!(started.elapsed() < DEADLINE, "the circuit never became {state}: {health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every delivery of `destination` (at most 100), with its attempts.
async fn deliveries_of(app: &TestApp, destination: &str) -> Vec<Value> {
    let listing = app.get(&format!("/v1/deliveries?destination_id={destination}&per_page=100")).await;
    listing.assert_status(200);
    let mut deliveries = Vec::new();
    for delivery in listing.data().as_array().expect("a list") {
        let id = delivery["id"].as_str().expect("an id");
        deliveries.push(app.get(&format!("/v1/deliveries/{id}")).await.data().clone());
    }
    deliveries
}

/// Polls until every delivery of `destination` has `status`; answers them.
async fn all_become(app: &TestApp, destination: &str, count: usize, status: &str) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let deliveries = deliveries_of(app, destination).await;
        if deliveries.len() == count && deliveries.iter().all(|d| d["status"] == status) {
            return deliveries;
        }
        assert!(started.elapsed() < DEADLINE, "the deliveries never all became {status}: {deliveries:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn millis(value: &Value) -> i64 {
    parse_rfc3339(value.as_str().expect("an instant")).expect("RFC 3339")
}

#[tokio::test]
async fn a_dead_sink_opens_its_circuit_and_recovers_through_one_probe() {
    let app = spawn_app().await;
    let dead = Sink::start(Behaviour::Status(503)).await;
    let sentinel = Sink::start(Behaviour::Status(204)).await;
    let guarded = route(
        &app,
        &dead.url,
        "dead.*",
        json!({
            "retry": {"max_attempts": 20, "initial_delay_ms": 50, "multiplier": 1.0, "jitter": 0.0},
            "circuit_breaker": {"consecutive_failures": 3, "cooldown_ms": 2_000, "max_cooldown_ms": 8_000},
        }),
    )
    .await;
    let live = route(&app, &sentinel.url, "live.*", json!({})).await;

    // Three failures in a row (one delivery, retried) open the circuit.
    publish_batch(&app, "c", "dead.a", 1).await;
    dead.wait_for(DEADLINE, |r| r.len() >= 3).await;
    let open = circuit_becomes(&app, &guarded, "open").await;
    assert_eq!(open["circuit"]["reason"], "3 consecutive failures", "{open}");
    let opened_at = millis(&open["circuit"]["opened_at"]);
    assert_eq!(millis(&open["circuit"]["next_probe_at"]), opened_at + 2_000);
    assert_eq!(open["success_rate"], 0.0);
    assert_eq!(open["attempts"], 3);
    assert!(open["latency_ms"]["p50"].is_u64(), "{open}");

    // While open: a backlog waits, and the engine keeps working for others. By the time the
    // sentinel has all of its events (published after the backlog, so claimed no earlier),
    // the backlog has been claimed and handed back: no request, no attempt.
    publish_batch(&app, "w", "dead.b", 5).await;
    publish_batch(&app, "s", "live.x", 10).await;
    sentinel.wait_for(DEADLINE, |r| r.len() >= 10).await;
    assert_eq!(dead.received().len(), 3, "nothing reaches an open circuit");
    let waiting = deliveries_of(&app, &guarded).await;
    assert_eq!(waiting.len(), 6);
    for delivery in &waiting {
        // Pending, or for a moment in flight between a claim and its hand-back.
        assert!(["pending", "in_flight"].contains(&delivery["status"].as_str().unwrap_or("")), "{delivery}");
        let expected = if delivery["event_id"] == "c-0" { 3 } else { 0 };
        assert_eq!(delivery["attempt_count"], expected, "no attempt is spent while open: {delivery}");
    }
    let still = health(&app, &guarded).await;
    assert_eq!(still["circuit"]["state"], "open", "the window above was inside the cool-down: {still}");
    all_become(&app, &live, 10, "succeeded").await;

    // The sink recovers: one probe closes the circuit, then the backlog drains.
    dead.set(Behaviour::Status(204));
    let drained = all_become(&app, &guarded, 6, "succeeded").await;
    assert_eq!(dead.received().len(), 3 + 6, "three failures, then each delivery once");
    let mut successes: Vec<(i64, i64)> = drained
        .iter()
        .flat_map(|d| d["attempts"].as_array().expect("attempts").iter())
        .filter(|a| a["outcome"] == "succeeded")
        .map(|a| (millis(&a["started_at"]), a["duration_ms"].as_i64().expect("a duration")))
        .collect();
    successes.sort();
    let (probe_started, probe_took) = successes[0];
    assert!(probe_started >= opened_at + 2_000, "the probe waited for the cool-down");
    for (started, _) in &successes[1..] {
        assert!(
            *started >= probe_started + probe_took,
            "a delivery went while the probe was out: {successes:?}"
        );
    }
    let closed = circuit_becomes(&app, &guarded, "closed").await;
    assert!(closed["circuit"]["opened_at"].is_null() && closed["circuit"]["reason"].is_null(), "{closed}");
    assert_eq!(closed["attempts"], 9);
}

#[tokio::test]
async fn a_hanging_destination_does_not_slow_a_healthy_one() {
    let app = spawn_app_with(|config| {
        config.engine.concurrency = 16;
        config.engine.max_in_flight_per_destination = Some(4);
    })
    .await;
    let hanging = Sink::start(Behaviour::Hang).await;
    let healthy = Sink::start(Behaviour::Status(204)).await;
    route(&app, &hanging.url, "stuck.*", json!({"timeout_ms": 60_000})).await;
    route(&app, &healthy.url, "fine.*", json!({})).await;

    // More hanging deliveries than the node has slots: without a bound per destination they
    // would hold every slot for the whole timeout.
    publish_batch(&app, "h", "stuck.a", 40).await;
    hanging.wait_for(DEADLINE, |r| r.len() >= 4).await;

    publish_batch(&app, "g", "fine.a", 300).await;
    let deadline = Duration::from_secs(10);
    let received = healthy.wait_for(deadline, |r| r.len() >= 300).await;
    assert_eq!(received.len(), 300);
    assert_eq!(hanging.received().len(), 4, "the hanging destination holds only its own slots");
}

#[tokio::test]
async fn a_rate_limited_destination_never_gets_more_than_its_rate_and_burst_in_a_second() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(204)).await;
    let (per_second, burst) = (5, 2);
    let limited = route(
        &app,
        &sink.url,
        "metered.*",
        json!({"rate_limit": {"per_second": per_second, "burst": burst}}),
    )
    .await;
    publish_batch(&app, "m", "metered.a", 30).await;

    let received = sink.wait_for(Duration::from_secs(30), |r| r.len() >= 30).await;
    let mut instants: Vec<Instant> = received.iter().map(|r| r.at).collect();
    instants.sort();
    for (i, start) in instants.iter().enumerate() {
        let in_second =
            instants[i..].iter().take_while(|t| t.duration_since(*start) < Duration::from_secs(1)).count();
        assert!(in_second <= per_second + burst, "{in_second} requests within a second of request {i}");
    }
    let span = instants[29].duration_since(instants[0]);
    assert!(span >= Duration::from_millis(4_400), "30 requests at 5/s after a burst of 2 took {span:?}");

    // They waited; none failed or spent more than its one attempt.
    let delivered = all_become(&app, &limited, 30, "succeeded").await;
    assert!(delivered.iter().all(|d| d["attempt_count"] == 1), "{delivered:?}");
}
