//! `Idempotency-Key` on POST.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

async fn post_with_key(
    app: &TestApp,
    token: &str,
    path: &str,
    key: &str,
    body: &Value,
) -> crate::helpers::Answer {
    app.send(app.request_as(token, Method::POST, path).header("idempotency-key", key).json(body)).await
}

#[tokio::test]
async fn a_retried_post_replays_the_first_answer_and_creates_once() {
    let app = spawn_app().await;
    let body = json!({"name": "d", "kind": "http", "config": {"url": "https://a.example.com"}});
    let first = post_with_key(&app, &app.admin_token, "/v1/destinations", "create-d-1", &body).await;
    first.assert_status(201);
    let second = post_with_key(&app, &app.admin_token, "/v1/destinations", "create-d-1", &body).await;
    second.assert_status(201);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));
    assert_eq!(second.data()["id"], first.data()["id"]);
    assert_eq!(second.header("location"), first.header("location"));
    assert_eq!(app.count("/v1/destinations").await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_conflict() {
    let app = spawn_app().await;
    let first = json!({"event_type": "a", "payload": {"n": 1}});
    post_with_key(&app, &app.admin_token, "/v1/events", "k-1", &first).await.assert_status(201);
    let other = json!({"event_type": "a", "payload": {"n": 2}});
    post_with_key(&app, &app.admin_token, "/v1/events", "k-1", &other).await.assert_error(409, "conflict");
    assert_eq!(app.count("/v1/events").await, 1);
}

#[tokio::test]
async fn keys_are_scoped_to_the_caller() {
    let app = spawn_app().await;
    let other = app.issue_key("publisher").await;
    let body = json!({"event_type": "a", "payload": {}});
    post_with_key(&app, &app.admin_token, "/v1/events", "shared", &body).await.assert_status(201);
    let theirs = post_with_key(&app, &other, "/v1/events", "shared", &body).await;
    theirs.assert_status(201);
    assert!(theirs.header("idempotent-replayed").is_none());
    assert_eq!(app.count("/v1/events").await, 2);
}

#[tokio::test]
async fn failures_are_replayed_too_but_server_errors_are_not_kept() {
    let app = spawn_app().await;
    let invalid = json!({"event_type": "NOPE", "payload": {}});
    post_with_key(&app, &app.admin_token, "/v1/events", "v-1", &invalid)
        .await
        .assert_error(400, "validation_error");
    let replay = post_with_key(&app, &app.admin_token, "/v1/events", "v-1", &invalid).await;
    replay.assert_error(400, "validation_error");
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));

    let db = app.database().await;
    sqlx::query("CREATE TRIGGER break_events BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'down'); END")
        .execute(&db)
        .await
        .expect("the trigger is created");
    let body = json!({"event_type": "a", "payload": {}});
    post_with_key(&app, &app.admin_token, "/v1/events", "s-1", &body)
        .await
        .assert_error(500, "internal_error");
    sqlx::query("DROP TRIGGER break_events").execute(&db).await.expect("the trigger is dropped");
    post_with_key(&app, &app.admin_token, "/v1/events", "s-1", &body).await.assert_status(201);
}

#[tokio::test]
async fn a_malformed_key_is_refused() {
    let app = spawn_app().await;
    let long = "k".repeat(256);
    let answer = post_with_key(
        &app,
        &app.admin_token,
        "/v1/events",
        &long,
        &json!({"event_type": "a", "payload": {}}),
    )
    .await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["Idempotency-Key"]);
    assert_eq!(app.count("/v1/events").await, 0);
}

#[tokio::test]
async fn the_same_json_sent_with_other_whitespace_and_key_order_is_a_replay() {
    let app = spawn_app().await;
    let send = |body: &'static str| {
        app.request(Method::POST, "/v1/events")
            .header("idempotency-key", "canonical-1")
            .header("content-type", "application/json")
            .body(body)
    };
    let first = app.send(send(r#"{"event_type":"a","payload":{"n":1,"tags":["x","y"]}}"#)).await;
    first.assert_status(201);
    let again = app
        .send(send("{\n  \"payload\": { \"tags\": [ \"x\", \"y\" ], \"n\": 1 },\n  \"event_type\": \"a\"\n}"))
        .await;
    again.assert_status(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.data()["event_id"], first.data()["event_id"]);
    let reordered_items = app.send(send(r#"{"event_type":"a","payload":{"n":1,"tags":["y","x"]}}"#)).await;
    reordered_items.assert_error(409, "conflict");
    assert_eq!(app.count("/v1/events").await, 1);
}
