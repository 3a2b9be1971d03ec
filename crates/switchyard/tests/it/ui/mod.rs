//! The dashboard at `/ui` in a real headless Chromium: signing in, the live tail, an event's
//! deliveries, replaying dead letters, blockers, roles, CSRF, and every page at a desktop and a
//! phone width without a console error. Screenshots land in `target/ui-screenshots/`.

mod browser;
mod dead_letters;
mod events;
mod harness;
mod overview;
mod pages;
mod sign_in;

use serde_json::json;

use crate::helpers::TestApp;
use crate::sink::Sink;

/// A destination delivering to `sink` with a single attempt, so a failure is a dead letter at
/// once, routed `pattern`; answers its id.
async fn destination_to(app: &TestApp, sink: &Sink, name: &str, pattern: &str) -> String {
    let answer = app
        .post(
            "/v1/destinations",
            json!({
                "name": name, "kind": "http", "config": {"url": sink.url},
                "retry": {"max_attempts": 1, "initial_delay_ms": 50, "multiplier": 1.0, "jitter": 0.0},
            }),
        )
        .await;
    answer.assert_status(201);
    let id = answer.data()["id"].as_str().expect("an id").to_owned();
    app.create_subscription(&id, &[pattern]).await;
    id
}

async fn publish(app: &TestApp, event_id: &str, event_type: &str) {
    app.publish(json!({"event_id": event_id, "event_type": event_type, "payload": {"order": event_id}}))
        .await
        .assert_status(201);
}
