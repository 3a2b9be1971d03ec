//! Publishing is the data plane: it writes no audit entry, and each event records who published
//! it instead (`published_by`: the principal, named as the audit log names actors, and the
//! request id). Every other write is still audited.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// Rows in the audit log, read from the database itself rather than through the API.
async fn audit_rows(app: &TestApp) -> i64 {
    let db = app.database().await;
    let count = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log").fetch_one(&db).await.expect("a count");
    db.close().await;
    count
}

/// A new API key with `role`: its token and the principal it publishes as.
async fn key_with_principal(app: &TestApp, role: &str) -> (String, String) {
    let created = app.post("/v1/api-keys", json!({"name": format!("{role} key"), "role": role})).await;
    created.assert_status(201);
    let token = created.data()["token"].as_str().expect("a token").to_owned();
    let id = created.data()["id"].as_str().expect("an id");
    (token, format!("key:{id}"))
}

fn published_by(principal: &str, request_id: &str) -> Value {
    json!({"principal": principal, "request_id": request_id})
}

#[tokio::test]
async fn publishing_writes_no_audit_entry_while_creating_a_destination_still_does() {
    let app = spawn_app().await;
    let (publisher, _) = key_with_principal(&app, "publisher").await;
    let (viewer, _) = key_with_principal(&app, "viewer").await;
    let before = audit_rows(&app).await;
    assert_eq!(before, 2, "issuing the keys was audited");

    let publish = |token: &str, body: Value| app.request_as(token, Method::POST, "/v1/events").json(&body);
    let event = json!({"event_id": "quiet-1", "event_type": "order.created", "payload": {"n": 1}});
    app.send(publish(&publisher, event.clone())).await.assert_status(201);
    app.send(publish(&publisher, event)).await.assert_status(200);
    let changed = json!({"event_id": "quiet-1", "event_type": "order.created", "payload": {"n": 2}});
    app.send(publish(&publisher, changed)).await.assert_error(409, "conflict");
    app.send(publish(&publisher, json!({"event_type": "NOT VALID", "payload": {}})))
        .await
        .assert_error(400, "validation_error");
    app.send(publish(&viewer, json!({"event_type": "a", "payload": {}})))
        .await
        .assert_error(403, "forbidden");
    let batch = json!({"events": [{"event_type": "a", "payload": {}}, {"event_type": "b", "payload": {}}]});
    app.send(app.request_as(&publisher, Method::POST, "/v1/events/batch").json(&batch))
        .await
        .assert_status(200);
    assert_eq!(app.count("/v1/events").await, 3);
    assert_eq!(audit_rows(&app).await, before, "publishing, whatever its outcome, is not audited");

    app.create_destination("https://example.com/hook").await;
    assert_eq!(audit_rows(&app).await, before + 1, "a control-plane write is");
    let log = app.get("/v1/audit-log?per_page=100").await;
    let actions: Vec<&str> =
        log.data().as_array().expect("entries").iter().filter_map(|e| e["action"].as_str()).collect();
    assert_eq!(actions, ["api_key.create", "api_key.create", "destination.create"], "{}", log.body);
}

#[tokio::test]
async fn an_event_shows_the_principal_and_request_that_published_it() {
    let app = spawn_app().await;
    let (publisher, principal) = key_with_principal(&app, "publisher").await;

    let single = app
        .send(
            app.request_as(&publisher, Method::POST, "/v1/events")
                .header("x-request-id", "publish-single-1")
                .json(&json!({"event_id": "one", "event_type": "order.created", "payload": {}})),
        )
        .await;
    single.assert_status(201);
    let expected = published_by(&principal, "publish-single-1");
    assert_eq!(single.data()["published_by"], expected, "the answer shows it too");
    let read = app.get("/v1/events/one").await;
    read.assert_status(200);
    assert_eq!(read.data()["published_by"], expected, "{}", read.body);

    let batch = app
        .send(
            app.request_as(&publisher, Method::POST, "/v1/events/batch")
                .header("x-request-id", "publish-batch-1")
                .json(&json!({"events": [
                    {"event_id": "two", "event_type": "order.created", "payload": {}},
                    {"event_id": "three", "event_type": "order.created", "payload": {}}
                ]})),
        )
        .await;
    batch.assert_status(200);
    for id in ["two", "three"] {
        let read = app.get(&format!("/v1/events/{id}")).await;
        assert_eq!(read.data()["published_by"], published_by(&principal, "publish-batch-1"), "{id}");
    }

    // The admin that reads them published none of them; another publisher's duplicate leaves
    // the event's publisher as it was.
    let again = app
        .send(
            app.request(Method::POST, "/v1/events")
                .header("x-request-id", "publish-again-1")
                .json(&json!({"event_id": "one", "event_type": "order.created", "payload": {}})),
        )
        .await;
    again.assert_status(200);
    assert_eq!(again.data()["published_by"], expected);

    let listed = app.get("/v1/events").await;
    let publishers: Vec<(&str, &Value)> = listed
        .data()
        .as_array()
        .expect("events")
        .iter()
        .map(|e| (e["event_id"].as_str().unwrap_or_default(), &e["published_by"]))
        .collect();
    let batch_publisher = published_by(&principal, "publish-batch-1");
    assert_eq!(publishers, [("one", &expected), ("two", &batch_publisher), ("three", &batch_publisher)]);
}

#[tokio::test]
async fn an_event_stored_without_a_principal_shows_no_publisher() {
    let app = spawn_app().await;
    let db = app.database().await;
    sqlx::query(
        "INSERT INTO events (event_id, event_type, timestamp, payload, correlation_id, source, \
         received_at, content_hash, request_id) \
         VALUES ('older', 'order.created', 0, '{}', 'older', 'api', 0, 'h', 'req-before')",
    )
    .execute(&db)
    .await
    .expect("an event as stored before publishers were recorded");
    db.close().await;

    let read = app.get("/v1/events/older").await;
    read.assert_status(200);
    assert_eq!(read.data()["published_by"], Value::Null, "{}", read.body);
    assert!(read.data().as_object().is_some_and(|e| e.contains_key("published_by")), "present, as null");
}

#[tokio::test]
async fn the_openapi_document_describes_the_publisher() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/openapi.json")).send().await.expect("GET /openapi.json is sent");
    let document: Value = response.json().await.expect("/openapi.json is JSON");
    let schemas = &document["components"]["schemas"];
    let field = &schemas["Event"]["properties"]["published_by"];
    assert!(field.to_string().contains("#/components/schemas/PublishedBy"), "{field}");
    assert!(field.to_string().contains("\"null\""), "nullable: {field}");
    let publisher = &schemas["PublishedBy"];
    assert_eq!(publisher["required"], json!(["principal"]), "{publisher}");
    for property in ["principal", "request_id"] {
        assert!(publisher["properties"].get(property).is_some(), "{property}: {publisher}");
    }
}
