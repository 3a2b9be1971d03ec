//! The dashboard at `/ui` over HTTP: sign-in and its cookie, the session guard, the security
//! headers, CSRF and role checks on the forms that write, and what the pages show.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::sink::{Behaviour, Sink};

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn browser() -> reqwest::Client {
    switchyard_adapters::install_crypto_provider();
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("a client")
}

/// An `application/x-www-form-urlencoded` body, as a browser sends a form.
fn encode(pairs: &[(&str, &str)]) -> String {
    let escape = |text: &str| {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs.iter().map(|(k, v)| format!("{}={}", escape(k), escape(v))).collect::<Vec<_>>().join("&")
}

fn session(token: &str) -> String {
    format!("switchyard_session={token}")
}

async fn get(app: &TestApp, token: &str, path: &str) -> (StatusCode, String) {
    let response =
        browser().get(app.url(path)).header(COOKIE, session(token)).send().await.expect("an answer");
    let status = response.status();
    (status, response.text().await.expect("a body"))
}

async fn post_form(app: &TestApp, token: &str, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
    browser()
        .post(app.url(path))
        .header(COOKIE, session(token))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode(form))
        .send()
        .await
        .expect("an answer")
}

/// The CSRF token of the first form of the page at `path`.
async fn csrf(app: &TestApp, token: &str, path: &str) -> String {
    let (_, html) = get(app, token, path).await;
    let at = html.find(r#"name="csrf" value=""#).expect("a CSRF field") + r#"name="csrf" value=""#.len();
    html[at..].split('"').next().expect("a value").to_owned()
}

fn location(response: &reqwest::Response) -> &str {
    response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

#[tokio::test]
async fn signing_in_sets_a_strict_session_cookie_and_goes_to_next() {
    let app = spawn_app().await;
    let client = browser();

    let wrong = client
        .post(app.url("/ui/sign-in"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode(&[("token", "sy_not_a_key"), ("next", "/ui/events")]))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    assert!(wrong.text().await.unwrap().contains(r#"id="sign-in""#), "the form again");

    let right = client
        .post(app.url("/ui/sign-in"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode(&[("token", app.admin_token.as_str()), ("next", "/ui/events")]))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&right), "/ui/events");
    let cookie = right.headers().get(SET_COOKIE).unwrap().to_str().unwrap();
    assert!(cookie.starts_with(&format!("switchyard_session={};", app.admin_token)), "{cookie}");
    for attribute in ["Path=/ui", "HttpOnly", "SameSite=Strict"] {
        assert!(cookie.split("; ").any(|a| a == attribute), "{attribute} in {cookie}");
    }
    assert!(!cookie.contains("Secure"), "no TLS here: {cookie}");

    let elsewhere = client
        .post(app.url("/ui/sign-in"))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(encode(&[("token", app.admin_token.as_str()), ("next", "//evil.example/ui")]))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&elsewhere), "/ui");

    let signed_out = post_form(
        &app,
        &app.admin_token,
        "/ui/sign-out",
        &[("csrf", &csrf(&app, &app.admin_token, "/ui").await)],
    )
    .await;
    assert_eq!(signed_out.status(), StatusCode::SEE_OTHER);
    assert!(signed_out.headers().get(SET_COOKIE).unwrap().to_str().unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn pages_without_a_session_send_to_sign_in_and_v1_ignores_the_cookie() {
    let app = spawn_app().await;
    let client = browser();
    let answer = client.get(app.url("/ui/events?event_type=a.b")).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&answer), "/ui/sign-in?next=/ui/events%3Fevent_type%3Da.b");

    let stale = client.get(app.url("/ui")).header(COOKIE, session("sy_revoked")).send().await.unwrap();
    assert_eq!(stale.status(), StatusCode::SEE_OTHER);

    let form = client.get(app.url("/ui/sign-in?next=/ui/events")).send().await.unwrap();
    assert_eq!(form.status(), StatusCode::OK);
    let html = form.text().await.unwrap();
    for needle in [
        r#"<form method="post" action="/ui/sign-in">"#,
        r#"<label for="token">"#,
        r#"<input type="password" id="token" name="token""#,
        r#"name="next" value="/ui/events""#,
        r#"<button type="submit" id="sign-in">Sign in</button>"#,
    ] {
        assert!(html.contains(needle), "{needle} in {html}");
    }

    let api =
        client.get(app.url("/v1/status")).header(COOKIE, session(&app.admin_token)).send().await.unwrap();
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED, "the API takes bearer tokens only");
}

#[tokio::test]
async fn every_answer_of_the_dashboard_carries_the_strict_headers() {
    let app = spawn_app().await;
    for path in ["/ui/sign-in", "/ui", "/ui/events"] {
        let response =
            browser().get(app.url(path)).header(COOKIE, session(&app.admin_token)).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(headers["content-security-policy"], POLICY, "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
        assert_eq!(headers[CACHE_CONTROL], "no-store", "{path}");
    }
    for (path, kind) in [("/ui/assets/app.css", "text/css"), ("/ui/assets/app.js", "text/javascript")] {
        let response = browser().get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers();
        assert!(headers[CONTENT_TYPE].to_str().unwrap().starts_with(kind), "{path}");
        assert!(headers[CACHE_CONTROL].to_str().unwrap().contains("max-age"), "{path}");
        assert_eq!(headers["content-security-policy"], POLICY, "{path}");
    }
}

#[tokio::test]
async fn every_page_answers_an_admin_and_escapes_what_events_hold() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(200)).await;
    let destination = app.create_destination(&sink.url).await;
    app.create_subscription(&destination, &["page.*"]).await;
    let event = json!({"event_id": "evt_ui_1", "event_type": "page.shown", "payload": {"html": "<script>alert(1)</script>"}});
    app.publish(event).await.assert_status(201);

    for path in [
        "/ui",
        "/ui/events",
        "/ui/events/evt_ui_1",
        "/ui/destinations",
        "/ui/dead-letters",
        "/ui/sources",
        "/ui/audit-log",
    ] {
        let (status, html) = get(&app, &app.admin_token, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        for needle in ["<nav", "<main>", "<h1>", "<title>", r#"id="sign-out""#] {
            assert!(html.contains(needle), "{needle} on {path}");
        }
        assert!(!html.contains(" style="), "no inline style on {path}");
        assert!(!html.contains("<script>"), "no inline script on {path}");
    }

    let (_, events) = get(&app, &app.admin_token, "/ui/events").await;
    assert!(events.contains(r#"<tr class="event" data-id="evt_ui_1">"#), "{events}");
    assert!(events.contains(r#"<a href="/ui/events/evt_ui_1">"#));
    assert!(events.contains(r#"data-live="on""#));

    let (_, page) = get(&app, &app.admin_token, "/ui/events/evt_ui_1").await;
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");
    assert!(page.contains(r#"<pre id="payload""#));

    let (_, overview) = get(&app, &app.admin_token, "/ui").await;
    assert!(overview.contains(r#"<section id="blockers""#));
    assert!(overview.contains("<svg"));

    let (status, _) = get(&app, &app.admin_token, "/ui/events/evt_nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_forged_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let destination = app.create_destination("https://sink.invalid/hook").await;
    let pause = format!("/ui/destinations/{destination}/pause");

    for form in [vec![], vec![("csrf", "forged")]] {
        let answer = post_form(&app, &app.admin_token, &pause, &form).await;
        assert_eq!(answer.status(), StatusCode::FORBIDDEN);
        assert!(answer.text().await.unwrap().contains("stale"));
    }
    assert_eq!(app.get(&format!("/v1/destinations/{destination}")).await.data()["enabled"], true);

    let token = csrf(&app, &app.admin_token, "/ui/destinations").await;
    let answer = post_form(&app, &app.admin_token, &pause, &[("csrf", &token)]).await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert!(location(&answer).starts_with("/ui/destinations?notice="));
    assert_eq!(app.get(&format!("/v1/destinations/{destination}")).await.data()["enabled"], false);
}

#[tokio::test]
async fn a_viewer_sees_no_buttons_and_cannot_post_them() {
    let app = spawn_app().await;
    let viewer = app.issue_key("viewer").await;
    let destination = app.create_destination("https://sink.invalid/hook").await;

    let (status, dead) = get(&app, &viewer, "/ui/dead-letters").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!dead.contains("replay-selected") && !dead.contains(r#"id="replay""#), "{dead}");
    let (_, destinations) = get(&app, &viewer, "/ui/destinations").await;
    for button in ["pause", "resume", "test-send", "rotate-secret"] {
        assert!(!destinations.contains(&format!(r#"class="{button}""#)), "{button}");
    }
    let (status, _) = get(&app, &viewer, "/ui/audit-log").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let token = csrf(&app, &viewer, "/ui").await;
    let replay =
        post_form(&app, &viewer, "/ui/dead-letters/replay", &[("csrf", &token), ("action", "matching")])
            .await;
    assert_eq!(replay.status(), StatusCode::FORBIDDEN);
    let pause =
        post_form(&app, &viewer, &format!("/ui/destinations/{destination}/pause"), &[("csrf", &token)]).await;
    assert_eq!(pause.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.get(&format!("/v1/destinations/{destination}")).await.data()["enabled"], true);
}

#[tokio::test]
async fn an_operator_replays_a_selected_dead_letter_and_follows_it() {
    let app = spawn_app().await;
    let operator = app.issue_key("operator").await;
    let sink = Sink::start(Behaviour::Status(422)).await;
    let destination = app.create_destination(&sink.url).await;
    app.create_subscription(&destination, &["order.*"]).await;
    app.publish(json!({"event_id": "o-1", "event_type": "order.created", "payload": {}}))
        .await
        .assert_status(201);
    let started = Instant::now();
    let dead = loop {
        let letters = app.get("/v1/dead-letters").await;
        if let Some(id) = letters.data().as_array().and_then(|d| d.first()).and_then(|d| d["id"].as_str()) {
            break id.to_owned();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no dead letter");
        tokio::time::sleep(Duration::from_millis(25)).await;
    };

    let (_, page) = get(&app, &operator, "/ui/dead-letters").await;
    assert!(page.contains(&format!(r#"<tr class="dead-letter" data-id="{dead}">"#)), "{page}");
    assert!(page.contains(r#"id="replay-selected""#) && page.contains(r#"id="replay-matching""#));

    let token = csrf(&app, &operator, "/ui/dead-letters").await;
    let answer = post_form(
        &app,
        &operator,
        "/ui/dead-letters/replay",
        &[("csrf", &token), ("delivery_id", &dead), ("action", "selected")],
    )
    .await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let next = location(&answer).to_owned();
    assert!(next.contains(&format!("replayed={dead}")), "{next}");

    let (_, after) = get(&app, &operator, &next).await;
    assert!(after.contains(r#"id="replay-progress""#) && after.contains(" of 1 replayed"), "{after}");
    let progress = browser()
        .get(app.url(&format!("/ui/dead-letters/progress?ids={dead}")))
        .header(COOKIE, session(&operator))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(progress["total"], 1, "{progress}");
}

#[tokio::test]
async fn the_live_tail_streams_events_to_a_session() {
    let app = spawn_app().await;
    let mut stream = browser()
        .get(app.url("/ui/events/stream"))
        .header(COOKIE, session(&app.admin_token))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert!(stream.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/event-stream"));
    app.publish(json!({"event_id": "evt_live_1", "event_type": "page.shown", "payload": {}}))
        .await
        .assert_status(201);
    let mut seen = String::new();
    let started = Instant::now();
    while !seen.contains("evt_live_1") {
        assert!(started.elapsed() < Duration::from_secs(10), "no frame: {seen}");
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("the stream stays open")));
    }
    assert!(seen.contains("event: event"), "{seen}");

    let anonymous = browser().get(app.url("/ui/events/stream")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn dashboard_actions_are_in_the_audit_log_as_their_api_routes() {
    let app = spawn_app().await;
    let destination = app.create_destination("https://sink.invalid/hook").await;
    let token = csrf(&app, &app.admin_token, "/ui/destinations").await;
    let answer = post_form(
        &app,
        &app.admin_token,
        &format!("/ui/destinations/{destination}/pause"),
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    let log = app.get("/v1/audit-log?action=destination.pause").await;
    let entries = log.data().as_array().expect("entries").clone();
    assert_eq!(entries.len(), 1, "{}", log.body);
    assert_eq!(entries[0]["route"], "/v1/destinations/{id}/pause");
    assert_eq!(entries[0]["resource"]["id"], destination.as_str());
    let (_, page) = get(&app, &app.admin_token, "/ui/audit-log").await;
    assert!(page.contains("destination.pause"), "{page}");
}
