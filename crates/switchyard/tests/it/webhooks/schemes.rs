//! The generic schemes (`hmac`, `basic`, `api_key`, `none`) with the event's type and id taken
//! by the source's own rules, and the headers a source forwards into `metadata.headers`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    GITHUB_SECRET, assert_event, assert_received, assert_refused, create_source, event_count, github_headers,
    headers, hex, hmac_sha256, hmac_sha512, webhook, with,
};
use crate::helpers::spawn_app;

#[tokio::test]
async fn hmac_sha512_base64_with_a_prefix_and_jq_rules() {
    let app = spawn_app().await;
    let secret = "custom-hmac-secret";
    let config = json!({
        "verification": {"type": "hmac", "header": "X-Acme-Signature", "secret": secret,
                         "algorithm": "sha512", "encoding": "base64", "prefix": "sha512="},
        "event_type": {"jq": ".event.kind", "prefix": "acme."},
        "event_id": {"jq": ".event.id"}
    });
    let id = create_source(&app, "acme", config).await;
    let body = br#"{"event":{"kind":"Invoice/Paid","id":"acme-77"},"amount":10}"#;
    let sign =
        |key: &str, body: &[u8]| format!("sha512={}", STANDARD.encode(hmac_sha512(key.as_bytes(), body)));
    let sent = headers(&[("x-acme-signature", &sign(secret, body))]);

    assert_received(&webhook(&app, &id, &sent, body).await, "acme-77", false);
    assert_event(&app, "acme-77", "acme.invoice.paid", body, &id).await;
    assert_received(&webhook(&app, &id, &sent, body).await, "acme-77", true);

    let mac = STANDARD.encode(hmac_sha512(secret.as_bytes(), body));
    let sha256 = format!("sha512={}", STANDARD.encode(hmac_sha256(secret.as_bytes(), body)));
    let hex512 = format!("sha512={}", hex(&hmac_sha512(secret.as_bytes(), body)));
    let other = br#"{"event":{"kind":"invoice.paid","id":"acme-78"}}"#;
    let forgeries = [
        ("a wrong secret", headers(&[("x-acme-signature", &sign("another secret", other))])),
        ("no signature header", headers(&[("x-other-signature", &sign(secret, other))])),
        ("the MAC without its prefix", headers(&[("x-acme-signature", &mac)])),
        ("an HMAC-SHA256 where SHA-512 is configured", headers(&[("x-acme-signature", &sha256)])),
        ("hex where base64 is configured", headers(&[("x-acme-signature", &hex512)])),
        ("another body's signature", sent.clone()),
    ];
    for (what, sent) in forgeries {
        assert_refused(&webhook(&app, &id, &sent, other).await, what);
    }
    assert_eq!(event_count(&app).await, 1);
}

#[tokio::test]
async fn hmac_defaults_to_sha256_hex_and_a_fixed_type_with_the_body_digest_as_id() {
    let app = spawn_app().await;
    let secret = "plain-hmac";
    let config = json!({
        "verification": {"type": "hmac", "header": "X-Signature", "secret": secret},
        "event_type": {"value": "legacy.ping"}
    });
    let id = create_source(&app, "legacy", config).await;
    let body = br#"{"ping":1}"#;
    let digest = hex(&Sha256::digest(body));
    let sent = headers(&[("x-signature", &hex(&hmac_sha256(secret.as_bytes(), body)))]);
    assert_received(&webhook(&app, &id, &sent, body).await, &digest, false);
    assert_event(&app, &digest, "legacy.ping", body, &id).await;
    let upper = headers(&[("x-signature", &hex(&hmac_sha256(secret.as_bytes(), body)).to_uppercase())]);
    assert_received(&webhook(&app, &id, &upper, body).await, &digest, true);
    let wrong = headers(&[("x-signature", &hex(&hmac_sha256(b"nope", body)))]);
    assert_refused(&webhook(&app, &id, &wrong, body).await, "a wrong secret");
}

#[tokio::test]
async fn basic_authentication_compares_user_and_password() {
    let app = spawn_app().await;
    let config = json!({
        "verification": {"type": "basic", "username": "relay", "password": "hunter2-basic"},
        "event_type": {"header": "X-Event-Name", "prefix": "relay."},
        "event_id": {"header": "X-Message-Id"}
    });
    let id = create_source(&app, "relay", config).await;
    let body = br#"{"n":1}"#;
    let auth = |credentials: &str| format!("Basic {}", STANDARD.encode(credentials));
    let sent = headers(&[
        ("authorization", &auth("relay:hunter2-basic")),
        ("x-event-name", "Order Created"),
        ("x-message-id", "relay-1"),
    ]);
    assert_received(&webhook(&app, &id, &sent, body).await, "relay-1", false);
    assert_event(&app, "relay-1", "relay.order_created", body, &id).await;

    let forgeries = [
        ("a wrong password", with(sent.clone(), "authorization", Some(&auth("relay:hunter3-basic")))),
        ("a wrong user", with(sent.clone(), "authorization", Some(&auth("relax:hunter2-basic")))),
        (
            "the password with a suffix",
            with(sent.clone(), "authorization", Some(&auth("relay:hunter2-basicx"))),
        ),
        ("no Authorization header", with(sent.clone(), "authorization", None)),
        ("a bearer token", with(sent.clone(), "authorization", Some("Bearer hunter2-basic"))),
    ];
    for (what, sent) in forgeries {
        let sent = with(sent, "x-message-id", Some("relay-2"));
        assert_refused(&webhook(&app, &id, &sent, body).await, what);
    }
    assert_eq!(event_count(&app).await, 1);
}

#[tokio::test]
async fn an_api_key_header_must_carry_the_whole_value() {
    let app = spawn_app().await;
    let config = json!({
        "verification": {"type": "api_key", "header": "X-Api-Key", "value": "k_live_0123456789"},
        "event_type": {"jq": ".type"}
    });
    let id = create_source(&app, "keyed", config).await;
    let body = br#"{"type":"user.signed_up","user":"u-1"}"#;
    let digest = hex(&Sha256::digest(body));
    let sent = headers(&[("x-api-key", "k_live_0123456789")]);
    assert_received(&webhook(&app, &id, &sent, body).await, &digest, false);
    assert_event(&app, &digest, "user.signed_up", body, &id).await;

    let other = br#"{"type":"user.signed_up","user":"u-2"}"#;
    for (what, sent) in [
        ("a wrong key", headers(&[("x-api-key", "k_live_0123456780")])),
        ("a prefix of the key", headers(&[("x-api-key", "k_live_012345678")])),
        ("the key and more", headers(&[("x-api-key", "k_live_01234567890")])),
        ("the key in another header", headers(&[("x-api-token", "k_live_0123456789")])),
        ("no key", headers(&[])),
    ] {
        assert_refused(&webhook(&app, &id, &sent, other).await, what);
    }
    assert_eq!(event_count(&app).await, 1);
}

#[tokio::test]
async fn without_verification_the_body_digest_is_the_id_so_the_same_body_is_a_duplicate() {
    let app = spawn_app().await;
    let config = json!({"verification": {"type": "none"}, "event_type": {"value": "open.ping"}});
    let id = create_source(&app, "open", config).await;
    let body = br#"{"hello":"world"}"#;
    let digest = hex(&Sha256::digest(body));

    assert_received(&webhook(&app, &id, &headers(&[]), body).await, &digest, false);
    assert_event(&app, &digest, "open.ping", body, &id).await;
    assert_received(&webhook(&app, &id, &headers(&[]), body).await, &digest, true);
    assert_eq!(event_count(&app).await, 1);

    // The digest is of the bytes: the same JSON written otherwise is another event.
    let spaced = br#"{ "hello": "world" }"#;
    let spaced_digest = hex(&Sha256::digest(spaced));
    assert_received(&webhook(&app, &id, &headers(&[]), spaced).await, &spaced_digest, false);
    assert_eq!(event_count(&app).await, 2);
}

#[tokio::test]
async fn forwarded_headers_are_kept_in_the_events_metadata_by_lowercase_name() {
    let app = spawn_app().await;
    let config = json!({
        "verification": {"type": "github", "secret": GITHUB_SECRET},
        "forward_headers": ["X-GitHub-Hook-ID", "User-Agent", "X-Not-Sent"]
    });
    let id = create_source(&app, "github", config).await;
    let body = br#"{"zen":"Keep it logically awesome."}"#;
    let delivery = "d6a0f4e0-0000-11ef-8000-000000000001";
    let sent = github_headers(GITHUB_SECRET, body, "ping", delivery);
    assert_received(&webhook(&app, &id, &sent, body).await, delivery, false);
    let event = assert_event(&app, delivery, "github.ping", body, &id).await;
    assert_eq!(
        event["metadata"]["headers"],
        json!({"x-github-hook-id": "292430182", "user-agent": "GitHub-Hookshot/044aadd"}),
        "only the named headers that were sent, and never the signature: {event}"
    );

    // A source that forwards nothing adds no headers.
    let plain =
        create_source(&app, "plain", json!({"verification": {"type": "github", "secret": GITHUB_SECRET}}))
            .await;
    let delivery = "d6a0f4e0-0000-11ef-8000-000000000002";
    let sent = github_headers(GITHUB_SECRET, body, "ping", delivery);
    assert_received(&webhook(&app, &plain, &sent, body).await, delivery, false);
    let event = assert_event(&app, delivery, "github.ping", body, &plain).await;
    assert!(event["metadata"].get("headers").is_none(), "{event}");
}

// A credential in `forward_headers` would be kept in clear in every event, readable by viewers:
// the configuration is refused instead.
#[tokio::test]
async fn a_forwarded_credential_header_is_refused() {
    let app = spawn_app().await;
    let key = "k_live_write_only_0123456789";
    let config = json!({
        "verification": {"type": "api_key", "header": "X-Api-Key", "value": key},
        "event_type": {"value": "keyed.ping"},
        "forward_headers": ["X-Api-Key", "X-Request-Id", "authorization"]
    });
    let created =
        app.post("/v1/sources", json!({"name": "keyed", "kind": "webhook", "config": config})).await;
    created.assert_error(400, "validation_error");
    assert_eq!(
        created.detail_fields(),
        ["config.forward_headers[0]", "config.forward_headers[2]"],
        "{}",
        created.body
    );
    assert!(!created.body.to_string().contains(key), "the refusal does not repeat the secret");
    assert_eq!(app.count("/v1/sources").await, 0);
}
