//! Headers that tell browsers how to treat answers: `nosniff` on all of them, `no-store` on
//! `/v1` (tokens and secrets), and no framing of `/docs`.

use reqwest::Method;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_answer_is_nosniff_and_v1_answers_are_never_stored() {
    let app = spawn_app().await;
    let issued = app.post("/v1/api-keys", json!({"name": "ci", "role": "viewer"})).await;
    issued.assert_status(201);
    let destination = app.create_destination("https://a.example.com/hook").await;
    let v1 = [
        issued,
        app.get("/v1/events").await,
        app.get(&format!("/v1/destinations/{destination}/signing-secret")).await,
        app.publish(json!({"event_type": "Not A Type", "payload": {}})).await,
        app.get("/v1/no-such-route").await,
        app.send(app.client.get(app.url("/v1/events"))).await,
        app.send(app.request(Method::PUT, "/v1/events")).await,
    ];
    for answer in &v1 {
        assert_eq!(
            answer.header("x-content-type-options"),
            Some("nosniff"),
            "{}: {}",
            answer.status,
            answer.body
        );
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{}: {}", answer.status, answer.body);
    }
    let statuses: Vec<u16> = v1.iter().map(|a| a.status.as_u16()).collect();
    assert_eq!(statuses, [201, 200, 200, 400, 404, 401, 405]);

    for path in ["/metrics", "/openapi.json", "/health/live", "/nowhere"] {
        let response = app.client.get(app.url(path)).send().await.expect("an answer");
        let headers = response.headers();
        assert_eq!(
            headers.get("x-content-type-options").map(|v| v.as_bytes()),
            Some(&b"nosniff"[..]),
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_docs_page_cannot_be_framed() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/docs/")).send().await.expect("an answer");
    assert!(response.status().is_success(), "{}", response.status());
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    assert_eq!(header("content-security-policy").as_deref(), Some("frame-ancestors 'none'"));
    assert_eq!(header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
}
