//! Operational events end to end: the hub's own `switchyard.*` events reach a healthy sink
//! through an ordinary subscription (circuits opening and closing, dead deliveries, failing
//! pull sources), each once, dead deliveries summarised per window, and none about the
//! operational events' own deliveries.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};
use crate::pull_sources::{AppDatabase, outbox_source};
use crate::sink::{Behaviour, Received, Sink};

const DEADLINE: Duration = Duration::from_secs(30);
const OPENED: &str = "switchyard.destination.circuit_opened";
const CLOSED: &str = "switchyard.destination.circuit_closed";
const DEAD: &str = "switchyard.delivery.dead";
const FAILING: &str = "switchyard.source.failing";

/// A destination named `name` at `url` with `extra` fields (policies), and a subscription to
/// `patterns`.
async fn route(app: &TestApp, name: &str, url: &str, patterns: &[&str], extra: Value) -> String {
    let mut body = json!({"name": name, "kind": "http", "config": {"url": url}});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let answer = app.post("/v1/destinations", body).await;
    answer.assert_status(201);
    let id = answer.data()["id"].as_str().expect("an id").to_owned();
    app.create_subscription(&id, patterns).await;
    id
}

/// What `sink` was sent of `event_type`, as bodies, each delivery once.
fn bodies_of(sink: &Sink, event_type: &str) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    sink.received()
        .iter()
        .filter(|r| r.header("x-event-type") == event_type && r.succeeded())
        .filter(|r| seen.insert(r.header("webhook-id").to_owned()))
        .map(Received::json)
        .collect()
}

/// The stored events of `event_type` (at most 100), payloads only.
async fn stored(app: &TestApp, event_type: &str) -> Vec<Value> {
    let answer = app.get(&format!("/v1/events?event_type={event_type}&per_page=100")).await;
    answer.assert_status(200);
    answer.data().as_array().expect("a list").iter().map(|e| e["payload"].clone()).collect()
}

async fn circuit_state(app: &TestApp, destination: &str) -> String {
    let answer = app.get(&format!("/v1/destinations/{destination}/health")).await;
    answer.assert_status(200);
    answer.data()["circuit"]["state"].as_str().expect("a state").to_owned()
}

async fn wait_until<F, Fut>(what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < DEADLINE, "{what} did not happen in {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn publish_orders(prefix: &str, count: usize) -> Value {
    let events: Vec<Value> = (0..count)
        .map(|n| json!({"event_id": format!("{prefix}-{n}"), "event_type": "order.created", "payload": {"n": n}}))
        .collect();
    json!({ "events": events })
}

#[tokio::test]
async fn a_circuit_that_opens_and_closes_is_announced_once_each_even_to_a_failing_alert_destination() {
    let app = spawn_app_with(|config| config.ingest.require_registered_types = true).await;
    let types = app.get("/v1/event-types?per_page=100").await;
    let names: Vec<&str> =
        types.data().as_array().expect("a list").iter().filter_map(|t| t["name"].as_str()).collect();
    for name in [OPENED, CLOSED, DEAD, FAILING] {
        assert!(names.contains(&name), "{name} is registered: {names:?}");
    }
    app.post("/v1/event-types", json!({"name": "order.created"})).await.assert_status(201);

    let alerts = Sink::start(Behaviour::Status(200)).await;
    route(&app, "alerts", &alerts.url, &["switchyard.#"], json!({})).await;
    // Receives only operational events and refuses them all: its own circuit opens, which
    // must raise nothing (no alert may cause another).
    let broken_alerts = Sink::start(Behaviour::Status(503)).await;
    let fast_breaker = json!({
        "retry": {"max_attempts": 30, "initial_delay_ms": 50, "multiplier": 1.0, "jitter": 0.0},
        "circuit_breaker": {"consecutive_failures": 2, "cooldown_ms": 500, "max_cooldown_ms": 1_000},
    });
    let broken = route(&app, "broken-alerts", &broken_alerts.url, &["switchyard.#"], fast_breaker).await;
    let orders = Sink::start(Behaviour::Status(503)).await;
    let policies = json!({
        "retry": {"max_attempts": 30, "initial_delay_ms": 50, "multiplier": 1.0, "jitter": 0.0},
        "circuit_breaker": {"consecutive_failures": 3, "cooldown_ms": 1_000, "max_cooldown_ms": 2_000},
    });
    let flaky = route(&app, "orders-api", &orders.url, &["order.created"], policies).await;

    app.post("/v1/events/batch", publish_orders("o", 3)).await.assert_status(200);
    alerts.wait_for(DEADLINE, |r| r.iter().any(|r| r.header("x-event-type") == OPENED)).await;
    let opened = bodies_of(&alerts, OPENED);
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0]["destination_id"], flaky.as_str());
    assert_eq!(opened[0]["destination_name"], "orders-api");
    assert!(
        opened[0]["reason"].as_str().is_some_and(|r| r.contains("consecutive failures")),
        "{}",
        opened[0]
    );
    assert!(opened[0]["last_error"].as_str().is_some_and(|e| e.contains("503")), "{}", opened[0]);
    assert!(opened[0]["opened_at"].is_string() && opened[0]["next_probe_at"].is_string());

    // A probe or two fail (the same opening), then the destination recovers.
    let probed = orders.received().len();
    orders.wait_for(DEADLINE, |r| r.len() > probed).await;
    orders.set(Behaviour::Status(200));
    alerts.wait_for(DEADLINE, |r| r.iter().any(|r| r.header("x-event-type") == CLOSED)).await;
    let closed = bodies_of(&alerts, CLOSED);
    assert_eq!(closed.len(), 1, "{closed:?}");
    assert_eq!(closed[0]["destination_id"], flaky.as_str());
    assert_eq!(closed[0]["opened_at"], opened[0]["opened_at"]);
    assert!(closed[0]["open_for_ms"].as_u64().is_some_and(|ms| ms >= 1_000), "{}", closed[0]);

    // The failing alert destination opened its own circuit on operational events alone.
    wait_until("the broken alert destination's circuit opening", || async {
        circuit_state(&app, &broken).await != "closed"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for event_type in [OPENED, CLOSED] {
        let about = stored(&app, event_type).await;
        assert_eq!(about.len(), 1, "{event_type}: {about:?}");
        assert_eq!(about[0]["destination_id"], flaky.as_str(), "{event_type}");
    }
    assert_eq!(bodies_of(&alerts, OPENED).len(), 1);
    let event = app.get("/v1/events?event_type=switchyard.destination.circuit_opened").await;
    assert_eq!(event.data()[0]["source"], "switchyard");
}

#[tokio::test]
async fn dead_deliveries_are_announced_first_at_once_then_summarised_and_never_about_alerts() {
    let window_ms = 1_500;
    let app = spawn_app_with(|config| config.operational.dead_letter_window_ms = window_ms).await;
    let alerts = Sink::start(Behaviour::Status(200)).await;
    route(&app, "alerts", &alerts.url, &[DEAD], json!({})).await;
    // Refuses every alert for good: these dead deliveries must raise nothing.
    let refusing = Sink::start(Behaviour::Status(400)).await;
    let refuser = route(&app, "refuses-alerts", &refusing.url, &[DEAD], json!({})).await;
    let orders = Sink::start(Behaviour::Status(400)).await;
    let gone = route(&app, "orders-api", &orders.url, &["order.created"], json!({})).await;
    // A catch-all (say, a partner's endpoint) is sent events, never the hub's alerts.
    let everything = Sink::start(Behaviour::Status(200)).await;
    route(&app, "partner", &everything.url, &["#"], json!({})).await;

    app.post("/v1/events/batch", publish_orders("first", 1)).await.assert_status(200);
    alerts.wait_for(DEADLINE, |r| r.iter().any(|r| r.header("x-event-type") == DEAD)).await;
    let first = bodies_of(&alerts, DEAD);
    assert_eq!(first.len(), 1);
    let first = &first[0];
    assert_eq!((first["count"].as_u64(), first["destination_id"].as_str()), (Some(1), Some(gone.as_str())));
    assert_eq!(first["event_id"], "first-0");
    assert_eq!(first["event_type"], "order.created");
    assert_eq!(first["attempt_count"], 1);
    assert!(first["last_error"].as_str().is_some_and(|e| e.contains("400")), "{first}");
    assert!(first["delivery_id"].as_str().is_some_and(|id| id.starts_with("dlv_")));
    assert!(first["subscription_id"].as_str().is_some_and(|id| id.starts_with("sub_")));

    let burst = 40;
    app.post("/v1/events/batch", publish_orders("burst", burst)).await.assert_status(200);
    let total = |bodies: &[Value]| bodies.iter().filter_map(|b| b["count"].as_u64()).sum::<u64>();
    wait_until("every dead delivery counted", || async { total(&bodies_of(&alerts, DEAD)) > burst as u64 })
        .await;
    let reports = bodies_of(&alerts, DEAD);
    assert_eq!(total(&reports), 1 + burst as u64, "{reports:?}");
    assert!(reports.len() <= 4, "a burst is summarised, not announced one by one: {} alerts", reports.len());
    let summary = reports.iter().max_by_key(|b| b["count"].as_u64()).expect("a summary");
    assert!(summary["count"].as_u64() > Some(1), "{summary}");
    assert_eq!(summary["delivery_ids"].as_array().map(Vec::len), Some(10), "{summary}");

    // The refusing destination's deliveries of those alerts are dead too, and said nothing.
    let alerts_sent = reports.len() as u64;
    wait_until("the alerts' own deliveries dying", || async {
        app.count(&format!("/v1/dead-letters?destination_id={refuser}")).await == alerts_sent
    })
    .await;
    tokio::time::sleep(Duration::from_millis(window_ms + 1_000)).await;
    let announced = stored(&app, DEAD).await;
    assert!(announced.iter().all(|b| b["destination_id"] == gone.as_str()), "{announced:?}");
    assert_eq!(total(&announced), 1 + burst as u64);
    let partner = everything.received();
    assert_eq!(partner.len(), 1 + burst);
    assert!(partner.iter().all(|r| r.header("x-event-type") == "order.created"));
}

#[tokio::test]
async fn a_pull_source_that_starts_failing_is_announced_once() {
    let app = spawn_app_with(|_| {}).await;
    let alerts = Sink::start(Behaviour::Status(200)).await;
    route(&app, "alerts", &alerts.url, &["switchyard.source.*"], json!({})).await;
    let dir = tempfile::tempdir().expect("a directory");
    let database = AppDatabase::create(dir.path()).await;
    let created = app.post("/v1/sources", outbox_source(&database.url(), json!({}))).await;
    created.assert_status(201);
    let source = created.data()["id"].as_str().expect("an id").to_owned();
    database.execute("ALTER TABLE outbox RENAME TO outbox_away").await;

    alerts.wait_for(DEADLINE, |r| r.iter().any(|r| r.header("x-event-type") == FAILING)).await;
    // It keeps failing: still one announcement for the run of failures.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let failing = bodies_of(&alerts, FAILING);
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(failing[0]["source_id"], source.as_str());
    assert_eq!(
        (failing[0]["source_name"].as_str(), failing[0]["kind"].as_str()),
        (Some("orders"), Some("outbox"))
    );
    assert!(failing[0]["consecutive_failures"].as_u64() >= Some(3), "{}", failing[0]);
    assert!(failing[0]["error"].as_str().is_some_and(|e| !e.is_empty()));
}

#[tokio::test]
async fn a_webhook_source_that_starts_failing_verification_is_announced_once() {
    let app = spawn_app_with(|_| {}).await;
    let alerts = Sink::start(Behaviour::Status(200)).await;
    route(&app, "alerts", &alerts.url, &[FAILING], json!({})).await;
    let config = json!({
        "verification": {"type": "api_key", "header": "X-Api-Key", "value": "k_live_0123456789"},
        "event_type": {"value": "shop.order"}
    });
    let created = app.post("/v1/sources", json!({"name": "shop", "kind": "webhook", "config": config})).await;
    created.assert_status(201);
    let source = created.data()["id"].as_str().expect("an id").to_owned();
    let forged = || {
        app.client
            .post(app.url(&format!("/v1/sources/{source}/webhook")))
            .header("x-api-key", "k_live_rotated")
            .body(r#"{"n": 1}"#)
    };
    for _ in 0..8 {
        app.send(forged()).await.assert_status(401);
    }

    alerts.wait_for(DEADLINE, |r| r.iter().any(|r| r.header("x-event-type") == FAILING)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let failing = bodies_of(&alerts, FAILING);
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(failing[0]["source_id"], source.as_str());
    assert_eq!(
        (failing[0]["kind"].as_str(), failing[0]["consecutive_failures"].as_u64()),
        (Some("webhook"), Some(5))
    );
}
