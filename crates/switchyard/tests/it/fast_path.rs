//! The delivery fast path: deliveries an ingest leases to its own node and hands over in
//! memory. What does not fit the queue goes through claims; ordered subscriptions keep their
//! order; a node killed with deliveries still queued loses none of them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};
use crate::process::{Node, Scenario};
use crate::sink::{Behaviour, Sink};

const DEADLINE: Duration = Duration::from_secs(60);

/// The deliveries the node's dispatcher took by each path (`fast`, `claim`), from `/metrics`.
async fn taken(client: &reqwest::Client, address: &str) -> HashMap<String, u64> {
    let text =
        client.get(format!("{address}/metrics")).send().await.expect("sent").text().await.expect("text");
    let mut taken = HashMap::new();
    for line in text.lines().filter(|l| l.starts_with("switchyard_deliveries_taken_total{")) {
        let path = line.split("path=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("?");
        let count = line.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()).unwrap_or(0.0);
        taken.insert(path.to_owned(), count as u64);
    }
    taken
}

fn batch(prefix: &str, range: std::ops::Range<usize>) -> Value {
    let events: Vec<Value> = range
        .map(|i| json!({"event_id": format!("{prefix}-{i}"), "event_type": "load.item", "payload": {"i": i}}))
        .collect();
    json!({ "events": events })
}

/// Waits until `app` recorded `count` deliveries as succeeded.
async fn all_succeeded(app: &TestApp, count: u64) {
    let started = Instant::now();
    while app.count("/v1/deliveries?status=succeeded").await < count {
        assert!(started.elapsed() < DEADLINE, "the attempts were never all recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_fast_queue_is_delivered_completely_through_claims() {
    let app = spawn_app_with(|config| config.engine.fast_queue = 16).await;
    let sink = Sink::start(Behaviour::Status(200)).await;
    let destination = app.create_destination(&sink.url).await;
    app.create_subscription(&destination, &["#"]).await;

    let total = 600;
    for from in (0..total).step_by(200) {
        app.post("/v1/events/batch", batch("burst", from..from + 200)).await.assert_status(200);
    }
    sink.wait_for(DEADLINE, |r| r.len() >= total).await;
    all_succeeded(&app, total as u64).await;
    assert_eq!(sink.by_delivery().len(), total, "each delivery arrived");
    assert!(sink.by_delivery().values().all(|n| *n == 1), "none twice");

    let taken = taken(&app.client, &app.address).await;
    let (fast, claimed) = (taken.get("fast").copied().unwrap_or(0), taken.get("claim").copied().unwrap_or(0));
    assert!(fast > 0 && fast <= total as u64, "some went the fast way: {taken:?}");
    assert!(claimed > 0, "what did not fit went through claims: {taken:?}");
    // Each delivery was taken once, by one path or the other; waits for a busy destination
    // (handed back, then claimed) may add claims, never fast handoffs.
    assert!(fast + claimed >= total as u64, "{taken:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_subscriptions_keep_each_keys_order_beside_fast_unordered_ones() {
    let app = spawn_app_with(|_| {}).await;
    let ordered_sink = Sink::start(Behaviour::FailSome { percent: 20, status: 500 }).await;
    let plain_sink = Sink::start(Behaviour::Status(200)).await;
    let ordered_destination = app
        .post(
            "/v1/destinations",
            json!({"name": "ordered", "kind": "http", "config": {"url": ordered_sink.url},
                   "retry": {"max_attempts": 100, "initial_delay_ms": 5, "multiplier": 1.0,
                             "max_delay_ms": 20, "jitter": 0.0},
                   "circuit_breaker": {"consecutive_failures": 10_000, "failure_ratio": 1.0,
                                       "min_requests": 1_000_000, "window_ms": 1_000,
                                       "cooldown_ms": 10, "max_cooldown_ms": 10}}),
        )
        .await;
    ordered_destination.assert_status(201);
    let ordered_destination = ordered_destination.data()["id"].as_str().expect("an id").to_owned();
    app.post(
        "/v1/subscriptions",
        json!({"name": "in order", "destination_id": ordered_destination, "event_types": ["#"],
               "ordering": "key"}),
    )
    .await
    .assert_status(201);
    let plain_destination = app.create_destination(&plain_sink.url).await;
    app.create_subscription(&plain_destination, &["#"]).await;

    // 300 events over 6 keys, interleaved, in small batches and single events.
    let events: Vec<Value> = (0..50)
        .flat_map(|n| {
            (0..6).map(move |k| {
                json!({"event_id": format!("k{k}-{n}"), "event_type": "account.changed",
                       "payload": {"key": format!("k{k}"), "n": n}, "ordering_key": format!("k{k}")})
            })
        })
        .collect();
    for chunk in events.chunks(30) {
        app.post("/v1/events/batch", json!({ "events": chunk })).await.assert_status(200);
    }

    let received =
        ordered_sink.wait_for(DEADLINE, |r| r.iter().filter(|r| r.succeeded()).count() >= 300).await;
    let mut next: HashMap<String, u64> = HashMap::new();
    for request in &received {
        let body = request.json();
        let key = body["key"].as_str().unwrap_or("?").to_owned();
        let n = body["n"].as_u64().unwrap_or(u64::MAX);
        let expected = next.entry(key.clone()).or_default();
        assert!(n <= *expected, "{key}-{n} was sent before {key}-{expected} succeeded");
        if n == *expected && request.succeeded() {
            *expected += 1;
        }
    }
    assert!(next.values().all(|n| *n == 50), "every key complete, in order: {next:?}");
    plain_sink.wait_for(DEADLINE, |r| r.len() >= 300).await;
    all_succeeded(&app, 600).await;
    let taken = taken(&app.client, &app.address).await;
    assert!(taken.get("fast").is_some_and(|n| *n > 0), "the unordered ones went the fast way: {taken:?}");
}

/// How many deliveries the node holds leased (in flight), by the API.
async fn in_flight(scenario: &Scenario, node: &Node) -> u64 {
    let listing = scenario.get_answer(node, "/v1/deliveries?status=in_flight&per_page=1").await;
    listing["pagination"]["total_items"].as_u64().expect("total_items")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_killed_with_deliveries_in_its_fast_queue_loses_none_after_a_restart() {
    let scenario = Scenario::new();
    // Slow enough that most of what is ingested still waits in the queue at the kill.
    let sink = Sink::start(Behaviour::Slow { delay: Duration::from_millis(300), status: 200 }).await;
    let env = [
        ("SWITCHYARD_ENGINE__FAST_QUEUE", "4096"),
        ("SWITCHYARD_ENGINE__MAX_IN_FLIGHT_PER_DESTINATION", "32"),
    ];
    let mut node = scenario.start_with(&env).await;
    scenario.route_to(&node, &sink).await;
    let total = 800;
    scenario.post(&node, "/v1/events/batch", batch("e", 0..total)).await;
    sink.wait_for(DEADLINE, |r| r.len() >= 40).await;
    let client = crate::helpers::http_client();
    let fast = taken(&client, &node.address).await.get("fast").copied().unwrap_or(0);
    assert!(fast > 0, "deliveries went the fast way");
    let held = in_flight(&scenario, &node).await;
    assert!(held > 32, "more leased than running ({held}): some wait in the queue");
    node.child.kill().expect("SIGKILL is sent");
    node.child.wait().expect("the node is gone");
    assert!(
        sink.received().len() < total,
        "everything was delivered before the kill; the test proves nothing"
    );

    sink.set(Behaviour::Status(200));
    let mut restarted = scenario.start_with(&env).await;
    sink.wait_for_distinct(Duration::from_secs(90), total).await;
    let repeated = sink.by_delivery().values().filter(|n| **n > 1).count();
    assert!(repeated <= 32, "{repeated} deliveries arrived twice; at most 32 were being sent");
    let started = Instant::now();
    while in_flight(&scenario, &restarted).await > 0 {
        assert!(started.elapsed() < DEADLINE, "leases were left behind");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    restarted.child.kill().expect("stopped");
    let _ = restarted.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_queued_while_the_dispatcher_looks_away_do_not_wait_for_the_poll() {
    // The poll is the dispatcher's safety net, a minute here: every handover to the fast
    // queue must wake it, including one that lands between its look at the queue and its wait.
    let app = spawn_app_with(|config| {
        config.engine.poll_interval_ms = 60_000;
        config.rate_limit.per_second = 0;
    })
    .await;
    let sink = Sink::start(Behaviour::Status(200)).await;
    let destination = app.create_destination(&sink.url).await;
    app.create_subscription(&destination, &["#"]).await;

    let (publishers, each) = (8, 250);
    let mut publishing = tokio::task::JoinSet::new();
    for publisher in 0..publishers {
        let (client, address, token) = (app.client.clone(), app.address.clone(), app.admin_token.clone());
        publishing.spawn(async move {
            for i in 0..each {
                let event = json!({"event_id": format!("p{publisher}-{i}"), "event_type": "load.item", "payload": {}});
                let answer =
                    client.post(format!("{address}/v1/events")).bearer_auth(&token).json(&event).send().await;
                assert!(answer.expect("sent").status().is_success(), "the event was accepted");
            }
        });
    }
    while let Some(published) = publishing.join_next().await {
        published.expect("the publisher finished");
    }
    let total = publishers * each;
    sink.wait_for(Duration::from_secs(15), |received| received.len() >= total).await;
    all_succeeded(&app, total as u64).await;
    let taken = taken(&app.client, &app.address).await;
    assert_eq!(taken.get("claim").copied().unwrap_or(0), 0, "nothing was handed back and claimed: {taken:?}");
}
