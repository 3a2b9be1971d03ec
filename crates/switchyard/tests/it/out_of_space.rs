//! A full SQLite database: publishing answers `503 unavailable` with `Retry-After` and
//! readiness names the writer while it cannot write; once space is back both recover, with no
//! restart, and every acknowledged event is there.

use serde_json::{Value, json};

use crate::helpers::spawn_app;

/// An event of about 2 KB, as in the report that found the writer wedged.
fn large_event(id: &str) -> Value {
    json!({"event_id": id, "event_type": "order.created", "payload": {"padding": "x".repeat(2_048)}})
}

#[tokio::test]
async fn a_full_database_answers_503_until_space_is_back() {
    let app = spawn_app().await;
    let in_use = app.cap_database_pages(1).await;
    app.cap_database_pages(in_use + 30).await;

    let mut acknowledged = Vec::new();
    let refused = loop {
        let id = format!("e{}", acknowledged.len());
        let answer = app.publish(large_event(&id)).await;
        if answer.status.as_u16() != 201 {
            break answer;
        }
        acknowledged.push(id);
        assert!(acknowledged.len() < 1_000, "the cap was never reached");
    };
    assert!(!acknowledged.is_empty());
    refused.assert_error(503, "unavailable");
    assert_eq!(refused.header("retry-after"), Some("1"));
    let message = refused.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("out of space"), "{message}");

    let ready = app.get("/health/ready").await;
    ready.assert_error(503, "unavailable");
    let reason = ready.body["error"]["message"].as_str().unwrap_or_default();
    assert!(reason.contains("writer") && reason.contains("out of space"), "{reason}");
    app.publish(large_event("still-full")).await.assert_error(503, "unavailable");

    app.cap_database_pages(1_000_000).await;
    app.publish(large_event("after")).await.assert_status(201);
    app.get("/health/ready").await.assert_status(200);
    acknowledged.push("after".to_owned());
    for id in &acknowledged {
        app.get(&format!("/v1/events/{id}")).await.assert_status(200);
    }
    app.get("/v1/events/still-full").await.assert_error(404, "not_found");
}

#[tokio::test]
async fn readiness_sees_space_come_back_without_a_write() {
    let app = spawn_app().await;
    app.cap_database_pages(1).await;
    let mut published = 0;
    while app.publish(large_event(&format!("e{published}"))).await.status.as_u16() == 201 {
        published += 1;
        assert!(published < 1_000, "the cap was never reached");
    }
    app.get("/health/ready").await.assert_error(503, "unavailable");

    // A node out of rotation gets no writes: readiness finds out by itself.
    app.cap_database_pages(1_000_000).await;
    app.get("/health/ready").await.assert_status(200);
    app.publish(large_event("after")).await.assert_status(201);
}
