//! `GET /metrics` after a known workload, read with a Prometheus text-format parser: every
//! counter matches what was done, exactly.

use std::time::{Duration, Instant};

use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

use crate::helpers::{TestApp, spawn_app};
use crate::sink::{Behaviour, Sink};

const DEADLINE: Duration = Duration::from_secs(20);

async fn scrape(app: &TestApp) -> Scrape {
    // Unauthenticated, like the health probes.
    let response = app.client.get(app.url("/metrics")).send().await.expect("a scrape");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("text").to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.expect("a body");
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("Prometheus text format")
}

/// The sample of `metric` whose labels include every one of `labels`.
fn find<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

/// A counter's or gauge's value; 0 when the series does not exist.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, metric, labels).map(|s| &s.value) {
        None => 0.0,
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        Some(other) => panic!("{metric} is not a single value: {other:?}"),
    }
}

/// How many observations a histogram holds (its `+Inf` bucket).
fn observations(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, metric, labels).map(|s| &s.value) {
        Some(Value::Histogram(buckets)) => {
            buckets.iter().find(|b| b.less_than.is_infinite()).map(|b| b.count).expect("a +Inf bucket")
        }
        other => panic!("{metric} {labels:?} is not a histogram: {other:?}"),
    }
}

#[tokio::test]
async fn counters_match_a_known_workload_exactly() {
    let app = spawn_app().await;
    let good_sink = Sink::start(Behaviour::Status(204)).await;
    let refusing_sink = Sink::start(Behaviour::Status(422)).await;
    let good = app.create_destination(&good_sink.url).await;
    let refusing = app.create_destination(&refusing_sink.url).await;
    app.create_subscription(&good, &["order.*"]).await;
    app.create_subscription(&refusing, &["order.created"]).await;

    // 3 order.created in one batch, 2 order.shipped one by one, one duplicate (not counted).
    let batch: Vec<_> = (0..3)
        .map(|n| json!({"event_id": format!("c-{n}"), "event_type": "order.created", "payload": {"n": n}}))
        .collect();
    app.post("/v1/events/batch", json!({ "events": batch })).await.assert_status(200);
    for n in 0..2 {
        let event = json!({"event_id": format!("s-{n}"), "event_type": "order.shipped", "payload": {"n": n}});
        app.publish(event).await.assert_status(201);
    }
    app.publish(json!({"event_id": "s-0", "event_type": "order.shipped", "payload": {"n": 0}}))
        .await
        .assert_status(200);
    // Reads by template, and a path no route matches.
    for id in ["c-0", "s-1"] {
        app.get(&format!("/v1/events/{id}")).await.assert_status(200);
    }
    app.get("/v1/no-such-thing/42").await.assert_status(404);
    // An extension method: its name must not become a label value.
    let foo = reqwest::Method::from_bytes(b"FOO1").expect("a method");
    let response = app.client.request(foo, app.url("/v1/no-such-thing")).send().await.expect("a reply");
    assert_eq!(response.status(), 404);

    // 5 deliveries succeed at the good sink; 3 are refused for good (422: permanent, dead).
    let started = Instant::now();
    let scrape = loop {
        let scrape = scrape(&app).await;
        let succeeded = value(
            &scrape,
            "switchyard_deliveries_total",
            &[("destination", &good), ("outcome", "succeeded")],
        );
        let dead =
            value(&scrape, "switchyard_deliveries_total", &[("destination", &refusing), ("outcome", "dead")]);
        if succeeded >= 5.0 && dead >= 3.0 {
            break scrape;
        }
        assert!(started.elapsed() < DEADLINE, "the deliveries never settled: {succeeded} / {dead}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let ingested = |t| value(&scrape, "switchyard_events_ingested_total", &[("event_type", t)]);
    assert_eq!(ingested("order.created"), 3.0);
    assert_eq!(ingested("order.shipped"), 2.0, "the duplicate is not a new event");

    let delivered =
        |d: &str, o| value(&scrape, "switchyard_deliveries_total", &[("destination", d), ("outcome", o)]);
    assert_eq!(delivered(&good, "succeeded"), 5.0);
    assert_eq!(delivered(&refusing, "dead"), 3.0);
    assert_eq!(delivered(&good, "dead"), 0.0);
    assert_eq!(delivered(&refusing, "succeeded"), 0.0);
    let attempts = |d: &str, o| {
        value(&scrape, "switchyard_delivery_attempts_total", &[("destination", d), ("outcome", o)])
    };
    assert_eq!(attempts(&good, "succeeded"), 5.0);
    assert_eq!(attempts(&refusing, "permanent"), 3.0);
    assert_eq!(good_sink.received().len(), 5);
    assert_eq!(refusing_sink.received().len(), 3);
    assert_eq!(
        observations(&scrape, "switchyard_delivery_attempt_duration_seconds", &[("destination", &good)]),
        5.0
    );
    assert_eq!(observations(&scrape, "switchyard_delivery_latency_seconds", &[("destination", &good)]), 5.0);

    // Gauges read from the store at scrape time.
    assert_eq!(value(&scrape, "switchyard_deliveries_pending", &[("destination", &good)]), 0.0);
    assert_eq!(value(&scrape, "switchyard_deliveries_dead", &[("destination", &refusing)]), 3.0);
    assert_eq!(value(&scrape, "switchyard_deliveries_dead", &[("destination", &good)]), 0.0);
    let circuit =
        |state| value(&scrape, "switchyard_circuit_state", &[("destination", &refusing), ("state", state)]);
    assert_eq!((circuit("closed"), circuit("open")), (1.0, 0.0), "refusals do not open a circuit");
    assert_eq!(value(&scrape, "switchyard_db_pool_max_connections", &[("pool", "writer")]), 1.0);
    assert!(
        find(&scrape, "switchyard_db_pool_connections", &[("pool", "reader"), ("state", "idle")]).is_some()
    );

    // HTTP requests by route template and status.
    let requests = |method, route, status| {
        value(
            &scrape,
            "switchyard_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        )
    };
    assert_eq!(requests("POST", "/v1/events/batch", "200"), 1.0);
    assert_eq!(requests("POST", "/v1/events", "201"), 2.0);
    assert_eq!(requests("POST", "/v1/events", "200"), 1.0);
    assert_eq!(requests("GET", "/v1/events/:event_id", "200"), 2.0);
    assert_eq!(requests("GET", "unmatched", "404"), 1.0);
    assert_eq!(requests("other", "unmatched", "404"), 1.0, "extension methods are counted as other");
    assert!(
        scrape.samples.iter().all(|s| s.labels.get("method") != Some("FOO1")),
        "an extension method never becomes a label value"
    );
    assert_eq!(
        observations(
            &scrape,
            "switchyard_http_request_duration_seconds",
            &[("method", "POST"), ("route", "/v1/events"), ("status", "201")]
        ),
        2.0
    );
    let raw_paths: Vec<_> = scrape
        .samples
        .iter()
        .filter_map(|s| s.labels.get("route"))
        .filter(|route| route.contains("c-0") || route.contains("42") || route.contains("dst_"))
        .collect();
    assert!(raw_paths.is_empty(), "routes are templates, never raw paths: {raw_paths:?}");
}

#[tokio::test]
async fn metrics_are_served_without_credentials_and_outside_the_rate_limit() {
    let app = crate::helpers::spawn_app_with(|config| {
        config.rate_limit.per_second = 1;
        config.rate_limit.burst = 1;
    })
    .await;
    for _ in 0..5 {
        let response = app.client.get(app.url("/metrics")).send().await.expect("a scrape");
        assert_eq!(response.status(), 200);
    }
}

/// `auth.metrics_require_key`: a scrape without a bearer token is refused in the envelope; any
/// role's key reads the metrics, still outside the API's rate limit.
#[tokio::test]
async fn metrics_can_be_put_behind_a_key() {
    let app = crate::helpers::spawn_app_with(|config| {
        config.auth.metrics_require_key = true;
        config.rate_limit.per_second = 1;
        config.rate_limit.burst = 1;
    })
    .await;
    let scrape_as = |token: Option<&str>| {
        let request = app.client.get(app.url("/metrics"));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    };
    for token in [None, Some("sy_not-a-key")] {
        let refused = crate::helpers::Answer::read(scrape_as(token).send().await.unwrap()).await;
        refused.assert_error(401, "unauthorized");
    }
    let viewer = app.issue_key("viewer").await;
    for _ in 0..3 {
        let response = scrape_as(Some(&viewer)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.text().await.unwrap().contains("switchyard_http_requests_total"));
    }
    let health = app.client.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the probes stay open");
}

#[tokio::test]
async fn a_deleted_destination_leaves_no_gauge_set() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(204)).await;
    let kept = app.create_destination(&sink.url).await;
    let deleted = app.create_destination(&sink.url).await;
    let closed = |scrape: &Scrape, dst: &str| {
        value(scrape, "switchyard_circuit_state", &[("destination", dst), ("state", "closed")])
    };
    let before = scrape(&app).await;
    assert_eq!((closed(&before, &kept), closed(&before, &deleted)), (1.0, 1.0));

    app.delete(&format!("/v1/destinations/{deleted}")).await.assert_status(204);
    let after = scrape(&app).await;
    assert_eq!(closed(&after, &kept), 1.0, "the remaining destination keeps its gauges");
    let left: Vec<_> = after
        .samples
        .iter()
        .filter(|s| s.labels.get("destination") == Some(deleted.as_str()))
        .filter(|s| matches!(s.value, Value::Gauge(v) | Value::Untyped(v) if v != 0.0))
        .map(|s| format!("{} {:?}", s.metric, s.labels))
        .collect();
    assert!(left.is_empty(), "the deleted destination's gauges are all 0: {left:?}");
    // And they stay so on later scrapes, after being forgotten.
    assert_eq!(closed(&scrape(&app).await, &deleted), 0.0);
}
