//! Rate limiting per API key or JWT subject (SPEC §6): 429 `rate_limited` with `Retry-After`
//! and `RateLimit-*`, recovery once the bucket refills, quotas per role.

use std::time::{Duration, Instant};

use jsonwebtoken::{EncodingKey, Header, encode};
use reqwest::Method;
use serde_json::json;
use switchyard::config::RoleRateLimit;
use switchyard_core::api_key::Role;

use crate::helpers::{Answer, TestApp, spawn_app_with};

/// A bucket of 3 refilled at 1 per second: three quick requests pass, the fourth does not, and
/// no machine is slow enough to refill one between them.
const PER_SECOND: u32 = 1;
const BURST: u32 = 3;
const SECRET: &str = "a test secret of more than thirty-two bytes";

/// Admins are exempt (an override with `per_second = 0`), so the tests can set up freely;
/// publishers get a bucket of their own.
async fn limited_app() -> TestApp {
    spawn_app_with(|config| {
        config.rate_limit.per_second = PER_SECOND;
        config.rate_limit.burst = BURST;
        config.rate_limit.roles.insert(Role::Admin, RoleRateLimit { per_second: Some(0), burst: None });
        config.rate_limit.roles.insert(Role::Publisher, RoleRateLimit { per_second: None, burst: Some(1) });
        config.auth.jwt.hs256_secret = Some(SECRET.to_owned());
    })
    .await
}

fn number(answer: &Answer, name: &str) -> u64 {
    answer
        .header(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a numeric {name} header: {:?}", answer.headers))
}

#[tokio::test]
async fn an_emptied_bucket_answers_429_with_headers_then_recovers() {
    let app = limited_app().await;
    let viewer = app.issue_key("viewer").await;
    let other = app.issue_key("viewer").await;

    for remaining in (0..BURST).rev() {
        let answer = app.send(app.request_as(&viewer, Method::GET, "/v1/events")).await;
        answer.assert_status(200);
        assert_eq!(number(&answer, "ratelimit-limit"), u64::from(BURST));
        assert_eq!(number(&answer, "ratelimit-remaining"), u64::from(remaining));
        assert!(number(&answer, "ratelimit-reset") >= 1);
    }
    let limited = app.send(app.request_as(&viewer, Method::GET, "/v1/events")).await;
    limited.assert_error(429, "rate_limited");
    let retry_after = number(&limited, "retry-after");
    assert!((1..=u64::from(BURST)).contains(&retry_after), "Retry-After: {retry_after}");
    assert_eq!(number(&limited, "ratelimit-limit"), u64::from(BURST));
    assert_eq!(number(&limited, "ratelimit-remaining"), 0);
    let reset = number(&limited, "ratelimit-reset");
    assert!(reset >= retry_after && reset <= u64::from(BURST) + 1, "RateLimit-Reset: {reset}");

    // Another key of the same role is not held back by this one.
    app.send(app.request_as(&other, Method::GET, "/v1/events")).await.assert_status(200);
    // Nor are writes: a POST with an Idempotency-Key is refused before the key is claimed.
    let limited_post = app
        .send(
            app.request_as(&viewer, Method::POST, "/v1/events")
                .header("idempotency-key", "rl-1")
                .json(&json!({"event_type": "a", "payload": {}})),
        )
        .await;
    limited_post.assert_error(429, "rate_limited");

    // After Retry-After the bucket has a token again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = app.send(app.request_as(&viewer, Method::GET, "/v1/events")).await;
        if answer.status == 200 {
            break;
        }
        answer.assert_error(429, "rate_limited");
        assert!(Instant::now() < deadline, "the bucket never refilled: {:?}", answer.headers);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn quotas_follow_the_role() {
    let app = limited_app().await;
    let publisher = app.issue_key("publisher").await;
    let first = app.send(app.request_as(&publisher, Method::GET, "/v1/events")).await;
    first.assert_status(200);
    assert_eq!(number(&first, "ratelimit-limit"), 1, "the publisher override's burst");
    app.send(app.request_as(&publisher, Method::GET, "/v1/events")).await.assert_error(429, "rate_limited");

    for _ in 0..(BURST * 3) {
        let answer = app.get("/v1/events").await;
        answer.assert_status(200);
        assert_eq!(answer.header("ratelimit-limit"), None, "admins are exempt");
    }
    for _ in 0..(BURST * 3) {
        let health = app.client.get(app.url("/health/live")).send().await.expect("sent");
        assert!(health.status().is_success(), "health is not limited");
        assert!(health.headers().get("ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn jwt_subjects_have_one_bucket_across_their_tokens() {
    let app = limited_app().await;
    let token = |sub: &str, n: u64| {
        let now = switchyard_core::time::now_millis() / 1000;
        let claims = json!({"sub": sub, "role": "viewer", "exp": now + 600, "jti": n});
        encode(&Header::default(), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).expect("signs")
    };
    for n in 0..u64::from(BURST) {
        app.send(app.request_as(&token("carol", n), Method::GET, "/v1/events")).await.assert_status(200);
    }
    let limited = app.send(app.request_as(&token("carol", 99), Method::GET, "/v1/events")).await;
    limited.assert_error(429, "rate_limited");
    app.send(app.request_as(&token("dave", 0), Method::GET, "/v1/events")).await.assert_status(200);
}

#[tokio::test]
async fn zero_per_second_turns_rate_limiting_off() {
    let app = spawn_app_with(|config| config.rate_limit.per_second = 0).await;
    let viewer = app.issue_key("viewer").await;
    for _ in 0..20 {
        let answer = app.send(app.request_as(&viewer, Method::GET, "/v1/events")).await;
        answer.assert_status(200);
        assert_eq!(answer.header("ratelimit-limit"), None);
    }
}
