//! Every page at a desktop and a phone width: its frame (navigation, sign-out, heading, main
//! content), no console error, nothing wider than the screen; a screenshot of each.

use super::browser::{Browser, DESKTOP_WIDTH, PHONE_WIDTH};
use super::{destination_to, publish};
use crate::delivery::delivery_with_status;
use crate::helpers::spawn_app;
use crate::sink::{Behaviour, Sink};

#[tokio::test]
async fn every_page_reads_at_desktop_and_phone_width_without_console_errors() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(204)).await;
    let failing = Sink::start(Behaviour::Status(422)).await;
    destination_to(&app, &sink, "orders", "order.*").await;
    destination_to(&app, &failing, "invoices", "invoice.*").await;
    publish(&app, "evt_shown", "order.created").await;
    publish(&app, "evt_failed", "invoice.paid").await;
    delivery_with_status(&app, "evt_shown", "succeeded").await;
    delivery_with_status(&app, "evt_failed", "dead").await;
    let Some(browser) = Browser::start("pages", &app.address).await else { return };
    browser.sign_in(&app.admin_token).await;

    let pages = [
        ("/ui", "overview"),
        ("/ui/events", "events"),
        ("/ui/events/evt_shown", "event"),
        ("/ui/destinations", "destinations"),
        ("/ui/dead-letters", "dead-letters"),
        ("/ui/sources", "sources"),
        ("/ui/audit-log", "audit-log"),
    ];
    for width in [DESKTOP_WIDTH, PHONE_WIDTH] {
        browser.set_width(width).await;
        for (path, name) in pages {
            browser.visit(path, &format!("{name}-{width}")).await;
            assert_eq!(browser.path().await, path, "{path} opens for an admin");
            for part in ["nav a", "form#sign-out", "h1", "main"] {
                assert!(browser.exists(part).await, "{path} has {part}");
            }
            let overflow =
                browser.run("return document.documentElement.scrollWidth - window.innerWidth", vec![]).await;
            assert!(
                overflow.as_i64().is_some_and(|px| px <= 0),
                "{path} is {overflow} px wider than a {width} px window"
            );
        }
    }
    browser.close().await;
}
