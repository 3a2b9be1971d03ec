//! Destinations, subscriptions and event types: CRUD, write-only secrets, merge patch, ETags.

use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_destination_takes_the_spec_defaults_and_never_shows_its_secrets() {
    let app = spawn_app().await;
    let answer = app
        .post(
            "/v1/destinations",
            json!({"name": "billing", "kind": "http", "config": {
                "url": "https://billing.example.com/hooks",
                "auth": {"type": "bearer", "token": "tok-SECRET-1"}
            }}),
        )
        .await;
    answer.assert_status(201);
    let id = answer.data()["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("dst_"));
    assert_eq!(answer.header("location").map(str::to_owned), Some(format!("/v1/destinations/{id}")));
    assert_eq!(answer.header("etag"), Some("\"1\""));
    let data = answer.data();
    assert_eq!(data["timeout_ms"], 30_000);
    assert_eq!(data["connect_timeout_ms"], 5_000);
    assert_eq!(data["retry"]["max_attempts"], 12);
    assert_eq!(data["retry"]["initial_delay_ms"], 1_000);
    assert_eq!(data["retry"]["max_delay_ms"], 3_600_000);
    assert_eq!(data["circuit_breaker"]["consecutive_failures"], 5);
    assert!(data["rate_limit"].is_null());
    assert_eq!(data["config"]["method"], "POST");
    assert_eq!(data["config"]["signing_secret_set"], true);
    assert_eq!(data["config"]["auth"]["token_set"], true);
    let read = app.get(&format!("/v1/destinations/{id}")).await;
    let everything = format!("{}{}", answer.body, read.body);
    assert!(
        !everything.contains("tok-SECRET-1") && !everything.contains("whsec_"),
        "a secret leaked: {everything}"
    );
}

#[tokio::test]
async fn invalid_destinations_name_each_field_and_store_nothing() {
    let app = spawn_app().await;
    let answer = app
        .post(
            "/v1/destinations",
            json!({"name": "", "kind": "http", "config": {"url": "ftp://x", "method": "GET"},
                   "retry": {"max_attempts": 0}, "timeout_ms": 0}),
        )
        .await;
    answer.assert_error(400, "validation_error");
    assert_eq!(
        answer.detail_fields(),
        ["name", "config.url", "config.method", "timeout_ms", "connect_timeout_ms", "retry.max_attempts"]
    );
    app.post("/v1/destinations", json!({"name": "n", "kind": "smoke", "config": {}}))
        .await
        .assert_error(400, "validation_error");
    assert_eq!(app.count("/v1/destinations").await, 0);
}

#[tokio::test]
async fn put_replaces_but_keeps_secrets_it_leaves_out() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/v1/destinations",
            json!({"name": "d", "kind": "http", "config": {"url": "https://a.example.com",
                   "auth": {"type": "basic", "username": "u", "password": "pw"}}, "timeout_ms": 10_000}),
        )
        .await;
    let id = created.data()["id"].as_str().expect("an id").to_owned();
    let path = format!("/v1/destinations/{id}");
    let mut shown = created.data().clone();
    shown["config"]["url"] = json!("https://b.example.com");
    let replaced =
        app.put(&path, json!({"name": "d2", "kind": "http", "config": shown["config"].clone()})).await;
    replaced.assert_status(200);
    assert_eq!(replaced.header("etag"), Some("\"2\""));
    let data = replaced.data();
    assert_eq!(data["name"], "d2");
    assert_eq!(data["config"]["url"], "https://b.example.com");
    assert_eq!(data["config"]["auth"]["password_set"], true);
    assert_eq!(data["config"]["signing_secret_set"], true);
    assert_eq!(data["timeout_ms"], 30_000, "PUT replaces: omitted fields take their defaults");
    assert_eq!(data["version"], 2);
}

#[tokio::test]
async fn patch_merges_and_checks_the_result() {
    let app = spawn_app().await;
    let id = app.create_destination("https://a.example.com").await;
    let path = format!("/v1/destinations/{id}");
    let patched = app
        .patch(
            &path,
            json!({"name": "renamed", "retry": {"max_attempts": 3}, "rate_limit": {"per_second": 5}}),
        )
        .await;
    patched.assert_status(200);
    let data = patched.data();
    assert_eq!(data["name"], "renamed");
    assert_eq!(data["retry"]["max_attempts"], 3);
    assert_eq!(data["retry"]["multiplier"], 3.0, "untouched members stay");
    assert_eq!(data["rate_limit"]["per_second"], 5);
    assert_eq!(data["config"]["url"], "https://a.example.com");
    let removed = app.patch(&path, json!({"rate_limit": null})).await;
    assert!(removed.data()["rate_limit"].is_null());
    let invalid = app.patch(&path, json!({"config": {"url": "not a url"}})).await;
    invalid.assert_error(400, "validation_error");
    assert_eq!(invalid.detail_fields(), ["config.url"]);
    let stored = app.get(&path).await;
    assert_eq!(stored.data()["config"]["url"], "https://a.example.com");
    assert_eq!(stored.data()["version"], 3);
    let array = app.patch(&path, json!(["not", "an", "object"])).await;
    array.assert_error(400, "validation_error");
}

#[tokio::test]
async fn if_match_with_the_current_etag_passes() {
    let app = spawn_app().await;
    let id = app.create_destination("https://a.example.com").await;
    let path = format!("/v1/destinations/{id}");
    let etag = app.get(&path).await.header("etag").expect("an etag").to_owned();
    let answer = app
        .send(
            app.request(Method::PATCH, &path)
                .header("if-match", etag.as_str())
                .header("content-type", "application/merge-patch+json")
                .body(json!({"enabled": false}).to_string()),
        )
        .await;
    answer.assert_status(200);
    assert_eq!(answer.data()["enabled"], false);
    let stale = app.send(app.request(Method::DELETE, &path).header("if-match", etag.as_str())).await;
    stale.assert_error(412, "precondition_failed");
    app.get(&path).await.assert_status(200);
}

#[tokio::test]
async fn delete_is_204_then_404_and_refused_while_subscribed() {
    let app = spawn_app().await;
    let destination = app.create_destination("https://a.example.com").await;
    let subscription = app.create_subscription(&destination, &["#"]).await;
    let path = format!("/v1/destinations/{destination}");
    app.delete(&path).await.assert_error(409, "conflict");
    app.get(&path).await.assert_status(200);
    app.delete(&format!("/v1/subscriptions/{subscription}")).await.assert_status(204);
    app.delete(&format!("/v1/subscriptions/{subscription}")).await.assert_error(404, "not_found");
    app.delete(&path).await.assert_status(204);
    app.delete(&path).await.assert_error(404, "not_found");
    assert_eq!(app.count("/v1/destinations").await, 0);
}

#[tokio::test]
async fn subscriptions_check_patterns_destination_and_jq_fields() {
    let app = spawn_app().await;
    let destination = app.create_destination("https://a.example.com").await;
    let bad = app
        .post(
            "/v1/subscriptions",
            json!({"name": "s", "destination_id": destination, "event_types": ["ok.*", "Bad..", "#.x"]}),
        )
        .await;
    bad.assert_error(400, "validation_error");
    assert_eq!(bad.detail_fields(), ["event_types[1]", "event_types[2]"]);
    let missing = app
        .post(
            "/v1/subscriptions",
            json!({"name": "s", "destination_id": "dst_missing", "event_types": ["#"]}),
        )
        .await;
    missing.assert_error(400, "validation_error");
    assert_eq!(missing.detail_fields(), ["destination_id"]);
    let jq = app
        .post(
            "/v1/subscriptions",
            json!({"name": "s", "destination_id": destination, "event_types": ["#"], "filter": ".event |"}),
        )
        .await;
    jq.assert_error(400, "validation_error");
    assert_eq!(jq.detail_fields(), ["filter"]);
    assert_eq!(app.count("/v1/subscriptions").await, 0);

    let created = app
        .post(
            "/v1/subscriptions",
            json!({"name": "s", "destination_id": destination, "event_types": ["order.#"],
                                          "ordering": "key", "ordering_on_dead": "block"}),
        )
        .await;
    created.assert_status(201);
    assert_eq!(created.data()["ordering"], "key");
    assert_eq!(created.data()["enabled"], true);
    let listed = app.get(&format!("/v1/subscriptions?destination_id={destination}")).await;
    assert_eq!(listed.body["pagination"]["total_items"], 1);
    let none = app.get("/v1/subscriptions?destination_id=dst_other").await;
    assert_eq!(none.body["pagination"]["total_items"], 0);
}

#[tokio::test]
async fn event_types_are_registered_with_checked_schemas() {
    let app = spawn_app().await;
    let bad_schema =
        app.post("/v1/event-types", json!({"name": "a.b", "schema": {"type": "nonsense"}})).await;
    bad_schema.assert_error(400, "validation_error");
    assert!(bad_schema.detail_fields()[0].starts_with("schema"));
    let bad_name = app.post("/v1/event-types", json!({"name": "A B"})).await;
    bad_name.assert_error(400, "validation_error");
    assert_eq!(bad_name.detail_fields(), ["name"]);
    assert_eq!(app.count("/v1/event-types").await, 4, "only the hub's own operational types");

    let created = app.post("/v1/event-types", json!({"name": "a.b", "description": "first"})).await;
    created.assert_status(201);
    assert_eq!(created.header("location"), Some("/v1/event-types/a.b"));
    app.post("/v1/event-types", json!({"name": "a.b"})).await.assert_error(409, "conflict");

    let patched = app.patch("/v1/event-types/a.b", json!({"deprecated": true})).await;
    assert_eq!(patched.data()["deprecated"], true);
    assert_eq!(patched.data()["description"], "first");
    let renamed = app.put("/v1/event-types/a.b", json!({"name": "c.d"})).await;
    renamed.assert_error(400, "validation_error");
    let replaced = app.put("/v1/event-types/a.b", json!({"schema": {"type": "object"}})).await;
    replaced.assert_status(200);
    assert!(replaced.data()["description"].is_null());
    assert_eq!(replaced.data()["version"], 3);
    app.delete("/v1/event-types/a.b").await.assert_status(204);
    app.delete("/v1/event-types/a.b").await.assert_error(404, "not_found");
}
