//! Ordered subscriptions end to end: per-key FIFO to a real sink, one in flight per key, keys
//! in parallel, and what a dead delivery does to its key under `skip` and `block`.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::sink::{Behaviour, Received, Sink};

const DEADLINE: Duration = Duration::from_secs(60);

/// A destination retrying fast and often, whose circuit never opens (a flaky sink must not
/// pause it).
async fn patient_destination(app: &TestApp, url: &str) -> String {
    let answer = app
        .post(
            "/v1/destinations",
            json!({"name": "ordered sink", "kind": "http", "config": {"url": url},
                   "retry": {"max_attempts": 100, "initial_delay_ms": 5, "multiplier": 1.0,
                             "max_delay_ms": 50, "jitter": 0.0},
                   "circuit_breaker": {"consecutive_failures": 10_000, "failure_ratio": 1.0,
                                       "min_requests": 1_000_000, "window_ms": 1_000,
                                       "cooldown_ms": 10, "max_cooldown_ms": 10}}),
        )
        .await;
    answer.assert_status(201);
    answer.data()["id"].as_str().expect("an id").to_owned()
}

async fn ordered_subscription(app: &TestApp, destination: &str, on_dead: &str) -> String {
    let answer = app
        .post(
            "/v1/subscriptions",
            json!({"name": "in order", "destination_id": destination, "event_types": ["#"],
                   "ordering": "key", "ordering_on_dead": on_dead}),
        )
        .await;
    answer.assert_status(201);
    answer.data()["id"].as_str().expect("an id").to_owned()
}

fn keyed(key: &str, n: u64) -> Value {
    json!({"event_id": format!("{key}-{n}"), "event_type": "account.changed",
           "payload": {"key": key, "n": n}, "ordering_key": key})
}

/// `(key, n)` of a received request.
fn tag(request: &Received) -> (String, u64) {
    let body = request.json();
    (body["key"].as_str().unwrap_or("?").to_owned(), body["n"].as_u64().unwrap_or(u64::MAX))
}

/// Per key, every request was for the key's next event not yet answered 2xx (or a repeat of
/// one already answered): no event was sent before its predecessor had succeeded. Answers how
/// many events of each key succeeded, in order.
#[track_caller]
fn assert_fifo(received: &[Received]) -> HashMap<String, u64> {
    let mut done: HashMap<String, u64> = HashMap::new();
    for request in received {
        let (key, n) = tag(request);
        let next = done.entry(key.clone()).or_default();
        assert!(n <= *next, "{key}-{n} was sent before {key}-{next} succeeded");
        if n == *next && request.succeeded() {
            *next += 1;
        }
    }
    done
}

#[tokio::test]
async fn an_ordered_subscription_delivers_each_key_in_ingest_order_through_a_flaky_sink() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::FailSome { percent: 30, status: 500 }).await;
    let destination = patient_destination(&app, &sink.url).await;
    ordered_subscription(&app, &destination, "skip").await;

    // 1 000 events over 10 keys, interleaved, in one batch (one transaction, in order).
    let events: Vec<Value> =
        (0..100).flat_map(|n| (0..10).map(move |k| keyed(&format!("k{k}"), n))).collect();
    let batch = app.post("/v1/events/batch", json!({ "events": events })).await;
    batch.assert_status(200);
    assert!(
        batch.data()["results"].as_array().expect("results").iter().all(|r| r["status"] == "created"),
        "{}",
        batch.body
    );

    let received =
        sink.wait_for(DEADLINE, |received| received.iter().filter(|r| r.succeeded()).count() >= 1_000).await;
    let done = assert_fifo(&received);
    assert_eq!(done.len(), 10, "{done:?}");
    assert!(done.values().all(|n| *n == 100), "every key complete: {done:?}");
    let failures = received.iter().filter(|r| !r.succeeded()).count();
    assert!(failures > 200, "the sink failed about 30 % of the requests ({failures})");

    // The keys ran side by side: some key's request came while another key was mid-way.
    let first_of = |key: &str| received.iter().position(|r| tag(r).0 == key).expect("a request");
    let last_of = |key: &str| received.iter().rposition(|r| tag(r).0 == key).expect("a request");
    assert!(first_of("k9") < last_of("k0"), "keys are delivered in parallel, not one after another");

    // And the API agrees, once the last answers are recorded: every delivery succeeded.
    let started = std::time::Instant::now();
    while app.count("/v1/deliveries?status=succeeded").await < 1_000 {
        assert!(started.elapsed() < DEADLINE, "the last attempts were never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.count("/v1/deliveries").await, 1_000);
}

/// Publishes `key-0` … `key-{count - 1}`; `key-0` carries the marker the sink rejects.
async fn publish_key(app: &TestApp, key: &str, count: u64) {
    for n in 0..count {
        let mut event = keyed(key, n);
        if n == 0 {
            event["payload"]["poison"] = json!("reject me");
        }
        app.publish(event).await.assert_status(201);
    }
}

async fn dead_delivery_of(app: &TestApp, event_id: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let event = app.get(&format!("/v1/events/{event_id}")).await;
        if let Some(delivery) = event.data()["deliveries"].as_array().and_then(|d| d.first())
            && delivery["status"] == "dead"
        {
            return delivery["id"].as_str().expect("an id").to_owned();
        }
        assert!(started.elapsed() < DEADLINE, "{event_id} never went dead: {}", event.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn succeeded_tags(received: &[Received], key: &str) -> Vec<u64> {
    received.iter().filter(|r| r.succeeded()).map(tag).filter(|(k, _)| k == key).map(|(_, n)| n).collect()
}

#[tokio::test]
async fn block_holds_a_key_behind_its_dead_delivery_until_replayed_while_other_keys_flow() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::FailWhen { marker: "reject me".into(), status: 422 }).await;
    let destination = patient_destination(&app, &sink.url).await;
    ordered_subscription(&app, &destination, "block").await;

    publish_key(&app, "held", 3).await;
    let dead = dead_delivery_of(&app, "held-0").await;
    for n in 0..5 {
        app.publish(keyed("free", n)).await.assert_status(201);
    }
    // The other key flows to its end; only then is the held key's absence meaningful.
    sink.wait_for(DEADLINE, |r| succeeded_tags(r, "free").len() == 5).await;
    let received = sink.received();
    assert_eq!(succeeded_tags(&received, "held"), Vec::<u64>::new(), "held-1 and held-2 wait");
    assert_eq!(received.iter().filter(|r| tag(r).0 == "held").count(), 1, "only the rejected head was sent");
    assert_eq!(app.count("/v1/deliveries?status=pending").await, 2);

    // Fixed and replayed, the dead head goes first and its key follows, in order.
    sink.set(Behaviour::Status(200));
    app.post(&format!("/v1/deliveries/{dead}/retry"), json!({})).await.assert_status(200);
    let received = sink.wait_for(DEADLINE, |r| succeeded_tags(r, "held").len() == 3).await;
    assert_eq!(succeeded_tags(&received, "held"), [0, 1, 2]);
    assert_fifo(&received);
}

#[tokio::test]
async fn skip_lets_a_key_go_on_past_its_dead_delivery() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::FailWhen { marker: "reject me".into(), status: 422 }).await;
    let destination = patient_destination(&app, &sink.url).await;
    ordered_subscription(&app, &destination, "skip").await;

    publish_key(&app, "k", 4).await;
    let received = sink.wait_for(DEADLINE, |r| succeeded_tags(r, "k").len() == 3).await;
    assert_eq!(succeeded_tags(&received, "k"), [1, 2, 3], "in order, past the dead k-0");
    dead_delivery_of(&app, "k-0").await;
    let sent: Vec<u64> = received.iter().map(|r| tag(r).1).collect();
    assert_eq!(sent, [0, 1, 2, 3], "the head first, then the rest, each once");
}
