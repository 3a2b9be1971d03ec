//! Request limits beyond the body size: JSON depth, string length and header size, each a 400
//! `validation_error` that says what was too big; and the body limit, a 413.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::spawn_app;

/// `depth` arrays nested in one another.
fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!([inner]))
}

fn first_detail(answer: &crate::helpers::Answer) -> (String, String) {
    let detail = &answer.body["error"]["details"][0];
    (
        detail["field"].as_str().unwrap_or_default().to_owned(),
        detail["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn json_nested_deeper_than_32_levels_is_refused() {
    let app = spawn_app().await;
    // The event and its payload are two levels, so 30 arrays in the payload nest to 32 in all.
    app.publish(json!({"event_type": "deep.ok", "payload": {"a": nested(30)}})).await.assert_status(201);
    let answer = app.publish(json!({"event_type": "deep.no", "payload": {"a": nested(31)}})).await;
    answer.assert_error(400, "validation_error");
    let (field, message) = first_detail(&answer);
    assert_eq!(field, "body");
    assert!(message.contains("more than 32 levels"), "{message}");
    // Far deeper than serde_json's own limit: the same clear answer, not a parser error.
    let abyss = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let answer = app
        .send(app.request(Method::POST, "/v1/events").header("content-type", "application/json").body(abyss))
        .await;
    answer.assert_error(400, "validation_error");
    assert_eq!(app.count("/v1/events").await, 1);
}

#[tokio::test]
async fn strings_over_64_kib_are_refused_outside_event_payloads() {
    let app = spawn_app().await;
    let long = "n".repeat(70 * 1024);
    let answer = app
        .post(
            "/v1/destinations",
            json!({"name": long, "kind": "http", "config": {"url": "https://x.invalid"}}),
        )
        .await;
    answer.assert_error(400, "validation_error");
    let (field, message) = first_detail(&answer);
    assert_eq!(field, "name");
    assert!(message.contains("65536"), "{message}");
    let id = app.create_destination("https://hooks.switchyard.invalid/in").await;
    let patch =
        app.patch(&format!("/v1/destinations/{id}"), json!({"config": {"headers": {"x-blob": long}}})).await;
    patch.assert_error(400, "validation_error");
    assert_eq!(patch.detail_fields(), ["config.headers.x-blob"]);
    let metadata =
        app.publish(json!({"event_type": "a", "payload": {}, "metadata": {"correlation_id": long}})).await;
    metadata.assert_error(400, "validation_error");
    assert_eq!(metadata.detail_fields(), ["metadata.correlation_id"]);
    // An event's payload is bounded by limits.max_payload_bytes (256 KiB) instead.
    app.publish(json!({"event_type": "a", "payload": {"blob": long}})).await.assert_status(201);
    let batch = app
        .post("/v1/events/batch", json!({"events": [{"event_type": "b", "payload": {"lines": [long]}}]}))
        .await;
    batch.assert_status(200);
    assert_eq!(batch.data()["results"][0]["status"], "created");
}

#[tokio::test]
async fn headers_over_16_kib_are_refused_in_the_envelope() {
    let app = spawn_app().await;
    let filler = "h".repeat(20 * 1024);
    let answer = app.send(app.request(Method::GET, "/v1/events").header("x-filler", filler.as_str())).await;
    answer.assert_error(400, "validation_error");
    let (field, message) = first_detail(&answer);
    assert_eq!(field, "headers");
    assert!(message.contains("16384"), "{message}");
    let public = app.send(app.client.get(app.url("/health/live")).header("x-filler", filler.as_str())).await;
    public.assert_error(400, "validation_error");
    app.send(app.request(Method::GET, "/v1/events").header("x-filler", "h".repeat(8 * 1024)))
        .await
        .assert_status(200);
}

#[tokio::test]
async fn a_body_over_1_mib_is_payload_too_large() {
    let app = spawn_app().await;
    let huge = "x".repeat(1024 * 1024);
    let answer = app
        .post(
            "/v1/destinations",
            json!({"name": huge, "kind": "http", "config": {"url": "https://x.invalid"}}),
        )
        .await;
    answer.assert_error(413, "payload_too_large");
    assert!(answer.body["error"]["message"].as_str().unwrap_or_default().contains("limits.max_body_bytes"));
}
