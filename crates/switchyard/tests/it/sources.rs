//! `/v1/sources`: CRUD for admins only, secrets write-only (kept across a rewrite that leaves
//! them out, as a webhook signed with the old secret proves), ETags, merge patch, the public
//! `url`, validation naming every field, and the audit log.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, spawn_app_with};
use crate::webhooks::{
    GITHUB_SECRET, assert_received, assert_refused, github_headers, headers, webhook, whsec,
};

const BODY: &[u8] = br#"{"zen":"Design for failure."}"#;

async fn create(app: &TestApp, body: Value) -> String {
    let answer = app.post("/v1/sources", body).await;
    answer.assert_status(201);
    answer.data()["id"].as_str().expect("an id").to_owned()
}

fn github_source(secret: &str) -> Value {
    json!({"name": "github", "kind": "webhook", "config": {"verification": {"type": "github", "secret": secret}}})
}

/// A push signed with `secret` as delivery `delivery`: 200, or 401 for a secret the source lacks.
async fn push(app: &TestApp, id: &str, secret: &str, delivery: &str) -> crate::helpers::Answer {
    webhook(app, id, &github_headers(secret, BODY, "push", delivery), BODY).await
}

#[tokio::test]
async fn a_created_source_shows_its_url_and_never_its_secret() {
    let app = spawn_app().await;
    let answer = app.post("/v1/sources", github_source(GITHUB_SECRET)).await;
    answer.assert_status(201);
    let data = answer.data().clone();
    let id = data["id"].as_str().expect("an id").to_owned();
    assert!(id.starts_with("src_"), "{id}");
    assert_eq!(answer.header("location").map(str::to_owned), Some(format!("/v1/sources/{id}")));
    assert_eq!(answer.header("etag"), Some("\"1\""));
    assert_eq!(data["name"], "github");
    assert_eq!(data["kind"], "webhook");
    assert_eq!(data["enabled"], true);
    assert_eq!(data["version"], 1);
    assert_eq!(data["config"]["verification"], json!({"type": "github", "secret_set": true}));
    assert_eq!(data["url"], format!("{}/v1/sources/{id}/webhook", app.address));
    assert!(data["created_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{data}");
    assert_eq!(data["created_at"], data["updated_at"]);

    let read = app.get(&format!("/v1/sources/{id}")).await;
    read.assert_status(200);
    assert_eq!(read.header("etag"), Some("\"1\""));
    assert_eq!(read.data(), &data);
    let listed = app.get("/v1/sources").await;
    listed.assert_status(200);
    assert_eq!(listed.data(), &json!([data]));
    assert_eq!(listed.body["pagination"]["total_items"], 1);
    for (what, text) in [("create", &answer.body), ("get", &read.body), ("list", &listed.body)] {
        assert!(!text.to_string().contains(GITHUB_SECRET), "the {what} answer shows the secret: {text}");
    }

    // The URL given is the one a provider calls.
    let url = data["url"].as_str().expect("a url");
    let mut request = app.client.post(url).body(BODY.to_vec());
    for (name, value) in github_headers(GITHUB_SECRET, BODY, "push", "via-url-1") {
        request = request.header(name, value);
    }
    assert_received(&app.send(request).await, "via-url-1", false);
}

#[tokio::test]
async fn every_kind_of_secret_is_write_only_and_sealed_at_rest() {
    let app = spawn_app().await;
    let sw = whsec(b"sources test: a whsec secret 32!");
    let cases = [
        (json!({"type": "standard_webhooks", "secret": sw}), "secret_set", sw.clone()),
        (
            json!({"type": "stripe", "secret": "whsec_stripe-src-secret"}),
            "secret_set",
            "whsec_stripe-src-secret".into(),
        ),
        (
            json!({"type": "shopify", "secret": "shopify-src-secret"}),
            "secret_set",
            "shopify-src-secret".into(),
        ),
        (
            json!({"type": "hmac", "header": "X-Sig", "secret": "hmac-src-secret"}),
            "secret_set",
            "hmac-src-secret".into(),
        ),
        (
            json!({"type": "basic", "username": "relay", "password": "basic-src-password"}),
            "password_set",
            "basic-src-password".into(),
        ),
        (
            json!({"type": "api_key", "header": "X-Api-Key", "value": "api-key-src-value"}),
            "value_set",
            "api-key-src-value".into(),
        ),
    ];
    for (verification, flag, secret) in &cases {
        let config = json!({"verification": verification, "event_type": {"value": "a.b"}});
        let answer = app.post("/v1/sources", json!({"name": "s", "kind": "webhook", "config": config})).await;
        answer.assert_status(201);
        assert_eq!(answer.data()["config"]["verification"][flag], true, "{}", answer.body);
        assert!(!answer.body.to_string().contains(secret.as_str()), "{}", answer.body);
    }
    let listed = app.get("/v1/sources?per_page=100").await;
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT config, secrets FROM sources")
        .fetch_all(&app.database().await)
        .await
        .expect("rows");
    assert_eq!(rows.len(), cases.len());
    for (_, _, secret) in &cases {
        assert!(!listed.body.to_string().contains(secret.as_str()), "listed: {secret}");
        for (config, secrets) in &rows {
            assert!(
                !config.contains(secret.as_str()) && !secrets.contains(secret.as_str()),
                "in clear at rest: {secret}"
            );
        }
    }
}

#[tokio::test]
async fn put_keeps_a_secret_it_leaves_out_and_replaces_one_it_gives() {
    let app = spawn_app().await;
    let id = create(&app, github_source(GITHUB_SECRET)).await;
    let path = format!("/v1/sources/{id}");
    let shown = app.get(&path).await.data()["config"].clone();

    // The view written back (`secret_set` and all), renamed.
    let replaced = app.put(&path, json!({"name": "renamed", "kind": "webhook", "config": shown})).await;
    replaced.assert_status(200);
    assert_eq!(replaced.header("etag"), Some("\"2\""));
    assert_eq!(replaced.data()["name"], "renamed");
    assert_eq!(replaced.data()["version"], 2);
    assert_eq!(replaced.data()["config"]["verification"]["secret_set"], true);
    // Without the marker too.
    let bare = json!({"verification": {"type": "github"}, "forward_headers": ["User-Agent"]});
    app.put(&path, json!({"name": "renamed", "kind": "webhook", "config": bare})).await.assert_status(200);
    assert_received(&push(&app, &id, GITHUB_SECRET, "kept-1").await, "kept-1", false);

    // A new secret given replaces the old one at once.
    let rotated = json!({"verification": {"type": "github", "secret": "the new secret"}});
    app.put(&path, json!({"name": "renamed", "kind": "webhook", "config": rotated})).await.assert_status(200);
    assert_refused(&push(&app, &id, GITHUB_SECRET, "kept-2").await, "the replaced secret");
    assert_received(&push(&app, &id, "the new secret", "kept-3").await, "kept-3", false);

    // Another scheme starts without the old scheme's secret.
    let other = json!({"verification": {"type": "shopify"}});
    let answer = app.put(&path, json!({"name": "renamed", "kind": "webhook", "config": other})).await;
    answer.assert_error(400, "validation_error");
    assert!(answer.detail_fields().iter().any(|f| f.starts_with("config.verification")), "{}", answer.body);
}

#[tokio::test]
async fn patch_merges_and_a_patched_secret_takes_effect_at_once() {
    let app = spawn_app().await;
    let id = create(&app, github_source(GITHUB_SECRET)).await;
    let path = format!("/v1/sources/{id}");
    let patched = app
        .patch(&path, json!({"name": "org hooks", "config": {"forward_headers": ["X-GitHub-Hook-ID"]}}))
        .await;
    patched.assert_status(200);
    let data = patched.data();
    assert_eq!(data["name"], "org hooks");
    assert_eq!(data["version"], 2);
    assert_eq!(data["config"]["forward_headers"], json!(["X-GitHub-Hook-ID"]));
    assert_eq!(data["config"]["verification"], json!({"type": "github", "secret_set": true}), "untouched");
    assert!(data["updated_at"].as_str() >= data["created_at"].as_str());
    assert_received(&push(&app, &id, GITHUB_SECRET, "patch-1").await, "patch-1", false);
    let event = app.get("/v1/events/patch-1").await;
    assert_eq!(event.data()["metadata"]["headers"], json!({"x-github-hook-id": "292430182"}));

    let rotated = app.patch(&path, json!({"config": {"verification": {"secret": "rotated"}}})).await;
    rotated.assert_status(200);
    assert!(!rotated.body.to_string().contains("rotated\""), "{}", rotated.body);
    assert_refused(&push(&app, &id, GITHUB_SECRET, "patch-2").await, "the old secret after a rotation");
    assert_received(&push(&app, &id, "rotated", "patch-3").await, "patch-3", false);

    let invalid = app.patch(&path, json!({"config": {"event_type": {"jq": ".a |"}}})).await;
    invalid.assert_error(400, "validation_error");
    assert_eq!(invalid.detail_fields(), ["config.event_type.jq"]);
    let removed = app.patch(&path, json!({"config": {"forward_headers": null}})).await;
    removed.assert_status(200);
    assert!(removed.data()["config"].get("forward_headers").is_none(), "{}", removed.body);
    assert_eq!(app.get(&path).await.data()["version"], 4, "the refused patch changed nothing");
}

#[tokio::test]
async fn a_patch_to_another_scheme_does_not_carry_the_old_secret_over() {
    let app = spawn_app().await;
    let id = create(&app, github_source(GITHUB_SECRET)).await;
    let path = format!("/v1/sources/{id}");
    let without = app.patch(&path, json!({"config": {"verification": {"type": "shopify"}}})).await;
    without.assert_error(400, "validation_error");
    assert_eq!(without.detail_fields(), ["config.verification.secret"], "{}", without.body);
    let with = app
        .patch(&path, json!({"config": {"verification": {"type": "shopify", "secret": "shpss_new"}}}))
        .await;
    with.assert_status(200);
    assert_eq!(with.data()["config"]["verification"], json!({"type": "shopify", "secret_set": true}));
}

#[tokio::test]
async fn if_match_guards_every_write_and_delete_ends_the_public_endpoint() {
    let app = spawn_app().await;
    let id = create(&app, github_source(GITHUB_SECRET)).await;
    let path = format!("/v1/sources/{id}");
    app.patch(&path, json!({"name": "v2"})).await.assert_status(200);

    let stale = "\"1\"";
    let put = app
        .send(app.request(Method::PUT, &path).header("if-match", stale).json(&github_source(GITHUB_SECRET)))
        .await;
    put.assert_error(412, "precondition_failed");
    let patch = app
        .send(
            app.request(Method::PATCH, &path)
                .header("if-match", stale)
                .header("content-type", "application/merge-patch+json")
                .body(json!({"name": "late"}).to_string()),
        )
        .await;
    patch.assert_error(412, "precondition_failed");
    let delete = app.send(app.request(Method::DELETE, &path).header("if-match", stale)).await;
    delete.assert_error(412, "precondition_failed");
    assert_eq!(app.get(&path).await.data()["name"], "v2", "nothing stale was written");

    let current = app
        .send(
            app.request(Method::PATCH, &path)
                .header("if-match", "\"2\"")
                .header("content-type", "application/merge-patch+json")
                .body(json!({"name": "v3"}).to_string()),
        )
        .await;
    current.assert_status(200);
    assert_eq!(current.header("etag"), Some("\"3\""));

    assert_received(&push(&app, &id, GITHUB_SECRET, "before-delete").await, "before-delete", false);
    let deleted = app.send(app.request(Method::DELETE, &path).header("if-match", "\"3\"")).await;
    deleted.assert_status(204);
    app.get(&path).await.assert_error(404, "not_found");
    app.delete(&path).await.assert_error(404, "not_found");
    push(&app, &id, GITHUB_SECRET, "after-delete").await.assert_error(404, "not_found");
    assert_eq!(app.count("/v1/sources").await, 0);
    // Its events stay.
    app.get("/v1/events/before-delete").await.assert_status(200);
}

#[tokio::test]
async fn sources_are_listed_in_creation_order_by_page() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let mut body = github_source(GITHUB_SECRET);
        body["name"] = json!(format!("source {n}"));
        ids.push(create(&app, body).await);
    }
    let first = app.get("/v1/sources?per_page=2").await;
    first.assert_status(200);
    let names = |answer: &crate::helpers::Answer| -> Vec<String> {
        answer
            .data()
            .as_array()
            .expect("a list")
            .iter()
            .map(|s| s["id"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(names(&first), ids[..2]);
    assert_eq!(first.body["pagination"]["total_items"], 3);
    let second = app.get("/v1/sources?per_page=2&page=2").await;
    assert_eq!(names(&second), ids[2..]);
    app.get("/v1/sources?per_page=101").await.assert_error(400, "validation_error");
}

/// Posts `config` as a webhook source and answers the detail fields of its 400.
async fn refused_fields(app: &TestApp, kind: &str, config: Value) -> Vec<String> {
    let answer = app.post("/v1/sources", json!({"name": "bad", "kind": kind, "config": config})).await;
    answer.assert_error(400, "validation_error");
    answer.detail_fields()
}

#[tokio::test]
async fn invalid_sources_name_each_field_and_store_nothing() {
    let app = spawn_app().await;
    let github = json!({"verification": {"type": "github", "secret": "s"}});
    assert_eq!(refused_fields(&app, "smtp", github.clone()).await, ["kind"]);
    assert_eq!(
        refused_fields(&app, "webhook", json!({"verification": {"type": "rsa", "key": "k"}})).await,
        ["config.verification.type"]
    );
    let bad_whsec = json!({"verification": {"type": "standard_webhooks", "secret": "not-a-whsec-secret"}});
    assert_eq!(refused_fields(&app, "webhook", bad_whsec).await, ["config.verification.secret"]);
    let short_whsec = json!({"verification": {"type": "standard_webhooks", "secret": whsec(b"too short")}});
    assert_eq!(refused_fields(&app, "webhook", short_whsec).await, ["config.verification.secret"]);
    let hmac_alone = json!({"verification": {"type": "hmac", "header": "X-Sig", "secret": "s"}});
    assert_eq!(refused_fields(&app, "webhook", hmac_alone).await, ["config.event_type"]);
    let bad_jq = json!({"verification": {"type": "none"}, "event_type": {"jq": ".a |"}});
    assert_eq!(refused_fields(&app, "webhook", bad_jq).await, ["config.event_type.jq"]);
    let bad_id_jq = json!({"verification": {"type": "github", "secret": "s"}, "event_id": {"jq": ".id | ("}});
    assert_eq!(refused_fields(&app, "webhook", bad_id_jq).await, ["config.event_id.jq"]);
    let empty_secret = json!({"verification": {"type": "github", "secret": ""}});
    assert_eq!(refused_fields(&app, "webhook", empty_secret).await, ["config.verification.secret"]);
    let unknown_field = json!({"verification": {"type": "none"}, "event_type": {"value": "a"}, "extra": 1});
    assert!(!refused_fields(&app, "webhook", unknown_field).await.is_empty());
    let several = json!({"verification": {"type": "github", "secret": "s"}, "forward_headers": ["ok", "not ok"],
                         "rate_limit": {"per_second": 0}});
    assert_eq!(
        refused_fields(&app, "webhook", several).await,
        ["config.forward_headers[1]", "config.rate_limit.per_second"]
    );
    let answer = app.post("/v1/sources", json!({"name": "", "kind": "webhook"})).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["name", "config"]);
    assert_eq!(app.count("/v1/sources").await, 0);
}

#[tokio::test]
async fn only_admins_manage_sources() {
    let app = spawn_app().await;
    let id = create(&app, github_source(GITHUB_SECRET)).await;
    let path = format!("/v1/sources/{id}");
    for role in ["operator", "viewer"] {
        let token = app.issue_key(role).await;
        let attempts = [
            app.request_as(&token, Method::POST, "/v1/sources").json(&github_source("x")),
            app.request_as(&token, Method::GET, "/v1/sources"),
            app.request_as(&token, Method::GET, &path),
            app.request_as(&token, Method::PUT, &path).json(&github_source("x")),
            app.request_as(&token, Method::PATCH, &path)
                .header("content-type", "application/merge-patch+json")
                .body(r#"{"enabled": false}"#),
            app.request_as(&token, Method::DELETE, &path),
        ];
        for attempt in attempts {
            app.send(attempt).await.assert_error(403, "forbidden");
        }
    }
    app.send(app.client.get(app.url("/v1/sources"))).await.assert_error(401, "unauthorized");
    let shown = app.get(&path).await;
    assert_eq!((shown.data()["version"].as_i64(), shown.data()["enabled"].as_bool()), (Some(1), Some(true)));
    assert_eq!(app.count("/v1/sources").await, 1);
}

#[tokio::test]
async fn a_public_url_names_where_providers_reach_the_hub() {
    let app =
        spawn_app_with(|config| config.server.public_url = Some("https://hooks.example.com".into())).await;
    let answer = app.post("/v1/sources", github_source(GITHUB_SECRET)).await;
    answer.assert_status(201);
    let id = answer.data()["id"].as_str().expect("an id");
    let expected = format!("https://hooks.example.com/v1/sources/{id}/webhook");
    assert_eq!(answer.data()["url"], expected);
    assert_eq!(app.get(&format!("/v1/sources/{id}")).await.data()["url"], expected);
    assert_eq!(app.get("/v1/sources").await.data()[0]["url"], expected);
    // The Host a client used does not matter then.
    let read =
        app.send(app.request(Method::GET, &format!("/v1/sources/{id}")).header("host", "evil.example")).await;
    assert_eq!(read.data()["url"], expected);
}

#[tokio::test]
async fn writes_are_audited_but_webhooks_are_not() {
    let app = spawn_app().await;
    let id = create(&app, github_source(GITHUB_SECRET)).await;
    let path = format!("/v1/sources/{id}");
    app.patch(&path, json!({"name": "renamed"})).await.assert_status(200);
    assert_received(&push(&app, &id, GITHUB_SECRET, "not-audited-1").await, "not-audited-1", false);
    assert_refused(&push(&app, &id, "wrong", "not-audited-2").await, "a forgery");
    webhook(&app, &id, &headers(&[]), b"[]").await.assert_error(401, "unauthorized");
    app.delete(&path).await.assert_status(204);

    let log = app.get("/v1/audit-log?per_page=100").await;
    log.assert_status(200);
    let actions: Vec<(&str, &str)> = log
        .data()
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["resource"]["type"] == "source")
        .map(|e| (e["action"].as_str().unwrap_or(""), e["resource"]["id"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        actions,
        [("source.create", id.as_str()), ("source.update", id.as_str()), ("source.delete", id.as_str())]
    );
    let text = log.body.to_string();
    assert!(!text.contains("webhook"), "no webhook request is audited: {text}");
    assert!(!text.contains(GITHUB_SECRET), "no body is recorded");
}
