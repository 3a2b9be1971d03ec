//! What a verified webhook must still be: a JSON object within the body limit, naming its type
//! and id, to a source that exists and is enabled, within the source's rate limit.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    GITHUB_SECRET, assert_received, assert_refused, create_source, event_count, github_headers, headers,
    webhook, with,
};
use crate::helpers::{spawn_app, spawn_app_with};

fn github_config() -> serde_json::Value {
    json!({"verification": {"type": "github", "secret": GITHUB_SECRET}})
}

#[tokio::test]
async fn a_verified_body_must_be_a_json_object() {
    let app = spawn_app().await;
    let id = create_source(&app, "github", github_config()).await;
    let bodies: [(&str, &[u8]); 5] = [
        ("not JSON", b"payload=%7B%22zen%22%7D"),
        ("a JSON array", br#"[{"zen":"x"}]"#),
        ("a JSON string", br#""zen""#),
        ("JSON with trailing garbage", br#"{"zen":"x"} tail"#),
        ("an empty body", b""),
    ];
    for (n, (what, body)) in bodies.into_iter().enumerate() {
        let sent = github_headers(GITHUB_SECRET, body, "push", &format!("bad-body-{n}"));
        let answer = webhook(&app, &id, &sent, body).await;
        answer.assert_error(400, "validation_error");
        assert_eq!(answer.detail_fields(), ["body"], "{what}: {}", answer.body);
    }
    assert_eq!(event_count(&app).await, 0);
}

#[tokio::test]
async fn a_body_that_names_no_type_or_id_is_a_400_naming_which() {
    let app = spawn_app().await;
    let id = create_source(&app, "github", github_config()).await;
    let body = br#"{"zen":"x"}"#;
    let no_type = with(github_headers(GITHUB_SECRET, body, "push", "no-type-1"), "x-github-event", None);
    let answer = webhook(&app, &id, &no_type, body).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["event_type"]);
    let no_id = with(github_headers(GITHUB_SECRET, body, "push", "x"), "x-github-delivery", None);
    let answer = webhook(&app, &id, &no_id, body).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["event_id"]);

    let stripe = create_source(
        &app,
        "stripe",
        json!({"verification": {"type": "none"}, "event_type": {"jq": ".type"},
                                                      "event_id": {"jq": ".id"}}),
    )
    .await;
    let answer = webhook(&app, &stripe, &headers(&[]), br#"{"id":"evt_1","type":{"nested":true}}"#).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["event_type"]);
    let answer = webhook(&app, &stripe, &headers(&[]), br#"{"type":"a.b"}"#).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["event_id"]);
    assert_eq!(event_count(&app).await, 0);
}

/// A `POST` of `body` sent in chunks (no `Content-Length`), over a raw connection; answers the
/// status code.
async fn post_chunked(address: &str, path: &str, extra_headers: &[(String, String)], body: &[u8]) -> u16 {
    let authority = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority).await.expect("the app listens");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {authority}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n"
    );
    for (name, value) in extra_headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("the head is sent");
    for chunk in body.chunks(512) {
        stream.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.expect("a chunk size");
        stream.write_all(chunk).await.expect("a chunk");
        stream.write_all(b"\r\n").await.expect("a chunk end");
    }
    // The server may answer and close before the last chunk: a failed write is no failure here.
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    let status = text.split(' ').nth(1).unwrap_or_default();
    status.parse().unwrap_or_else(|_| panic!("no status line in {text:?}"))
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_announced_or_not() {
    let app = spawn_app_with(|config| config.limits.max_body_bytes = 1_024).await;
    let id = create_source(&app, "github", github_config()).await;
    let big = format!(r#"{{"padding":"{}"}}"#, "x".repeat(2_000)).into_bytes();
    let sent = github_headers(GITHUB_SECRET, &big, "push", "too-big-1");
    webhook(&app, &id, &sent, &big).await.assert_error(413, "payload_too_large");
    let status = post_chunked(&app.address, &format!("/v1/sources/{id}/webhook"), &sent, &big).await;
    assert_eq!(status, 413, "a chunked body over the limit");
    assert_eq!(event_count(&app).await, 0);

    let small = format!(r#"{{"padding":"{}"}}"#, "x".repeat(900)).into_bytes();
    let sent = github_headers(GITHUB_SECRET, &small, "push", "small-1");
    assert_received(&webhook(&app, &id, &sent, &small).await, "small-1", false);
    let sent = github_headers(GITHUB_SECRET, &small, "push", "small-2");
    let status = post_chunked(&app.address, &format!("/v1/sources/{id}/webhook"), &sent, &small).await;
    assert_eq!(status, 200, "a chunked body within the limit");
    assert_eq!(event_count(&app).await, 2);
}

#[tokio::test]
async fn a_disabled_source_answers_404_like_an_unknown_one_until_enabled_again() {
    let app = spawn_app().await;
    let id = create_source(&app, "github", github_config()).await;
    let body = br#"{"zen":"x"}"#;
    let sent = github_headers(GITHUB_SECRET, body, "push", "while-disabled-1");

    let unknown_id = "src_01900000000000000000000000000000";
    let unknown = webhook(&app, unknown_id, &sent, body).await;
    unknown.assert_error(404, "not_found");
    webhook(&app, "not-an-id", &sent, body).await.assert_error(404, "not_found");

    app.patch(&format!("/v1/sources/{id}"), json!({"enabled": false})).await.assert_status(200);
    let disabled = webhook(&app, &id, &sent, body).await;
    disabled.assert_error(404, "not_found");
    let message = |answer: &crate::helpers::Answer, id: &str| {
        answer.body["error"]["message"].as_str().expect("a message").replace(id, "<id>")
    };
    assert_eq!(message(&disabled, &id), message(&unknown, unknown_id), "a caller cannot tell them apart");
    // Even a forgery learns nothing more from a disabled source.
    let forged = github_headers("wrong", body, "push", "while-disabled-2");
    webhook(&app, &id, &forged, body).await.assert_error(404, "not_found");
    assert_eq!(event_count(&app).await, 0);

    app.patch(&format!("/v1/sources/{id}"), json!({"enabled": true})).await.assert_status(200);
    assert_received(&webhook(&app, &id, &sent, body).await, "while-disabled-1", false);
}

#[tokio::test]
async fn over_its_rate_limit_a_source_answers_429_with_retry_after() {
    let app = spawn_app().await;
    let config = json!({"verification": {"type": "github", "secret": GITHUB_SECRET},
                        "rate_limit": {"per_second": 1, "burst": 2}});
    let id = create_source(&app, "github", config).await;
    let body = br#"{"zen":"x"}"#;

    // Verification comes first: forgeries take no token of the provider's.
    for n in 0..3 {
        let forged = github_headers("wrong", body, "push", &format!("forged-{n}"));
        assert_refused(&webhook(&app, &id, &forged, body).await, "a forgery");
    }
    for n in 0..2 {
        let delivery = format!("burst-{n}");
        let sent = github_headers(GITHUB_SECRET, body, "push", &delivery);
        assert_received(&webhook(&app, &id, &sent, body).await, &delivery, false);
    }
    let sent = github_headers(GITHUB_SECRET, body, "push", "burst-2");
    let limited = webhook(&app, &id, &sent, body).await;
    limited.assert_error(429, "rate_limited");
    let retry_after: u64 = limited
        .header("retry-after")
        .expect("a Retry-After header")
        .parse()
        .expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&retry_after), "one token a second: {retry_after}");
    assert_eq!(event_count(&app).await, 2, "a limited webhook is not stored");
    app.get("/v1/events/burst-2").await.assert_error(404, "not_found");

    // Another source has its own bucket.
    let other = create_source(&app, "other", github_config()).await;
    let sent_other = github_headers(GITHUB_SECRET, body, "push", "other-0");
    assert_received(&webhook(&app, &other, &sent_other, body).await, "other-0", false);

    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_received(&webhook(&app, &id, &sent, body).await, "burst-2", false);
}

// Event ids are one namespace for the whole hub. A provider's id names its event unless an event
// from elsewhere (another source, the API) holds it; then the id scoped by the source does, so a
// 200 always means this source's event is committed.

#[tokio::test]
async fn the_same_body_at_two_unsigned_sources_makes_two_events() {
    let app = spawn_app().await;
    let config = |kind: &str| json!({"verification": {"type": "none"}, "event_type": {"value": format!("monitor.{kind}.up")}});
    let first = create_source(&app, "first monitor", config("first")).await;
    let second = create_source(&app, "second monitor", config("second")).await;
    let body = br#"{"status":"ok"}"#;
    let answer = webhook(&app, &first, &headers(&[]), body).await;
    answer.assert_status(200);
    assert_eq!(answer.data()["duplicate"], false);
    let digest = answer.data()["event_id"].as_str().expect("an id").to_owned();

    // Another source, another event type: not a redelivery of the first source's event.
    let answer = webhook(&app, &second, &headers(&[]), body).await;
    answer.assert_status(200);
    assert_eq!(answer.data()["duplicate"], false, "{}", answer.body);
    let scoped = format!("{second}:{digest}");
    assert_eq!(answer.data()["event_id"], scoped.as_str());
    let stored = app.get(&format!("/v1/events/{scoped}")).await;
    assert_eq!(stored.data()["source"], format!("webhook:{second}"));
    assert_eq!(stored.data()["event_type"], "monitor.second.up");

    // Its redelivery is a duplicate of its own event, under the same id.
    let again = webhook(&app, &second, &headers(&[]), body).await;
    assert_eq!(
        (again.data()["event_id"].as_str(), again.data()["duplicate"].as_bool()),
        (Some(scoped.as_str()), Some(true))
    );
    assert_eq!(app.count("/v1/events").await, 2);
}

#[tokio::test]
async fn a_provider_id_taken_by_an_api_event_is_scoped_by_the_source() {
    let app = spawn_app().await;
    let delivery = "b0a1c2d3-0000-11ef-8000-00000000beef";
    app.publish(json!({"event_id": delivery, "event_type": "inventory.counted", "payload": {"n": 1}}))
        .await
        .assert_status(201);
    let id = create_source(&app, "github", github_config()).await;
    let body = br#"{"ref":"refs/heads/main"}"#;
    let sent = github_headers(GITHUB_SECRET, body, "push", delivery);
    let answer = webhook(&app, &id, &sent, body).await;
    answer.assert_status(200);
    let scoped = format!("{id}:{delivery}");
    assert_eq!(
        (answer.data()["event_id"].as_str(), answer.data()["duplicate"].as_bool()),
        (Some(scoped.as_str()), Some(false))
    );
    let stored = app.get(&format!("/v1/events/{scoped}")).await;
    assert_eq!(stored.data()["source"], format!("webhook:{id}"));
    assert_eq!(stored.data()["event_type"], "github.push");
    assert_eq!(app.get(&format!("/v1/events/{delivery}")).await.data()["event_type"], "inventory.counted");

    let again = webhook(&app, &id, &sent, body).await;
    assert_eq!(
        (again.data()["event_id"].as_str(), again.data()["duplicate"].as_bool()),
        (Some(scoped.as_str()), Some(true))
    );
}

#[tokio::test]
async fn a_deeply_nested_body_is_refused_after_its_signature_is_checked() {
    let app = spawn_app().await;
    let id = create_source(&app, "github", github_config()).await;
    let body = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40)).into_bytes();
    let forged = github_headers("not the secret", &body, "push", "deep-1");
    webhook(&app, &id, &forged, &body).await.assert_error(401, "unauthorized");
    let signed = github_headers(GITHUB_SECRET, &body, "push", "deep-1");
    let answer = webhook(&app, &id, &signed, &body).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["body"]);
    assert_eq!(app.count("/v1/events").await, 0);
}
