//! Publishing and reading events.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_published_event_is_stored_with_one_delivery_per_matching_subscription() {
    let app = spawn_app().await;
    let destination = app.create_destination("https://example.com/hook").await;
    // Paused, so the engine leaves the deliveries as ingest wrote them.
    app.post(&format!("/v1/destinations/{destination}/pause"), json!({})).await.assert_status(200);
    let exact = app.create_subscription(&destination, &["order.created"]).await;
    let one_level = app.create_subscription(&destination, &["order.*"]).await;
    let any_depth = app.create_subscription(&destination, &["order.#"]).await;
    let everything = app.create_subscription(&destination, &["#"]).await;
    let _other = app.create_subscription(&destination, &["invoice.*"]).await;
    let disabled = app.create_subscription(&destination, &["#"]).await;
    app.patch(&format!("/v1/subscriptions/{disabled}"), json!({"enabled": false})).await.assert_status(200);

    let answer = app
        .publish(json!({"event_id": "ord-1", "event_type": "order.created", "payload": {"total": 12}}))
        .await;
    answer.assert_status(201);
    assert_eq!(answer.header("location"), Some("/v1/events/ord-1"));
    assert_eq!(answer.data()["source"], "api");
    assert_eq!(answer.data()["metadata"]["correlation_id"], "ord-1");

    let stored = app.get("/v1/events/ord-1").await;
    stored.assert_status(200);
    let deliveries = stored.data()["deliveries"].as_array().expect("deliveries").clone();
    let routed: HashSet<&str> = deliveries.iter().filter_map(|d| d["subscription_id"].as_str()).collect();
    let expected: HashSet<&str> =
        [&exact, &one_level, &any_depth, &everything].into_iter().map(String::as_str).collect();
    assert_eq!(routed, expected);
    assert!(deliveries.iter().all(|d| d["status"] == "pending" && d["attempt_count"] == 0));
}

#[tokio::test]
async fn publishing_the_same_event_again_is_a_duplicate_not_a_second_event() {
    let app = spawn_app().await;
    let destination = app.create_destination("https://example.com/hook").await;
    app.create_subscription(&destination, &["#"]).await;
    let event = json!({"event_id": "e-7", "event_type": "a.b", "payload": {"k": "v"}});
    app.publish(event.clone()).await.assert_status(201);
    let again = app.publish(event).await;
    again.assert_status(200);
    assert_eq!(again.body["metadata"]["duplicate"], true);
    assert_eq!(again.data()["metadata"]["duplicate"], true);
    assert_eq!(again.data()["event_id"], "e-7");
    assert_eq!(app.count("/v1/events").await, 1);
    assert_eq!(app.get("/v1/events/e-7").await.data()["deliveries"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn the_correlation_id_comes_from_the_body_then_the_header_then_the_event_id() {
    let app = spawn_app().await;
    let from_header = app
        .send(
            app.request(reqwest::Method::POST, "/v1/events")
                .header("x-correlation-id", "flow-9")
                .json(&json!({"event_type": "a", "payload": {}})),
        )
        .await;
    assert_eq!(from_header.data()["metadata"]["correlation_id"], "flow-9");
    let from_body = app
        .publish(json!({"event_type": "a", "payload": {}, "metadata": {"correlation_id": "c-1", "causation_id": "e-0"}}))
        .await;
    assert_eq!(from_body.data()["metadata"], json!({"correlation_id": "c-1", "causation_id": "e-0"}));
    let filtered = app.get("/v1/events?correlation_id=flow-9").await;
    assert_eq!(filtered.body["pagination"]["total_items"], 1);
}

#[tokio::test]
async fn a_batch_stores_the_valid_events_and_reports_each() {
    let app = spawn_app().await;
    app.publish(json!({"event_id": "taken", "event_type": "a", "payload": {"v": 1}}))
        .await
        .assert_status(201);
    let answer = app
        .post(
            "/v1/events/batch",
            json!({"events": [
                {"event_id": "b-1", "event_type": "a", "payload": {}},
                {"event_id": "b-2", "event_type": "NOT VALID", "payload": {}},
                {"event_id": "taken", "event_type": "a", "payload": {"v": 1}},
                {"event_id": "taken", "event_type": "a", "payload": {"v": 2}},
                "not an object",
                {"event_id": "b-1", "event_type": "a", "payload": {}}
            ]}),
        )
        .await;
    answer.assert_status(200);
    let statuses: Vec<&str> = answer.data()["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(statuses, ["created", "error", "duplicate", "error", "error", "duplicate"]);
    let results = &answer.data()["results"];
    assert_eq!(results[1]["error"]["code"], "validation_error");
    assert_eq!(results[1]["error"]["details"][0]["field"], "event_type");
    assert_eq!(results[3]["error"]["code"], "conflict");
    assert_eq!(app.count("/v1/events").await, 2);
}

#[tokio::test]
async fn batches_must_hold_one_to_a_thousand_events() {
    let app = spawn_app().await;
    app.post("/v1/events/batch", json!({"events": []})).await.assert_error(400, "validation_error");
    let too_many: Vec<Value> = (0..1001).map(|i| json!({"event_type": "a", "payload": {"i": i}})).collect();
    app.post("/v1/events/batch", json!({"events": too_many})).await.assert_error(400, "validation_error");
    assert_eq!(app.count("/v1/events").await, 0);
}

#[tokio::test]
async fn an_ingest_whose_transaction_fails_leaves_neither_event_nor_delivery() {
    let app = spawn_app().await;
    let destination = app.create_destination("https://example.com/hook").await;
    app.create_subscription(&destination, &["#"]).await;
    let db = app.database().await;
    sqlx::query("CREATE TRIGGER fail_deliveries BEFORE INSERT ON deliveries BEGIN SELECT RAISE(ABORT, 'injected'); END")
        .execute(&db)
        .await
        .expect("the trigger is created");

    let single = app.publish(json!({"event_id": "doomed", "event_type": "a", "payload": {}})).await;
    single.assert_error(500, "internal_error");
    let batch = app
        .post("/v1/events/batch", json!({"events": [{"event_id": "d-1", "event_type": "a", "payload": {}},
                                                      {"event_id": "d-2", "event_type": "a", "payload": {}}]}))
        .await;
    batch.assert_error(500, "internal_error");

    let events: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events").fetch_one(&db).await.expect("a count");
    let deliveries: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM deliveries").fetch_one(&db).await.expect("a count");
    assert_eq!((events, deliveries), (0, 0));
    app.get("/v1/events/doomed").await.assert_error(404, "not_found");

    sqlx::query("DROP TRIGGER fail_deliveries").execute(&db).await.expect("the trigger is dropped");
    app.publish(json!({"event_id": "doomed", "event_type": "a", "payload": {}})).await.assert_status(201);
    assert_eq!(app.get("/v1/events/doomed").await.data()["deliveries"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn ten_thousand_events_paged_by_cursor_come_back_once_each_in_order() {
    let app = spawn_app().await;
    let total = 10_000;
    for chunk in 0..total / 1000 {
        let events: Vec<Value> = (0..1000)
            .map(|i| json!({"event_id": format!("ev-{:05}", chunk * 1000 + i), "event_type": "bulk.item", "payload": {}}))
            .collect();
        app.post("/v1/events/batch", json!({"events": events})).await.assert_status(200);
    }
    let mut seen = Vec::with_capacity(total);
    let mut path = "/v1/events?per_page=100".to_owned();
    let mut first = true;
    loop {
        let page = app.get(&path).await;
        page.assert_status(200);
        let pagination = &page.body["pagination"];
        if !first {
            assert!(pagination.get("page").is_none() && pagination.get("total_items").is_none());
        }
        first = false;
        seen.extend(
            page.data()
                .as_array()
                .expect("items")
                .iter()
                .map(|e| e["event_id"].as_str().unwrap_or("").to_owned()),
        );
        match pagination["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/events?per_page=100&after={cursor}"),
            None => break,
        }
        assert!(seen.len() <= total, "paging does not end");
    }
    let expected: Vec<String> = (0..total).map(|i| format!("ev-{i:05}")).collect();
    assert_eq!(seen.len(), total);
    assert!(seen == expected, "events came back out of order or repeated");
}

#[tokio::test]
async fn numbered_pages_carry_totals_and_filters_apply() {
    let app = spawn_app().await;
    for i in 0..25 {
        let event_type = if i % 5 == 0 { "order.cancelled" } else { "order.created" };
        app.publish(json!({"event_type": event_type, "payload": {"i": i}})).await.assert_status(201);
    }
    let page = app.get("/v1/events?page=2&per_page=10").await;
    assert_eq!(page.body["pagination"]["page"], 2);
    assert_eq!(page.body["pagination"]["total_items"], 25);
    assert_eq!(page.body["pagination"]["total_pages"], 3);
    assert_eq!(page.data().as_array().map(Vec::len), Some(10));
    assert_eq!(page.data()[0]["payload"]["i"], 10);
    assert!(page.body["pagination"]["next_cursor"].is_string());
    let last = app.get("/v1/events?page=3&per_page=10").await;
    assert!(last.body["pagination"]["next_cursor"].is_null());
    let cancelled = app.get("/v1/events?event_type=order.cancelled").await;
    assert_eq!(cancelled.body["pagination"]["total_items"], 5);
    let future = app.get("/v1/events?since=2999-01-01T00:00:00Z").await;
    assert_eq!(future.body["pagination"]["total_items"], 0);
    let past = app.get("/v1/events?until=2000-01-01T00:00:00Z").await;
    assert_eq!(past.body["pagination"]["total_items"], 0);
}

#[tokio::test]
async fn payloads_are_validated_against_the_registered_schema() {
    let app = spawn_app().await;
    let schema = json!({"type": "object", "required": ["order_id"],
                        "properties": {"order_id": {"type": "string"}, "total": {"type": "number", "minimum": 0}}});
    app.post("/v1/event-types", json!({"name": "order.created", "schema": schema})).await.assert_status(201);
    let bad = app.publish(json!({"event_type": "order.created", "payload": {"total": -1}})).await;
    bad.assert_error(400, "validation_error");
    let mut fields = bad.detail_fields();
    fields.sort();
    assert_eq!(fields, ["/payload", "/payload/total"]);
    app.publish(json!({"event_type": "order.created", "payload": {"order_id": "o-1", "total": 3}}))
        .await
        .assert_status(201);
    assert_eq!(app.count("/v1/events").await, 1);
}

#[tokio::test]
async fn a_changed_or_deleted_schema_applies_to_the_next_event() {
    let app = spawn_app().await;
    app.post("/v1/event-types", json!({"name": "order.created", "schema": {"type": "object"}}))
        .await
        .assert_status(201);
    let unnamed = json!({"event_type": "order.created", "payload": {"total": 3}});
    app.publish(unnamed.clone()).await.assert_status(201);
    let stricter = json!({"schema": {"type": "object", "required": ["order_id"]}});
    app.patch("/v1/event-types/order.created", stricter).await.assert_status(200);
    app.publish(unnamed.clone()).await.assert_error(400, "validation_error");
    app.delete("/v1/event-types/order.created").await.assert_status(204);
    app.publish(unnamed).await.assert_status(201);
}

#[tokio::test]
async fn unregistered_types_are_refused_when_the_registry_is_required() {
    let app = crate::helpers::spawn_app_with(|config| config.ingest.require_registered_types = true).await;
    let answer = app.publish(json!({"event_type": "unknown.thing", "payload": {}})).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["event_type"]);
    app.post("/v1/event-types", json!({"name": "unknown.thing"})).await.assert_status(201);
    app.publish(json!({"event_type": "unknown.thing", "payload": {}})).await.assert_status(201);
}
