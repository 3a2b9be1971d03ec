//! Bearer, basic and OAuth2 client-credentials authentication.

use serde_json::{Value, json};

use super::{Sink, adapter, deliver_once, destination, expect_err};

fn oauth2(sink: &Sink, path: &str, token_path: &str) -> Value {
    json!({
        "url": sink.url(path),
        "auth": {
            "type": "oauth2_client_credentials",
            "token_url": sink.url(token_path),
            "client_id": "hub",
            "client_secret": "cl1ent/s3cret+",
            "scope": "orders:write"
        }
    })
}

fn authorizations(sink: &Sink) -> Vec<String> {
    sink.requests().iter().map(|r| r.header("authorization").unwrap_or("").to_owned()).collect()
}

#[tokio::test]
async fn bearer_tokens_are_sent() {
    let sink = Sink::start().await;
    let dest = destination(json!({
        "url": sink.url("/ok"),
        "auth": {"type": "bearer", "token": "t0ken"}
    }));
    deliver_once(&adapter(), &dest).await.expect("delivered");
    assert_eq!(authorizations(&sink), ["Bearer t0ken"]);
}

#[tokio::test]
async fn basic_credentials_are_sent() {
    let sink = Sink::start().await;
    let dest = destination(json!({
        "url": sink.url("/ok"),
        "auth": {"type": "basic", "username": "hub", "password": "p4ss"}
    }));
    deliver_once(&adapter(), &dest).await.expect("delivered");
    // base64("hub:p4ss")
    assert_eq!(authorizations(&sink), ["Basic aHViOnA0c3M="]);
}

#[tokio::test]
async fn an_oauth2_token_is_fetched_once_and_reused() {
    let sink = Sink::start().await;
    let adapter = adapter();
    let dest = destination(oauth2(&sink, "/protected", "/token"));
    for _ in 0..3 {
        let receipt = deliver_once(&adapter, &dest).await.expect("delivered");
        assert_eq!(receipt.status_code, Some(200));
    }
    let token_requests = sink.token_requests();
    assert_eq!(token_requests.len(), 1, "one token for three deliveries");
    let form: Vec<(String, String)> =
        url::form_urlencoded::parse(token_requests[0].as_bytes()).into_owned().collect();
    for field in [
        ("grant_type", "client_credentials"),
        ("client_id", "hub"),
        ("client_secret", "cl1ent/s3cret+"),
        ("scope", "orders:write"),
    ] {
        assert!(form.contains(&(field.0.to_owned(), field.1.to_owned())), "{field:?} in {form:?}");
    }
    assert_eq!(authorizations(&sink), ["Bearer tok-1"; 3]);
}

#[tokio::test]
async fn concurrent_deliveries_share_one_token_request() {
    let sink = Sink::start().await;
    let adapter = adapter();
    let dest = destination(oauth2(&sink, "/protected", "/token"));
    let (a, b, c, d) = tokio::join!(
        deliver_once(&adapter, &dest),
        deliver_once(&adapter, &dest),
        deliver_once(&adapter, &dest),
        deliver_once(&adapter, &dest),
    );
    for outcome in [a, b, c, d] {
        outcome.expect("delivered");
    }
    assert_eq!(sink.token_requests().len(), 1);
    assert_eq!(authorizations(&sink), ["Bearer tok-1"; 4]);
}

#[tokio::test]
async fn a_rejected_token_is_refreshed_and_the_request_resent_once() {
    let sink = Sink::start().await;
    let adapter = adapter();
    let dest = destination(oauth2(&sink, "/protected", "/token"));
    deliver_once(&adapter, &dest).await.expect("first delivery");
    sink.revoke_token();
    let receipt = deliver_once(&adapter, &dest).await.expect("delivered after a refresh");
    assert_eq!(receipt.status_code, Some(200));
    assert_eq!(sink.token_requests().len(), 2);
    assert_eq!(authorizations(&sink), ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]);
    // Both sends of the refreshed attempt are the same delivery.
    let ids: Vec<_> =
        sink.requests().iter().map(|r| r.header("webhook-id").unwrap_or("").to_owned()).collect();
    assert_eq!(ids[1], ids[2]);
}

#[tokio::test]
async fn a_second_401_is_the_answer() {
    let sink = Sink::start().await;
    let dest = destination(oauth2(&sink, "/status/401", "/token"));
    let err = expect_err(deliver_once(&adapter(), &dest).await);
    assert_eq!(err.status_code, Some(401));
    assert!(!err.retryable);
    assert_eq!(sink.token_requests().len(), 2, "one refresh");
    assert_eq!(sink.requests().len(), 2, "one resend");
}

#[tokio::test]
async fn a_failing_token_endpoint_is_retryable_and_says_why_without_the_secret() {
    let sink = Sink::start().await;
    let dest = destination(oauth2(&sink, "/protected", "/token-down"));
    let err = expect_err(deliver_once(&adapter(), &dest).await);
    assert!(err.retryable);
    assert_eq!(err.status_code, None, "the destination never answered");
    assert!(err.message.contains("token request") && err.message.contains("failed"), "{}", err.message);
    assert!(err.message.contains("HTTP 503 Service Unavailable"), "{}", err.message);
    assert!(err.message.contains("token service down"), "{}", err.message);
    assert!(!err.message.contains("cl1ent/s3cret+"), "{}", err.message);
    assert!(!err.message.contains("cl1ent%2Fs3cret%2B"), "{}", err.message);
    assert!(sink.requests().is_empty(), "nothing was sent unauthenticated");
}
