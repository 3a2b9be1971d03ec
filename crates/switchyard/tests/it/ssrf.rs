//! The SSRF guard at write time: destinations pointing at private, loopback, link-local or
//! metadata addresses are refused with a 400 that names the setting allowing them. (The
//! connect-time half is tested in the adapters crate.)

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};

const SETTING: &str = "security.allow_private_destinations";

/// The acceptance cases: literal loopback, metadata, IPv6 loopback and private addresses, and
/// a name that resolves to loopback (refused as `localhost` even before DNS is asked).
const PRIVATE_URLS: [&str; 6] = [
    "http://127.0.0.1:9000/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:9000/hook",
    "http://10.0.0.1/hook",
    "http://localhost:9000/hook",
    "http://hooks.localhost./in",
];

async fn guarded() -> TestApp {
    spawn_app_with(|config| config.security.allow_private_destinations = false).await
}

fn destination(url: &str) -> Value {
    json!({"name": "internal", "kind": "http", "config": {"url": url}})
}

#[tokio::test]
async fn private_destinations_are_refused_by_default_naming_the_setting() {
    let app = guarded().await;
    for url in PRIVATE_URLS {
        let answer = app.post("/v1/destinations", destination(url)).await;
        answer.assert_error(400, "validation_error");
        assert_eq!(answer.detail_fields(), ["config.url"], "{url}");
        let message = answer.body["error"]["details"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(SETTING), "{url}: {message}");
    }
    assert_eq!(app.count("/v1/destinations").await, 0);
}

#[tokio::test]
async fn a_private_oauth2_token_url_is_refused_too() {
    let app = guarded().await;
    let answer = app
        .post(
            "/v1/destinations",
            json!({"name": "api", "kind": "http", "config": {
                "url": "https://hooks.switchyard.invalid/in",
                "auth": {"type": "oauth2_client_credentials", "token_url": "http://169.254.169.254/token",
                         "client_id": "hub", "client_secret": "s3cret"}
            }}),
        )
        .await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["config.auth.token_url"]);
}

#[tokio::test]
async fn a_destination_cannot_be_moved_to_a_private_address() {
    let app = guarded().await;
    // A public name that does not resolve (yet) is accepted; connecting is checked again later.
    let id = app.create_destination("https://hooks.switchyard.invalid/in").await;
    let path = format!("/v1/destinations/{id}");
    let put = app.put(&path, destination("http://10.0.0.1/hook")).await;
    put.assert_error(400, "validation_error");
    assert_eq!(put.detail_fields(), ["config.url"]);
    let patch = app.patch(&path, json!({"config": {"url": "http://[::ffff:127.0.0.1]/"}})).await;
    patch.assert_error(400, "validation_error");
    assert_eq!(patch.detail_fields(), ["config.url"]);
    let stored = app.get(&path).await;
    assert_eq!(stored.data()["config"]["url"], "https://hooks.switchyard.invalid/in");
    assert_eq!(stored.data()["version"], 1);
}

#[tokio::test]
async fn ipv6_forms_of_refused_v4_addresses_and_documentation_ranges_are_refused() {
    let app = guarded().await;
    for url in [
        "http://[2002:a9fe:a9fe::1]/latest/meta-data/",
        "http://[2001::80ff:fffe]:9000/hook",
        "http://[::ffff:0:a00:1]/hook",
        "https://192.0.2.10/hook",
        "https://198.51.100.7/hook",
        "https://203.0.113.9/hook",
        "https://[2001:db8::1]/hook",
    ] {
        let answer = app.post("/v1/destinations", destination(url)).await;
        answer.assert_error(400, "validation_error");
        assert_eq!(answer.detail_fields(), ["config.url"], "{url}");
        let message = answer.body["error"]["details"][0]["message"].as_str().unwrap_or_default();
        assert!(message.contains(SETTING), "{url}: {message}");
    }
    let id = app.create_destination("https://hooks.switchyard.invalid/in").await;
    let moved = app
        .patch(&format!("/v1/destinations/{id}"), json!({"config": {"url": "http://[2002:7f00:1::1]/"}}))
        .await;
    moved.assert_error(400, "validation_error");
    assert!(moved.body.to_string().contains("6to4 form of 127.0.0.1"), "{}", moved.body);
    assert_eq!(app.count("/v1/destinations").await, 1);
    assert_eq!(app.get(&format!("/v1/destinations/{id}")).await.data()["version"], 1);
}

#[tokio::test]
async fn private_destinations_are_accepted_when_the_setting_allows_them() {
    let app = spawn_app().await;
    for url in PRIVATE_URLS {
        app.post("/v1/destinations", destination(url)).await.assert_status(201);
    }
    assert_eq!(app.count("/v1/destinations").await, PRIVATE_URLS.len() as u64);
}
