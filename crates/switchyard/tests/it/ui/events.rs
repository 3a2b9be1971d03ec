//! The events pages: the live tail shows an event published after the page opened, without a
//! reload; the event's page shows its payload, its delivery and the attempt.

use super::browser::Browser;
use super::{destination_to, publish};
use crate::delivery::delivery_with_status;
use crate::helpers::spawn_app;
use crate::sink::{Behaviour, Sink};

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
    // Published at once: the page's stream resumes from where the page was read, so even an
    // event committed before the stream connects reaches the tail.
    let live = "evt_live".to_owned();
    publish(&app, &live, "order.shipped").await;
    browser.wait_for(&format!("table#events tr.event[data-id={live}]")).await;
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
