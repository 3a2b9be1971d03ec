//! Request bodies are read strictly: an object is never stood in for by an array, no key may
//! appear twice, and refusals name fields and JSON types, repeating only a short excerpt of
//! what the client sent. Every refusal leaves state as it was.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{Answer, TestApp, spawn_app};

/// Words of serde's own messages that describe Rust rather than JSON.
const RUST_WORDS: [&str; 10] =
    ["struct", "enum", "sequence", "map", "Option", "u32", "u64", "Input", "elements", "invalid type"];

/// How many characters of a client value a message may repeat (and one more for the mark of a
/// cut).
const EXCERPT: usize = 64;

async fn post_raw(app: &TestApp, path: &str, body: &str) -> Answer {
    app.send(app.request(Method::POST, path).header("content-type", "application/json").body(body.to_owned()))
        .await
}

#[track_caller]
fn assert_json_words_only(answer: &Answer) {
    let error = answer.body["error"].to_string();
    for word in RUST_WORDS {
        assert!(!error.contains(word), "{word:?} in {error}");
    }
}

/// The first detail's field and message.
fn first_detail(answer: &Answer) -> (String, String) {
    let detail = &answer.body["error"]["details"][0];
    (
        detail["field"].as_str().unwrap_or_default().to_owned(),
        detail["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn an_array_body_is_refused_wherever_an_object_is_expected() {
    let app = spawn_app().await;
    let destination = app.create_destination("https://a.example.com/hook").await;
    let cases: [(Method, String, Value); 7] = [
        (Method::POST, "/v1/api-keys".into(), json!(["k", "viewer"])),
        (Method::POST, "/v1/destinations".into(), json!(["d", "http", {"url": "https://b.example.com"}])),
        (
            Method::POST,
            "/v1/subscriptions".into(),
            json!(["s", destination, ["#"], null, null, null, null, null]),
        ),
        (Method::POST, "/v1/events".into(), json!(["e-1", "order.created", null, {}, null, null])),
        (Method::POST, "/v1/events/batch".into(), json!([[{"event_type": "a", "payload": {}}]])),
        (Method::POST, "/v1/event-types".into(), json!(["a.b", "described", null, false])),
        (
            Method::PUT,
            format!("/v1/destinations/{destination}"),
            json!(["renamed", "http", {"url": "https://b.example.com"}]),
        ),
    ];
    for (method, path, body) in cases {
        let answer = app.send(app.request(method.clone(), &path).json(&body)).await;
        answer.assert_error(400, "validation_error");
        let (field, message) = first_detail(&answer);
        assert_eq!(field, "body", "{method} {path}: {}", answer.body);
        assert_eq!(message, "must be a JSON object; got an array", "{method} {path}");
        assert_json_words_only(&answer);
    }
    assert_eq!(app.count("/v1/api-keys").await, 1, "only the first admin key");
    assert_eq!(app.count("/v1/destinations").await, 1);
    assert_eq!(app.get(&format!("/v1/destinations/{destination}")).await.data()["name"], "sink");
    assert_eq!(app.count("/v1/subscriptions").await, 0);
    assert_eq!(app.count("/v1/events").await, 0);
    assert_eq!(app.count("/v1/event-types").await, 4, "only the hub's own operational types");
}

#[tokio::test]
async fn a_key_given_twice_is_refused_at_any_depth() {
    let app = spawn_app().await;
    let cases = [
        ("/v1/api-keys", r#"{"name": "k", "role": "viewer", "role": "admin"}"#, "role"),
        ("/v1/events", r#"{"event_type": "a", "event_type": "b", "payload": {}}"#, "event_type"),
        ("/v1/events", r#"{"event_type": "a", "payload": {"n": 1, "m": {"k": 1, "k": 2}}}"#, "payload.m.k"),
        (
            "/v1/events/batch",
            r#"{"events": [{"event_type": "a", "payload": {}}, {"event_type": "a", "payload": {"n": 1, "n": 1}}]}"#,
            "events[1].payload.n",
        ),
    ];
    for (path, body, duplicate) in cases {
        let answer = post_raw(&app, path, body).await;
        answer.assert_error(400, "validation_error");
        let (field, message) = first_detail(&answer);
        assert_eq!(field, duplicate, "{body}");
        assert_eq!(message, "appears more than once in the same object");
    }
    assert_eq!(app.count("/v1/api-keys").await, 1, "no key was issued");
    assert_eq!(app.count("/v1/events").await, 0);
}

#[tokio::test]
async fn a_mistyped_field_is_named_with_json_types_only() {
    let app = spawn_app().await;
    let destination = app.create_destination("https://a.example.com/hook").await;
    let cases = [
        (
            "/v1/subscriptions",
            json!({"name": ["x"], "destination_id": destination, "event_types": ["#"]}),
            "name",
            "must be a string; got an array",
        ),
        (
            "/v1/subscriptions",
            json!({"name": "s", "destination_id": destination, "event_types": ["#", 7]}),
            "event_types[1]",
            "must be a string; got a number",
        ),
        (
            "/v1/destinations",
            json!({"name": "d", "kind": "http", "config": {"url": "https://b.example.com"},
                   "retry": {"max_attempts": "many"}}),
            "retry.max_attempts",
            "must be an integer from 0 to 4294967295; got a string",
        ),
        (
            "/v1/destinations",
            json!({"name": "d", "kind": "http", "config": {"url": "https://b.example.com"},
                   "rate_limit": [10]}),
            "rate_limit",
            "must be a JSON object; got an array",
        ),
        (
            "/v1/events",
            json!({"event_type": "a", "payload": {}, "metadata": ["m"]}),
            "metadata",
            "must be a JSON object; got an array",
        ),
        ("/v1/api-keys", json!({"name": "k", "role": true}), "role", "must be a string; got a boolean"),
    ];
    for (path, body, expected_field, expected_message) in cases {
        let answer = app.post(path, body.clone()).await;
        answer.assert_error(400, "validation_error");
        assert_eq!(first_detail(&answer), (expected_field.to_owned(), expected_message.to_owned()), "{body}");
        assert_json_words_only(&answer);
    }
    let query = app.get("/v1/events?per_page=many").await;
    query.assert_error(400, "validation_error");
    assert_eq!(query.detail_fields(), ["per_page"]);
    assert_json_words_only(&query);
    app.get("/v1/events?page=1&page=2").await.assert_error(400, "validation_error");
    assert_eq!(app.count("/v1/subscriptions").await, 0);
    assert_eq!(app.count("/v1/destinations").await, 1);
    assert_eq!(app.count("/v1/api-keys").await, 1);
    assert_eq!(app.count("/v1/events").await, 0);
}

#[tokio::test]
async fn long_client_values_are_repeated_only_as_a_prefix() {
    let app = spawn_app().await;
    let destination = app.create_destination("https://a.example.com/hook").await;
    let long = "x".repeat(5000);
    let too_much = "x".repeat(EXCERPT + 1);

    let variant = app
        .post(
            "/v1/subscriptions",
            json!({"name": "s", "destination_id": destination, "event_types": ["#"], "ordering": long}),
        )
        .await;
    variant.assert_error(400, "validation_error");
    assert_eq!(variant.detail_fields(), ["ordering"]);
    let field = app.publish(json!({"event_type": "a", "payload": {}, long.clone(): 1})).await;
    field.assert_error(400, "validation_error");
    let media = app
        .send(
            app.request(Method::POST, "/v1/events")
                .header("content-type", format!("application/{long}"))
                .body("{}"),
        )
        .await;
    media.assert_error(415, "unsupported_media_type");
    let missing = app.get(&format!("/v1/destinations/dst_{}", &long[..1000])).await;
    missing.assert_error(404, "not_found");
    let route = app.get(&format!("/v1/{}", &long[..1000])).await;
    route.assert_error(404, "not_found");

    for answer in [&variant, &field, &media, &missing, &route] {
        let error = answer.body["error"].to_string();
        assert!(error.contains(&"x".repeat(20)), "the value is still recognisable: {error}");
        assert!(!error.contains(&too_much), "more than a prefix repeated: {error}");
    }
    assert_eq!(app.count("/v1/subscriptions").await, 0);
    assert_eq!(app.count("/v1/events").await, 0);
}

#[tokio::test]
async fn the_event_ids_dot_and_dot_dot_are_refused() {
    let app = spawn_app().await;
    for id in [".", ".."] {
        let answer = app.publish(json!({"event_id": id, "event_type": "a", "payload": {}})).await;
        answer.assert_error(400, "validation_error");
        assert_eq!(answer.detail_fields(), ["event_id"], "{id}");
    }
    let batch = app
        .post(
            "/v1/events/batch",
            json!({"events": [{"event_id": ".", "event_type": "a", "payload": {}},
                              {"event_id": "..", "event_type": "a", "payload": {}}]}),
        )
        .await;
    batch.assert_status(200);
    for result in batch.data()["results"].as_array().expect("results") {
        assert_eq!(result["status"], "error", "{result}");
        assert_eq!(result["error"]["details"][0]["field"], "event_id", "{result}");
    }
    app.publish(json!({"event_id": "...", "event_type": "a", "payload": {}})).await.assert_status(201);
    assert_eq!(app.count("/v1/events").await, 1);
}

#[tokio::test]
async fn a_mistyped_batch_item_is_named_with_json_types_only() {
    let app = spawn_app().await;
    let batch = app
        .post(
            "/v1/events/batch",
            json!({"events": [{"event_type": "a", "payload": {}, "metadata": ["m"]},
                              {"event_type": "a", "payload": {}}]}),
        )
        .await;
    batch.assert_status(200);
    let results = batch.data()["results"].as_array().expect("results").clone();
    assert_eq!(results[0]["status"], "error", "{results:?}");
    assert_eq!(results[0]["error"]["details"][0]["field"], "metadata", "{results:?}");
    assert_eq!(
        results[0]["error"]["details"][0]["message"], "must be a JSON object; got an array",
        "{results:?}"
    );
    assert_eq!(results[1]["status"], "created", "{results:?}");
}
