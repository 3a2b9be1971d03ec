//! API keys and roles: admin ⊃ operator ⊃ publisher ⊃ viewer.

use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn an_issued_token_is_shown_once_and_only_its_hash_is_stored() {
    let app = spawn_app().await;
    let created = app.post("/v1/api-keys", json!({"name": "ci", "role": "publisher"})).await;
    created.assert_status(201);
    let token = created.data()["token"].as_str().expect("a token").to_owned();
    assert!(token.starts_with("sy_"));
    assert_eq!(created.data()["role"], "publisher");
    let listed = app.get("/v1/api-keys").await;
    assert!(!listed.body.to_string().contains(&token), "a token was listed");
    assert_eq!(listed.body["pagination"]["total_items"], 2);
    let db = app.database().await;
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT token_hash FROM api_keys").fetch_all(&db).await.expect("rows");
    assert!(stored.iter().all(|h| h.len() == 64 && !h.contains(&token)));
}

#[tokio::test]
async fn each_role_reaches_exactly_its_routes() {
    let app = spawn_app().await;
    let destination = app.create_destination("https://a.example.com").await;
    let event = json!({"event_type": "a", "payload": {}});
    let cases: [(&str, [u16; 4]); 4] = [
        // (role, [read events, publish, create subscription, issue key])
        ("viewer", [200, 403, 403, 403]),
        ("publisher", [200, 201, 403, 403]),
        ("operator", [200, 201, 201, 403]),
        ("admin", [200, 201, 201, 201]),
    ];
    for (role, expected) in cases {
        let token = app.issue_key(role).await;
        let read = app.send(app.request_as(&token, Method::GET, "/v1/events")).await;
        let publish = app.send(app.request_as(&token, Method::POST, "/v1/events").json(&event)).await;
        let subscribe = app
            .send(
                app.request_as(&token, Method::POST, "/v1/subscriptions")
                    .json(&json!({"name": "s", "destination_id": destination, "event_types": ["#"]})),
            )
            .await;
        let issue = app
            .send(
                app.request_as(&token, Method::POST, "/v1/api-keys")
                    .json(&json!({"name": "x", "role": "viewer"})),
            )
            .await;
        let got = [read.status, publish.status, subscribe.status, issue.status].map(|s| s.as_u16());
        assert_eq!(got, expected, "role {role}");
        for answer in [&publish, &subscribe, &issue] {
            if answer.status.as_u16() == 403 {
                answer.assert_error(403, "forbidden");
            }
        }
    }
}

#[tokio::test]
async fn a_revoked_key_stops_working_and_revoking_twice_is_not_found() {
    let app = spawn_app().await;
    let created = app.post("/v1/api-keys", json!({"name": "temp", "role": "viewer"})).await;
    let id = created.data()["id"].as_str().expect("an id").to_owned();
    let token = created.data()["token"].as_str().expect("a token").to_owned();
    app.send(app.request_as(&token, Method::GET, "/v1/events")).await.assert_status(200);
    app.delete(&format!("/v1/api-keys/{id}")).await.assert_status(204);
    app.send(app.request_as(&token, Method::GET, "/v1/events")).await.assert_error(401, "unauthorized");
    app.delete(&format!("/v1/api-keys/{id}")).await.assert_error(404, "not_found");
}

#[tokio::test]
async fn invalid_key_requests_name_their_fields() {
    let app = spawn_app().await;
    let answer = app.post("/v1/api-keys", json!({"name": "", "role": "root"})).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["name", "role"]);
    assert_eq!(app.count("/v1/api-keys").await, 1);
}
