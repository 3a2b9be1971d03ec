//! Dead letters on their page: replayed by selecting one and pressing the button; a viewer
//! has no button, and a POST without the form's CSRF token is refused even to an admin.

use reqwest::Method;
use serde_json::json;

use super::browser::{Browser, WAIT};
use super::{destination_to, publish};
use crate::delivery::delivery_with_status;
use crate::helpers::{TestApp, spawn_app};
use crate::sink::{Behaviour, Sink};

/// A dead delivery of event `event_id` to a sink answering 422; answers its id.
async fn dead_letter(app: &TestApp, sink: &Sink, event_id: &str) -> String {
    destination_to(app, sink, "invoices", "invoice.*").await;
    publish(app, event_id, "invoice.paid").await;
    let dead = delivery_with_status(app, event_id, "dead").await;
    dead["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn a_dead_letter_is_replayed_from_its_page() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(422)).await;
    let delivery = dead_letter(&app, &sink, "evt_dead").await;
    sink.set(Behaviour::Status(204));
    let Some(browser) = Browser::start("dead-letters-replay", &app.address).await else { return };
    browser.sign_in(&app.admin_token).await;

    browser.goto("/ui/dead-letters").await;
    let row = format!("table#dead-letters tr.dead-letter[data-id='{delivery}']");
    browser.wait_for(&row).await;
    let csrf = browser.wait_for("form#replay input[type=hidden][name=csrf]").await;
    assert!(!csrf.attr("value").await.expect("an attribute").unwrap_or_default().is_empty(), "a CSRF token");
    browser.screenshot("dead").await;
    browser.assert_no_console_errors().await;

    browser.click(&format!("{row} input[type=checkbox][name=delivery_id]")).await;
    browser.click("#replay-selected").await;
    browser.wait_for("progress#replay-progress").await;
    browser.screenshot("replaying").await;
    delivery_with_status(&app, "evt_dead", "succeeded").await;
    sink.wait_for(WAIT, |r| r.iter().any(|r| r.succeeded())).await;
    assert_eq!(app.count("/v1/dead-letters").await, 0, "no longer dead");

    browser.goto("/ui/dead-letters").await;
    browser.wait_for("main").await;
    assert!(!browser.exists(&row).await, "the replayed letter left the list");
    browser.screenshot("replayed").await;
    browser.assert_no_console_errors().await;
    browser.close().await;
}

#[tokio::test]
async fn a_viewer_sees_no_replay_button_and_a_post_without_the_csrf_token_is_refused() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(422)).await;
    let delivery = dead_letter(&app, &sink, "evt_forged").await;
    sink.set(Behaviour::Status(204));
    let viewer = app.issue_key("viewer").await;
    let Some(browser) = Browser::start("dead-letters-roles", &app.address).await else { return };

    // An admin's session, so that only the missing token can be the reason for a refusal.
    browser.sign_in(&app.admin_token).await;
    browser.goto("/ui/dead-letters").await;
    browser.wait_for("#replay-selected").await;
    browser.assert_no_console_errors().await;
    let status = browser
        .run(
            "return fetch('/ui/dead-letters/replay', {method: 'POST', redirect: 'manual', \
             body: new URLSearchParams({delivery_id: arguments[0]})}).then(r => r.status)",
            vec![json!(delivery)],
        )
        .await;
    assert_eq!(status, 403, "a forged POST is refused");
    // The refusal is logged as a failed load; nothing else may be.
    let unexpected: Vec<_> = browser
        .console()
        .await
        .into_iter()
        .filter(|e| {
            e.is_error() && !(e.message.contains("/ui/dead-letters/replay") && e.message.contains("403"))
        })
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    let still = app.get(&format!("/v1/deliveries/{delivery}")).await;
    assert_eq!(still.data()["status"], "dead", "nothing was replayed: {}", still.body);

    // The same POST from outside the browser, with the session cookie but no token.
    let cookie = browser.client().get_named_cookie("switchyard_session").await.expect("a session cookie");
    let response = app
        .client
        .request(Method::POST, app.url("/ui/dead-letters/replay"))
        .header("cookie", format!("switchyard_session={}", cookie.value()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("delivery_id={delivery}"))
        .send()
        .await
        .expect("the request is sent");
    assert_eq!(response.status(), 403, "a cookie alone is not enough");
    let still = app.get(&format!("/v1/deliveries/{delivery}")).await;
    assert_eq!(still.data()["status"], "dead", "nothing was replayed: {}", still.body);

    browser.client().delete_all_cookies().await.expect("signed out");
    browser.sign_in(&viewer).await;
    browser.goto("/ui/dead-letters").await;
    browser.wait_for(&format!("tr.dead-letter[data-id='{delivery}']")).await;
    assert!(!browser.exists("#replay-selected").await, "a viewer has no replay button");
    assert!(!browser.exists("#replay-matching").await, "a viewer has no replay button");
    browser.screenshot("viewer").await;
    browser.assert_no_console_errors().await;

    browser.goto("/ui/destinations").await;
    browser.wait_for("table#destinations tr.destination").await;
    for button in [".pause", ".resume", ".test-send", ".rotate-secret"] {
        assert!(!browser.exists(button).await, "a viewer has no {button} button");
    }
    browser.screenshot("viewer-destinations").await;
    browser.assert_no_console_errors().await;
    browser.close().await;
}
