//! The audit log: every control-plane request that may write leaves one entry, whatever its
//! outcome; reads and publishing leave none (see `publisher`); only admins read it, by page or
//! by cursor.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

/// The actor the first admin key is recorded as.
async fn admin_actor(app: &TestApp) -> String {
    let keys = app.get("/v1/api-keys").await;
    format!("key:{}", keys.data()[0]["id"].as_str().expect("the admin key's id"))
}

async fn audit_log(app: &TestApp, query: &str) -> Value {
    let answer = app.get(&format!("/v1/audit-log{query}")).await;
    answer.assert_status(200);
    answer.body
}

fn entries(page: &Value) -> Vec<Value> {
    page["data"].as_array().expect("a list").clone()
}

#[tokio::test]
async fn writes_are_recorded_with_actor_action_resource_request_id_and_outcome() {
    let app = spawn_app().await;
    let actor = admin_actor(&app).await;

    let created = app
        .send(app.request(Method::POST, "/v1/destinations").header("x-request-id", "audit-create-1").json(
            &json!({"name": "audited", "kind": "http",
                              "config": {"url": "https://example.com/hook",
                                         "auth": {"type": "bearer", "token": "audit-secret-token"}}}),
        ))
        .await;
    created.assert_status(201);
    let id = created.data()["id"].as_str().expect("an id").to_owned();
    let path = format!("/v1/destinations/{id}");

    // Reads are not recorded.
    app.get(&path).await.assert_status(200);
    app.get("/v1/destinations").await.assert_status(200);

    let stale = app
        .send(
            app.request(Method::PUT, &path)
                .header("x-request-id", "audit-update-1")
                .header("if-match", "\"41\"")
                .json(&json!({"name": "renamed", "kind": "http", "config": {"url": "https://example.com/hook"}})),
        )
        .await;
    stale.assert_error(412, "precondition_failed");
    let deleted = app.send(app.request(Method::DELETE, &path).header("x-request-id", "audit-delete-1")).await;
    deleted.assert_status(204);

    let page = audit_log(&app, "").await;
    let log = entries(&page);
    let summary: Vec<(&str, &str, u64, bool)> = log
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default(),
                e["request_id"].as_str().unwrap_or_default(),
                e["outcome"]["status"].as_u64().unwrap_or_default(),
                e["outcome"]["success"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("destination.create", "audit-create-1", 201, true),
            ("destination.replace", "audit-update-1", 412, false),
            ("destination.delete", "audit-delete-1", 204, true),
        ],
        "{page}"
    );
    for entry in &log {
        assert_eq!(entry["actor"], actor.as_str(), "{entry}");
        assert_eq!(entry["role"], "admin");
        assert_eq!(entry["resource"], json!({"type": "destination", "id": id}), "{entry}");
        assert!(entry["id"].as_str().is_some_and(|id| id.starts_with("aud_")), "{entry}");
        assert!(entry["at"].as_str().is_some_and(|at| at.ends_with('Z')), "{entry}");
    }
    assert_eq!(log[0]["method"], "POST");
    assert_eq!(log[0]["route"], "/v1/destinations");
    assert_eq!(log[1]["method"], "PUT");
    assert_eq!(log[1]["route"], "/v1/destinations/{id}");
    assert!(!page.to_string().contains("audit-secret-token"), "no body is recorded");
    assert_eq!(page["pagination"]["total_items"], 3);
    assert_eq!(page["pagination"]["next_cursor"], Value::Null);
}

#[tokio::test]
async fn only_admins_read_the_log_and_refused_writes_are_recorded_too() {
    let app = spawn_app().await;
    let viewer = app.issue_key("viewer").await;
    let operator = app.issue_key("operator").await;

    let read = app.send(app.request_as(&viewer, Method::GET, "/v1/audit-log")).await;
    read.assert_error(403, "forbidden");
    let read = app.send(app.request_as(&operator, Method::GET, "/v1/audit-log")).await;
    read.assert_error(403, "forbidden");
    let write = app
        .send(
            app.request_as(&viewer, Method::POST, "/v1/event-types")
                .header("x-request-id", "audit-refused-1")
                .json(&json!({"name": "a.b"})),
        )
        .await;
    write.assert_error(403, "forbidden");
    // No credentials: no actor, nothing recorded.
    let anonymous = app.send(app.client.post(app.url("/v1/event-types")).json(&json!({"name": "a.b"}))).await;
    anonymous.assert_error(401, "unauthorized");

    let refused = audit_log(&app, "?action=event_type.create").await;
    let refused = entries(&refused);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["role"], "viewer");
    assert_eq!(refused[0]["request_id"], "audit-refused-1");
    assert_eq!(refused[0]["outcome"], json!({"status": 403, "success": false}));
    assert_eq!(refused[0]["resource"], json!({"type": "event_type", "id": null}));
    let viewer_actor = refused[0]["actor"].as_str().expect("an actor").to_owned();
    assert!(viewer_actor.starts_with("key:key_"), "{viewer_actor}");

    let by_actor = audit_log(&app, &format!("?actor={viewer_actor}")).await;
    assert_eq!(entries(&by_actor).len(), 1);
    let bad = app.get("/v1/audit-log?since=yesterday").await;
    bad.assert_error(400, "validation_error");
    assert_eq!(bad.detail_fields(), ["since"]);
}

#[tokio::test]
async fn the_log_pages_by_cursor_in_order() {
    let app = spawn_app().await;
    for i in 0..7 {
        let created = app.post("/v1/event-types", json!({"name": format!("paged.t{i}")})).await;
        created.assert_status(201);
    }
    app.create_destination("https://example.com/hook").await;

    let whole = entries(&audit_log(&app, "?per_page=100").await);
    assert_eq!(whole.len(), 8);
    assert_eq!(whole[0]["resource"], json!({"type": "event_type", "id": "paged.t0"}));
    assert_eq!(whole[7]["action"], "destination.create");

    let mut seen = Vec::new();
    let mut query = "?per_page=3".to_owned();
    loop {
        let page = audit_log(&app, &query).await;
        assert!(page["pagination"].get("total_items").is_none() || seen.is_empty());
        seen.extend(entries(&page).into_iter().map(|e| e["id"].clone()));
        match page["pagination"]["next_cursor"].as_str() {
            Some(cursor) => query = format!("?per_page=3&after={cursor}"),
            None => break,
        }
    }
    let expected: Vec<Value> = whole.iter().map(|e| e["id"].clone()).collect();
    assert_eq!(seen, expected, "every entry once, in order");

    let created = entries(&audit_log(&app, "?action=event_type.create&per_page=100").await);
    assert_eq!(created.len(), 7);
    let none = entries(&audit_log(&app, "?until=2000-01-01T00:00:00Z").await);
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_failing_audit_write_never_fails_the_request() {
    let app = spawn_app().await;
    let db = app.database().await;
    sqlx::query(
        "CREATE TRIGGER fail_audit BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'injected'); END",
    )
    .execute(&db)
    .await
    .expect("a trigger");
    let started = std::time::Instant::now();
    app.post("/v1/event-types", json!({"name": "unaudited.one"})).await.assert_status(201);
    assert!(started.elapsed() < std::time::Duration::from_secs(4), "the answer did not wait out a timeout");

    sqlx::query("DROP TRIGGER fail_audit").execute(&db).await.expect("dropped");
    app.post("/v1/event-types", json!({"name": "audited.two"})).await.assert_status(201);
    let log = entries(&audit_log(&app, "").await);
    let ids: Vec<&Value> = log.iter().map(|e| &e["resource"]["id"]).collect();
    assert_eq!(ids, [&json!("audited.two")], "only the write after the repair is in the log");
    db.close().await;
}
