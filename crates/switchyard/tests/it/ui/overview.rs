//! The overview names a destination whose circuit is open among its blockers.

use std::time::{Duration, Instant};

use serde_json::json;

use super::browser::{Browser, WAIT};
use super::publish;
use crate::helpers::spawn_app;
use crate::sink::{Behaviour, Sink};

#[tokio::test]
async fn an_open_circuit_is_a_blocker_on_the_overview() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(503)).await;
    let answer = app
        .post(
            "/v1/destinations",
            json!({
                "name": "billing", "kind": "http", "config": {"url": sink.url},
                "retry": {"max_attempts": 5, "initial_delay_ms": 50, "multiplier": 1.0, "jitter": 0.0},
                // A cool-down longer than the test, so the circuit stays open while it looks.
                "circuit_breaker": {"consecutive_failures": 2, "cooldown_ms": 60_000, "max_cooldown_ms": 60_000},
            }),
        )
        .await;
    answer.assert_status(201);
    let billing = answer.data()["id"].as_str().expect("an id").to_owned();
    app.create_subscription(&billing, &["invoice.*"]).await;
    publish(&app, "evt_blocked", "invoice.paid").await;
    let started = Instant::now();
    loop {
        let health = app.get(&format!("/v1/destinations/{billing}/health")).await;
        if health.data()["circuit"]["state"] == "open" {
            break;
        }
        assert!(started.elapsed() < WAIT, "the circuit never opened: {}", health.body);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let Some(browser) = Browser::start("overview", &app.address).await else { return };
    browser.sign_in(&app.admin_token).await;

    browser.goto("/ui").await;
    browser.wait_for("section#blockers li.blocker").await;
    let mut blockers = Vec::new();
    for blocker in browser.find_all("section#blockers li.blocker").await {
        blockers.push(blocker.text().await.expect("a blocker's text"));
    }
    assert!(blockers.iter().any(|b| b.contains("billing")), "the open circuit names billing: {blockers:?}");
    browser.screenshot("blockers").await;
    browser.assert_no_console_errors().await;
    browser.close().await;
}
