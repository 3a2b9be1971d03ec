//! The harness itself: that it reaches the application, signs in through a form, and does see
//! console errors, so that a dashboard test finding none means there were none.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use super::browser::{Browser, DESKTOP_WIDTH, PHONE_WIDTH};
use crate::helpers::spawn_app;

#[tokio::test]
async fn the_browser_opens_a_page_of_the_application_at_both_widths() {
    let app = spawn_app().await;
    let Some(browser) = Browser::start("harness-opens", &app.address).await else { return };
    browser.goto("/docs/").await;
    browser.wait_for("body").await;
    let shot = browser.screenshot("docs").await;
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 0), "{} written", shot.display());
    for width in [DESKTOP_WIDTH, PHONE_WIDTH] {
        browser.set_width(width).await;
        let inner = browser.run("return window.innerWidth", vec![]).await;
        assert_eq!(inner, width, "the page is laid out {width} px wide");
    }
    browser.close().await;
}

/// A sign-in form of the dashboard's shape that lets in the token `letmein`, on loopback.
async fn form_site() -> String {
    let site = Router::new()
        .route(
            "/ui/sign-in",
            get(|| async {
                Html(
                    "<!doctype html><title>Sign in</title><link rel=icon href=data:,><main><form method=post action=/ui/sign-in>\
                     <label for=token>Token</label><input name=token id=token>\
                     <button id=sign-in>Sign in</button></form></main>",
                )
            })
            .post(|body: String| async move {
                if body == "token=letmein" {
                    (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui")]).into_response()
                } else {
                    Response::builder().status(StatusCode::FORBIDDEN).body(body.into()).expect("a response")
                }
            }),
        )
        .route(
            "/ui",
            get(|| async {
                Html(
                    "<!doctype html><title>Home</title><link rel=icon href=data:,><h1>Signed in</h1>\
                     <main><ul><li>one</li><li>two</li></ul></main>",
                )
            }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, site).await;
    });
    format!("http://{address}")
}

#[tokio::test]
async fn the_browser_signs_in_through_a_form_and_reads_the_page() {
    let site = form_site().await;
    let Some(browser) = Browser::start("harness-form", &site).await else { return };
    browser.sign_in("letmein").await;
    assert_eq!(browser.path().await, "/ui");
    browser.visit("/ui", "home").await;
    assert_eq!(browser.text("h1").await, "Signed in");
    assert_eq!(browser.find_all("main li").await.len(), 2);
    assert!(!browser.exists("#absent").await);
    assert_eq!(browser.client().title().await.expect("a title"), "Home");
    browser.close().await;
}

#[tokio::test]
async fn console_errors_are_seen() {
    let Some(browser) = Browser::start("harness-console", "http://127.0.0.1:9").await else { return };
    browser.goto("data:text/html,<main>broken</main><script>throw new Error('deliberate')</script>").await;
    browser.wait_for("main").await;
    let errors: Vec<_> = browser.console().await.into_iter().filter(|e| e.is_error()).collect();
    assert!(
        errors.iter().any(|e| e.message.contains("deliberate")),
        "the thrown error is logged: {errors:?}"
    );
    browser.close().await;
}
