//! Destination configuration edges: the signing secret's rotation state, which only the rotate
//! action sets, and header and credential forms refused when written because they could only
//! fail (or smuggle a header) later.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const URL: &str = "https://hooks.switchyard.invalid/in";

/// A valid Standard Webhooks secret a client might try to plant.
const PLANTED_SECRET: &str = "whsec_cGxhbnRlZCBzZWNvbmQga2V5IG9mIDMyIGJ5dGVzIQ==";

fn http_destination(config: Value) -> Value {
    json!({"name": "sink", "kind": "http", "config": config})
}

/// `config` with the destination's URL added.
fn with_url(mut config: Value) -> Value {
    config["url"] = json!(URL);
    config
}

/// The destination as stored: its view, and the signing-secret answer.
async fn snapshot(app: &TestApp, id: &str) -> (Value, Value) {
    let shown = app.get(&format!("/v1/destinations/{id}")).await;
    shown.assert_status(200);
    let secret = app.get(&format!("/v1/destinations/{id}/signing-secret")).await;
    secret.assert_status(200);
    (shown.data().clone(), secret.data().clone())
}

#[tokio::test]
async fn only_the_rotation_sets_the_previous_secret_and_writes_keep_it() {
    let app = spawn_app().await;
    let id = app.create_destination(URL).await;
    let path = format!("/v1/destinations/{id}");
    let planted = json!({"previous_signing_secret": PLANTED_SECRET, "previous_signing_secret_expires_at": 1});
    let both = ["config.previous_signing_secret", "config.previous_signing_secret_expires_at"];

    let before = snapshot(&app, &id).await;
    let created = app.post("/v1/destinations", http_destination(with_url(planted.clone()))).await;
    created.assert_error(400, "validation_error");
    assert_eq!(created.detail_fields(), both);
    let patched = app.patch(&path, json!({"config": planted.clone()})).await;
    patched.assert_error(400, "validation_error");
    assert_eq!(patched.detail_fields(), both);
    let replaced = app.put(&path, http_destination(with_url(planted))).await;
    replaced.assert_error(400, "validation_error");
    assert_eq!(replaced.detail_fields(), both);
    assert_eq!(snapshot(&app, &id).await, before, "refused writes change nothing");
    assert_eq!(app.count("/v1/destinations").await, 1);

    let rotated = app.post(&format!("{path}/signing-secret/rotate"), json!({})).await;
    rotated.assert_status(200);
    let expires_at = rotated.data()["previous_secret_expires_at"].clone();
    let (shown, _) = snapshot(&app, &id).await;
    assert_eq!(shown["config"]["previous_signing_secret_set"], true);
    assert_eq!(
        shown["config"]["previous_signing_secret_expires_at"], expires_at,
        "RFC 3339, like the rotation"
    );
    let text = expires_at.as_str().unwrap_or_default();
    assert!(switchyard_core::time::parse_rfc3339(text).is_some() && !text.starts_with("1970"), "{text}");

    // Mid-rotation, an expiry cannot be moved either.
    let rotating = snapshot(&app, &id).await;
    let moved = app
        .patch(&path, json!({"config": {"previous_signing_secret_expires_at": "2099-01-01T00:00:00Z"}}))
        .await;
    moved.assert_error(400, "validation_error");
    assert_eq!(moved.detail_fields(), ["config.previous_signing_secret_expires_at"]);
    assert_eq!(snapshot(&app, &id).await, rotating);

    // A destination read, changed and written back passes, and keeps its rotation.
    let mut config = shown["config"].clone();
    config["method"] = json!("PUT");
    let replaced = app.put(&path, json!({"name": "renamed", "kind": "http", "config": config})).await;
    replaced.assert_status(200);
    let patched = app.patch(&path, json!({"config": {"headers": {"X-Team": "billing"}}})).await;
    patched.assert_status(200);
    let (after, secret) = snapshot(&app, &id).await;
    assert_eq!(after["config"]["method"], "PUT");
    assert_eq!(after["config"]["previous_signing_secret_set"], true);
    assert_eq!(after["config"]["previous_signing_secret_expires_at"], expires_at);
    assert_eq!(secret["previous_secret_expires_at"], expires_at);
    assert_eq!(secret["signing_secret"], rotated.data()["signing_secret"]);
}

/// Each refused form, in `headers`, `secret_headers` or `auth`, with the field it is named by.
fn refused_forms() -> Vec<(Value, String)> {
    let connection = [
        "Transfer-Encoding",
        "Connection",
        "Host",
        "Content-Length",
        "Keep-Alive",
        "Upgrade",
        "TE",
        "Trailer",
    ];
    let mut forms: Vec<(Value, String)> = connection
        .into_iter()
        .chain(["Proxy-Connection"])
        .map(|name| (json!({"headers": {name: "x"}}), format!("config.headers.{name}")))
        .collect();
    let oauth2 = json!({"type": "oauth2_client_credentials", "token_url": "https://idp.switchyard.invalid/t",
                        "client_id": "hub", "client_secret": "s3c\u{0}ret"});
    forms.extend(
        [
            (json!({"headers": {"X-Note": "a\r\nX-Injected: 1"}}), "config.headers.X-Note"),
            (
                json!({"secret_headers": {"transfer-encoding": "chunked"}}),
                "config.secret_headers.transfer-encoding",
            ),
            (
                json!({"secret_headers": {"Webhook-Signature": "v1,x"}}),
                "config.secret_headers.Webhook-Signature",
            ),
            (
                json!({"secret_headers": {"X-API-Key": "k3y\nX-Injected: 1"}}),
                "config.secret_headers.X-API-Key",
            ),
            (json!({"auth": {"type": "bearer", "token": "t0k\r\nX-Injected: 1"}}), "config.auth.token"),
            (
                json!({"auth": {"type": "basic", "username": "svc:admin", "password": "pw"}}),
                "config.auth.username",
            ),
            (
                json!({"auth": {"type": "basic", "username": "svc", "password": "pw\r\n"}}),
                "config.auth.password",
            ),
            (json!({"auth": oauth2}), "config.auth.client_secret"),
            (
                json!({"signing_secret": "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n"}),
                "config.signing_secret",
            ),
        ]
        .map(|(config, field)| (config, field.to_owned())),
    );
    forms
}

#[tokio::test]
async fn header_and_credential_forms_that_could_only_fail_later_are_refused() {
    let app = spawn_app().await;
    let id = app.create_destination(URL).await;
    let path = format!("/v1/destinations/{id}");
    let before = snapshot(&app, &id).await;
    for (config, field) in refused_forms() {
        let created = app.post("/v1/destinations", http_destination(with_url(config.clone()))).await;
        created.assert_error(400, "validation_error");
        assert_eq!(created.detail_fields(), [field.as_str()], "{config}");
        assert!(!created.body.to_string().contains("X-Injected"), "a value is echoed: {}", created.body);
        let patched = app.patch(&path, json!({"config": config.clone()})).await;
        patched.assert_error(400, "validation_error");
        assert_eq!(patched.detail_fields(), [field.as_str()], "{config}");
    }
    assert_eq!(app.count("/v1/destinations").await, 1);
    assert_eq!(snapshot(&app, &id).await, before, "refused writes change nothing");
}
