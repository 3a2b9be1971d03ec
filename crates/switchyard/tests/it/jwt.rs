//! JWT bearer tokens beside API keys (SPEC §6): signed with the test keys of
//! `tests/fixtures/jwt` (test-only keys, see the README there).

use std::path::PathBuf;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::Method;
use serde_json::{Value, json};
use switchyard::Application;
use switchyard::config::Config;

use crate::helpers::{TestApp, spawn_app_with};

const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "switchyard";
/// `{"alg":"none","typ":"JWT"}`, base64url.
const ALG_NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
const HS256_SECRET: &str = "a test secret of more than thirty-two bytes";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt").join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("a JWT test fixture")
}

fn now() -> i64 {
    switchyard_core::time::now_millis() / 1000
}

fn claims(role: &str) -> Value {
    json!({
        "sub": "alice@example.com", "iss": ISSUER, "aud": AUDIENCE, "role": role,
        "iat": now(), "nbf": now() - 5, "exp": now() + 600,
    })
}

/// `claims("publisher")` with `key` set (or removed, for null).
fn claims_with(key: &str, value: Value) -> Value {
    let mut claims = claims("publisher");
    if value.is_null() {
        if let Some(map) = claims.as_object_mut() {
            map.remove(key);
        }
    } else {
        claims[key] = value;
    }
    claims
}

fn header(alg: Algorithm, kid: &str) -> Header {
    Header { kid: Some(kid.to_owned()), ..Header::new(alg) }
}

fn rs256(claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(&read("rsa_private.pem")).expect("the RSA test key");
    encode(&header(Algorithm::RS256, "rsa-1"), claims, &key).expect("signs")
}

fn es256(claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(&read("ec_private.pem")).expect("the EC test key");
    encode(&header(Algorithm::ES256, "ec-1"), claims, &key).expect("signs")
}

fn hs256(claims: &Value, secret: &[u8], kid: Option<&str>) -> String {
    let header = Header { kid: kid.map(str::to_owned), ..Header::new(Algorithm::HS256) };
    encode(&header, claims, &EncodingKey::from_secret(secret)).expect("signs")
}

/// The token's payload part, to splice into forgeries.
fn payload_of(token: &str) -> &str {
    token.split('.').nth(1).expect("three parts")
}

async fn jwks_app() -> TestApp {
    spawn_app_with(|config| {
        config.auth.jwt.jwks_file = Some(fixture("jwks.json"));
        config.auth.jwt.issuer = Some(ISSUER.to_owned());
        config.auth.jwt.audience = Some(AUDIENCE.to_owned());
    })
    .await
}

#[tokio::test]
async fn forged_expired_misdirected_unsigned_and_confused_tokens_are_401() {
    let app = jwks_app().await;
    let forger = EncodingKey::from_rsa_pem(&read("other_rsa_private.pem")).expect("the other RSA key");
    let valid = rs256(&claims("viewer"));
    let as_admin = rs256(&claims("admin"));
    let rsa_public_pem = read("rsa_public.pem");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "forged: signed by a key not in the JWKS under its kid",
            encode(&header(Algorithm::RS256, "rsa-1"), &claims("admin"), &forger).expect("signs"),
            "signature does not verify",
        ),
        (
            "forged: a valid signature over other claims",
            valid.replacen(payload_of(&valid), payload_of(&as_admin), 1),
            "signature does not verify",
        ),
        ("expired beyond the leeway", rs256(&claims_with("exp", json!(now() - 120))), "the token expired at"),
        (
            "not yet valid beyond the leeway",
            rs256(&claims_with("nbf", json!(now() + 120))),
            "not valid before",
        ),
        ("wrong audience", rs256(&claims_with("aud", json!(["billing"]))), "not meant for this audience"),
        (
            "wrong issuer",
            rs256(&claims_with("iss", json!("https://evil.example"))),
            "issuer is not the configured one",
        ),
        ("alg none, no signature", format!("{ALG_NONE_HEADER}.{}.", payload_of(&as_admin)), "alg none"),
        (
            "alg none, signature kept",
            format!("{ALG_NONE_HEADER}.{}", as_admin.split_once('.').expect("parts").1),
            "alg none",
        ),
        (
            "HS256 signed with the RSA public key as the HMAC secret",
            hs256(&claims("admin"), &rsa_public_pem, Some("rsa-1")),
            "signed with `HS256`, but key `rsa-1` accepts RS256 only",
        ),
        (
            "ES256 presented under the RSA key's kid",
            {
                let key = EncodingKey::from_ec_pem(&read("ec_private.pem")).expect("the EC test key");
                encode(&header(Algorithm::ES256, "rsa-1"), &claims("admin"), &key).expect("signs")
            },
            "accepts RS256 only",
        ),
        (
            "unknown kid",
            {
                let key = EncodingKey::from_rsa_pem(&read("rsa_private.pem")).expect("the RSA test key");
                encode(&header(Algorithm::RS256, "rsa-9"), &claims("admin"), &key).expect("signs")
            },
            "kid names no key",
        ),
        ("no exp", rs256(&claims_with("exp", Value::Null)), "no `exp` claim"),
        ("no sub", rs256(&claims_with("sub", Value::Null)), "no `sub` claim"),
        ("no role", rs256(&claims_with("role", Value::Null)), "no valid role"),
        ("unknown role", rs256(&claims_with("role", json!("superuser"))), "no valid role"),
        ("not a JWT", "definitely-not-a-token".to_owned(), "not a signed JWT"),
    ];
    for (case, token, why) in cases {
        let answer = app.send(app.request_as(&token, Method::GET, "/v1/events")).await;
        assert_eq!(answer.status.as_u16(), 401, "{case}: {}", answer.body);
        answer.assert_error(401, "unauthorized");
        let message = answer.body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{case}: the message names the failed check: {message}");
        assert!(
            !message.contains(payload_of(&valid)) && !message.contains(&token),
            "{case}: no token echoed"
        );
        assert_eq!(answer.header("www-authenticate"), Some("Bearer"), "{case}");
    }
}

#[tokio::test]
async fn valid_tokens_map_their_role_and_a_too_small_role_is_forbidden() {
    let app = jwks_app().await;
    let viewer = rs256(&claims("viewer"));
    app.send(app.request_as(&viewer, Method::GET, "/v1/events")).await.assert_status(200);
    let forbidden = app
        .send(
            app.request_as(&viewer, Method::POST, "/v1/events")
                .json(&json!({"event_type": "order.created", "payload": {}})),
        )
        .await;
    forbidden.assert_error(403, "forbidden");
    let message = forbidden.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("needs the publisher role; the token has the viewer role"), "{message}");

    let publisher = es256(&claims("publisher"));
    let event = json!({"event_type": "order.created", "payload": {"id": 1}});
    app.send(app.request_as(&publisher, Method::POST, "/v1/events").json(&event)).await.assert_status(201);
    app.send(app.request_as(&publisher, Method::GET, "/v1/api-keys")).await.assert_error(403, "forbidden");

    let admin = rs256(&claims_with("role", json!(["viewer", "admin"])));
    app.send(app.request_as(&admin, Method::GET, "/v1/api-keys")).await.assert_status(200);

    let skewed = rs256(&json!({
        "sub": "bob", "iss": ISSUER, "aud": [AUDIENCE, "other"], "role": "viewer",
        "exp": now() - 10, "nbf": now() + 10,
    }));
    app.send(app.request_as(&skewed, Method::GET, "/v1/events")).await.assert_status(200);

    // API keys keep working beside JWTs.
    app.get("/v1/api-keys").await.assert_status(200);
}

#[tokio::test]
async fn idempotency_keys_are_scoped_by_jwt_subject() {
    let app = jwks_app().await;
    let alice = rs256(&claims("publisher"));
    let bob = rs256(&claims_with("sub", json!("bob")));
    let event = json!({"event_type": "order.created", "payload": {"id": 2}});
    let post = |token: &str| {
        app.request_as(token, Method::POST, "/v1/events").header("idempotency-key", "k-1").json(&event)
    };
    let first = app.send(post(&alice)).await;
    first.assert_status(201);
    let again = app.send(post(&rs256(&claims("publisher")))).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"), "a new token of the same subject replays");
    assert_eq!(again.data()["id"], first.data()["id"]);
    let other = app.send(post(&bob)).await;
    assert_eq!(other.header("idempotent-replayed"), None, "another subject has its own keys");
}

#[tokio::test]
async fn an_event_published_with_a_jwt_names_its_issuer_and_subject() {
    let app = jwks_app().await;
    let published = app
        .send(
            app.request_as(&rs256(&claims("publisher")), Method::POST, "/v1/events")
                .header("x-request-id", "jwt-publish-1")
                .json(&json!({"event_id": "by-jwt", "event_type": "order.created", "payload": {}})),
        )
        .await;
    published.assert_status(201);
    let read = app.get("/v1/events/by-jwt").await;
    assert_eq!(
        read.data()["published_by"],
        json!({"principal": format!("jwt:{ISSUER}|alice@example.com"), "request_id": "jwt-publish-1"})
    );
}

#[tokio::test]
async fn an_hs256_secret_accepts_hs256_only() {
    let app = spawn_app_with(|config| {
        config.auth.jwt.hs256_secret = Some(HS256_SECRET.to_owned());
        config.auth.jwt.role_claim = "https://switchyard.example/role".to_owned();
    })
    .await;
    let mut claims = claims("admin");
    claims["https://switchyard.example/role"] = json!("operator");
    let good = hs256(&claims, HS256_SECRET.as_bytes(), None);
    app.send(app.request_as(&good, Method::GET, "/v1/subscriptions")).await.assert_status(200);
    app.send(app.request_as(&good, Method::GET, "/v1/api-keys")).await.assert_error(403, "forbidden");

    let forged = hs256(&claims, b"another secret, also thirty-two bytes long", None);
    let refused = app.send(app.request_as(&forged, Method::GET, "/v1/events")).await;
    refused.assert_error(401, "unauthorized");
    let rsa = rs256(&claims);
    let refused = app.send(app.request_as(&rsa, Method::GET, "/v1/events")).await;
    refused.assert_error(401, "unauthorized");
    let message = refused.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("signed with `RS256`, but the configured key accepts HS256 only"), "{message}");
}

#[tokio::test]
async fn without_jwt_configured_a_jwt_is_refused() {
    let app = spawn_app_with(|_| {}).await;
    let token = hs256(&claims("admin"), HS256_SECRET.as_bytes(), None);
    let answer = app.send(app.request_as(&token, Method::GET, "/v1/events")).await;
    answer.assert_error(401, "unauthorized");
}

#[tokio::test]
async fn an_unusable_key_source_stops_the_start() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = |adjust: &dyn Fn(&mut Config)| {
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().expect("an address");
        config.database.url = format!("sqlite://{}", dir.path().join("app.db").display());
        adjust(&mut config);
        config
    };
    let missing = config(&|c| c.auth.jwt.jwks_file = Some(dir.path().join("nowhere.json")));
    let error = Application::build(missing).await.expect_err("no JWKS file");
    assert!(format!("{error:#}").contains("auth.jwt.jwks_file: cannot read"), "{error:#}");
    let both = config(&|c| {
        c.auth.jwt.jwks_file = Some(fixture("jwks.json"));
        c.auth.jwt.hs256_secret = Some(HS256_SECRET.to_owned());
    });
    let error = Application::build(both).await.expect_err("two key sources");
    assert!(format!("{error:#}").contains("set hs256_secret or jwks_file, not both"), "{error:#}");
    assert!(!dir.path().join("app.db").exists(), "nothing was written");
}
