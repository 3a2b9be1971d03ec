//! Correlation across the hub: the correlation id, causation id and W3C trace context given at
//! ingest reach the destination; `GET /v1/events/{id}/trace` shows the causation tree.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::sink::{Behaviour, Sink};

const DEADLINE: Duration = Duration::from_secs(20);
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn publish_with_headers(
    app: &TestApp,
    event: Value,
    headers: &[(&str, &str)],
) -> crate::helpers::Answer {
    let mut request = app.request(Method::POST, "/v1/events").json(&event);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    app.send(request).await
}

#[tokio::test]
async fn a_delivery_carries_the_correlation_id_and_trace_given_at_ingest() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(204)).await;
    let destination = app.create_destination(&sink.url).await;
    app.create_subscription(&destination, &["order.*"]).await;

    let answer = publish_with_headers(
        &app,
        json!({"event_id": "o-1", "event_type": "order.created", "payload": {},
               "metadata": {"causation_id": "cart-9"}}),
        &[("x-correlation-id", "checkout-77"), ("traceparent", TRACEPARENT)],
    )
    .await;
    answer.assert_status(201);
    assert_eq!(answer.data()["metadata"]["correlation_id"], "checkout-77");
    assert_eq!(answer.data()["metadata"]["traceparent"], TRACEPARENT);

    let received = sink.wait_for(DEADLINE, |r| !r.is_empty()).await;
    let request = &received[0];
    assert_eq!(request.header("x-correlation-id"), "checkout-77");
    assert_eq!(request.header("x-causation-id"), "cart-9");
    let traceparent = request.header("traceparent");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!((parts[0], parts[1], parts[3]), ("00", TRACE_ID, "01"), "the same trace: {traceparent}");
    assert_ne!(parts[2], "00f067aa0ba902b7", "the delivery is a child span with its own id");
    assert_eq!(parts[2].len(), 16);

    // Without a header the event's own id is its correlation id, and no trace is invented.
    app.publish(json!({"event_id": "o-2", "event_type": "order.created", "payload": {}}))
        .await
        .assert_status(201);
    let received = sink.wait_for(DEADLINE, |r| r.len() >= 2).await;
    let second = received.iter().find(|r| r.header("x-event-id") == "o-2").expect("o-2 arrived");
    assert_eq!(second.header("x-correlation-id"), "o-2");
    assert_eq!(second.header("traceparent"), "");
}

#[tokio::test]
async fn a_malformed_traceparent_is_ignored_and_the_event_kept() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(204)).await;
    let destination = app.create_destination(&sink.url).await;
    app.create_subscription(&destination, &["order.*"]).await;
    let malformed = ["00-xyz", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"];
    for (n, bad) in malformed.iter().enumerate() {
        let answer = publish_with_headers(
            &app,
            json!({"event_id": format!("bad-trace-{n}"), "event_type": "order.created", "payload": {}}),
            &[("traceparent", bad)],
        )
        .await;
        answer.assert_status(201);
        assert_eq!(answer.data()["metadata"]["traceparent"], Value::Null, "{bad}");
    }
    let received = sink.wait_for(DEADLINE, |r| r.len() >= malformed.len()).await;
    for request in received {
        assert_eq!(request.header("traceparent"), "", "a malformed parent is not passed on");
    }
}

async fn publish_linked(app: &TestApp, id: &str, correlation: &str, cause: Option<&str>) {
    let event = json!({"event_id": id, "event_type": "flow.step", "payload": {},
                       "metadata": {"correlation_id": correlation, "causation_id": cause}});
    app.publish(event).await.assert_status(201);
}

/// `(event_id, [children's ids])` of each node.
fn shape(nodes: &Value) -> Vec<(String, Vec<String>)> {
    nodes
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let children = n["children"].as_array().expect("children");
            (
                n["event_id"].as_str().expect("an id").to_owned(),
                children.iter().map(|c| c["event_id"].as_str().expect("an id").to_owned()).collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_trace_is_the_causation_tree_of_the_correlation_id() {
    let app = spawn_app().await;
    publish_linked(&app, "cart-checked-out", "flow-1", None).await;
    publish_linked(&app, "order-created", "flow-1", Some("cart-checked-out")).await;
    publish_linked(&app, "stock-reserved", "flow-1", Some("cart-checked-out")).await;
    publish_linked(&app, "invoice-issued", "flow-1", Some("order-created")).await;
    publish_linked(&app, "unrelated", "flow-2", Some("cart-checked-out")).await;

    // Asked from a leaf, the whole flow comes back.
    let answer = app.get("/v1/events/invoice-issued/trace").await;
    answer.assert_status(200);
    let trace = answer.data();
    assert_eq!(trace["correlation_id"], "flow-1");
    assert_eq!(trace["event_id"], "invoice-issued");
    assert_eq!(trace["event_count"], 4);
    assert_eq!(trace["truncated"], false);
    let root = "cart-checked-out".to_owned();
    assert_eq!(
        shape(&trace["roots"]),
        [(root, vec!["order-created".to_owned(), "stock-reserved".to_owned()])]
    );
    let below = &trace["roots"][0]["children"];
    assert_eq!(shape(below)[0], ("order-created".to_owned(), vec!["invoice-issued".to_owned()]));
    assert_eq!(below[0]["causation_id"], "cart-checked-out");
    assert!(below[0]["received_at"].is_string() && below[0]["event_type"] == "flow.step");

    app.get("/v1/events/no-such-event/trace").await.assert_error(404, "not_found");
}

/// Request ids that break the rule of the body's ids (1 to 128 visible ASCII characters).
fn bad_link_ids() -> Vec<reqwest::header::HeaderValue> {
    use reqwest::header::HeaderValue;
    vec![
        HeaderValue::from_static("has space"),
        HeaderValue::from_static("tab\there"),
        HeaderValue::from_bytes("caf\u{e9}".as_bytes()).expect("a header value"),
        HeaderValue::from_str(&"r".repeat(129)).expect("a header value"),
    ]
}

#[tokio::test]
async fn a_request_id_breaking_the_id_rules_is_replaced_and_never_audited() {
    let app = spawn_app().await;
    let sent = bad_link_ids();
    for (n, value) in sent.iter().enumerate() {
        let answer = app
            .send(
                app.request(Method::POST, "/v1/event-types")
                    .header("x-request-id", value.clone())
                    .json(&json!({"name": format!("audited.t{n}")})),
            )
            .await;
        answer.assert_status(201);
        let echoed = answer.header("x-request-id").unwrap_or_default();
        assert_ne!(echoed.as_bytes(), value.as_bytes());
        assert_eq!(echoed.len(), 36, "a generated UUID: {echoed}");
    }
    let audit = app.get("/v1/audit-log?action=event_type.create").await;
    let entries = audit.data().as_array().expect("entries").clone();
    assert_eq!(entries.len(), sent.len());
    for entry in entries {
        let recorded = entry["request_id"].as_str().unwrap_or_default();
        assert_eq!(recorded.len(), 36, "{entry}");
        assert!(sent.iter().all(|value| value.as_bytes() != recorded.as_bytes()), "{entry}");
    }
}

#[tokio::test]
async fn a_correlation_id_breaking_the_id_rules_is_refused_on_publish_and_ignored_elsewhere() {
    let app = spawn_app().await;
    for value in bad_link_ids() {
        let publish = app
            .send(
                app.request(Method::POST, "/v1/events")
                    .header("x-correlation-id", value.clone())
                    .json(&json!({"event_type": "a", "payload": {}})),
            )
            .await;
        publish.assert_error(400, "validation_error");
        assert_eq!(publish.detail_fields(), ["X-Correlation-ID"], "{value:?}");
        let read = app.send(app.request(Method::GET, "/v1/events").header("x-correlation-id", value)).await;
        read.assert_status(200);
    }
    assert_eq!(app.count("/v1/events").await, 0);
}
