//! The events pages: the live tail shows an event published after the page opened, without a
//! reload; the event's page shows its payload, its delivery and the attempt.

use std::time::{Duration, Instant};

use super::browser::Browser;
use super::{destination_to, publish};
use crate::delivery::delivery_with_status;
use crate::helpers::{TestApp, spawn_app};
use crate::sink::{Behaviour, Sink};

/// Publishes `evt_live_1`, `evt_live_2`, … until one shows in the tail; answers its id. The
/// page's stream starts at its live end when it connects, a moment after the page loads, and
/// the page shows no sign of having connected: an event published in that moment is missed.
async fn publish_until_tailed(app: &TestApp, browser: &Browser) -> String {
    for attempt in 1..=20 {
        let id = format!("evt_live_{attempt}");
        publish(app, &id, "order.shipped").await;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(500) {
            if browser.exists(&format!("table#events tr.event[data-id={id}]")).await {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    browser.screenshot("tail-empty").await;
    panic!("no event published after the page opened reached its live tail");
}

#[tokio::test]
async fn a_fresh_event_appears_in_the_live_tail_and_its_page_shows_the_delivery() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(204)).await;
    destination_to(&app, &sink, "orders", "order.*").await;
    publish(&app, "evt_earlier", "order.created").await;
    let Some(browser) = Browser::start("events", &app.address).await else { return };
    browser.sign_in(&app.admin_token).await;

    browser.goto("/ui/events").await;
    browser.wait_for("table#events tr.event[data-id=evt_earlier]").await;
    // A marker on the document: a reload would lose it.
    browser.run("document.documentElement.dataset.unreloaded = 'yes'", vec![]).await;
    let live = publish_until_tailed(&app, &browser).await;
    let marker = browser.run("return document.documentElement.dataset.unreloaded", vec![]).await;
    assert_eq!(marker, "yes", "the row came without a reload");
    let order: Vec<String> = {
        let mut ids = Vec::new();
        for row in browser.find_all("table#events tr.event").await {
            ids.push(row.attr("data-id").await.expect("an attribute").unwrap_or_default());
        }
        ids
    };
    assert_eq!(order.first(), Some(&live), "newest first: {order:?}");
    assert!(order.iter().any(|id| id == "evt_earlier"), "{order:?}");
    browser.screenshot("live-tail").await;
    browser.assert_no_console_errors().await;

    delivery_with_status(&app, &live, "succeeded").await;
    browser.click(&format!("tr.event[data-id={live}] a[href$='/ui/events/{live}']")).await;
    let page = format!("/ui/events/{live}");
    browser.wait_until("the event's page opens", async || browser.path().await == page).await;
    let payload = browser.text("pre#payload").await;
    assert!(payload.contains(&live), "the payload is shown: {payload}");
    let status = browser.text("table#deliveries tr.delivery td.status").await;
    assert_eq!(status.trim(), "succeeded");
    let attempt = browser.text("table#deliveries li.attempt").await;
    assert!(attempt.contains("204"), "the attempt's status code: {attempt}");
    assert!(attempt.contains("ms") || attempt.contains(" s"), "the attempt's duration: {attempt}");
    browser.screenshot("event").await;
    browser.assert_no_console_errors().await;
    browser.close().await;
}
