//! Secrets at rest: the database file (as `sqlite3 .dump` shows it) and the logs hold no
//! destination secret, the master key is generated owner-only on first run, plaintext left by
//! an earlier version is sealed at start, and `keys rotate-master` reseals everything under a
//! new key.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use switchyard::Config;
use switchyard_store::MasterKey;

use crate::helpers::{TestApp, spawn_app};
use crate::sink::{Behaviour, Received, Sink};

const DEADLINE: Duration = Duration::from_secs(20);
const BEARER: &str = "bearer-token-7Qe2-never-in-clear";
const USERNAME: &str = "svc-user";
const PASSWORD: &str = "basic-password-Vx9-never-in-clear";
const CLIENT_SECRET: &str = "oauth-client-secret-Lm4-never-in-clear";
const API_KEY: &str = "api-key-header-Rw8-never-in-clear";
const TENANT_TOKEN: &str = "tenant-token-header-Jc3-never-in-clear";

/// A valid Standard Webhooks secret: `whsec_` and 32 bytes in base64.
fn signing_secret() -> String {
    format!("whsec_{}", STANDARD.encode(b"encryption-test signing secret!!"))
}

/// Every form in which `secret` could sit in a file: as is, in base64, and as hex (how
/// `sqlite3 .dump` writes a BLOB).
fn forms_of(secret: &str) -> Vec<String> {
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    vec![
        secret.to_owned(),
        STANDARD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        hex.clone(),
        hex.to_uppercase(),
    ]
}

fn all_secrets(extra: &[&str]) -> Vec<String> {
    let basic = format!("{USERNAME}:{PASSWORD}");
    let signing = signing_secret();
    let mut secrets = vec![BEARER, PASSWORD, CLIENT_SECRET, API_KEY, signing.as_str(), basic.as_str()];
    secrets.extend_from_slice(extra);
    secrets.iter().flat_map(|s| forms_of(s)).collect()
}

#[track_caller]
fn assert_holds_none(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!text.contains(secret.as_str()), "{what} holds the secret {secret:?}");
    }
}

/// The database as `sqlite3 .dump` prints it, or `None` (having said so loudly) when `sqlite3`
/// is not installed outside CI. In CI (`CI=true`) a missing `sqlite3` fails the test:
/// `scripts/test` installs it.
fn sqlite3_dump(db: &Path) -> Option<String> {
    match Command::new("sqlite3").arg(db).arg(".dump").output() {
        Ok(out) => {
            assert!(out.status.success(), "sqlite3 .dump failed: {}", String::from_utf8_lossy(&out.stderr));
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "sqlite3 is not installed; CI must install it (scripts/test does: apt-get install sqlite3)"
            );
            eprintln!("\n**** SKIPPED: install sqlite3 to check the database dump for secrets ****\n");
            None
        }
        Err(e) => panic!("sqlite3 could not run: {e}"),
    }
}

/// Whether `request` carries a Standard Webhooks signature made with `secret`.
fn signed_with(request: &Received, secret: &str) -> bool {
    let key = STANDARD.decode(secret.trim_start_matches("whsec_")).expect("base64 secret");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(
        format!("{}.{}.", request.header("webhook-id"), request.header("webhook-timestamp")).as_bytes(),
    );
    mac.update(&request.body);
    let expected = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    request.header("webhook-signature").split(' ').any(|signature| signature == expected)
}

/// The three kinds of destination secret beside a signing secret, each in a destination.
fn secret_bearing_configs(sink_url: &str) -> [Value; 3] {
    [
        json!({"url": sink_url, "signing_secret": signing_secret(),
               "auth": {"type": "bearer", "token": BEARER}, "secret_headers": {"X-API-Key": API_KEY}}),
        json!({"url": sink_url, "auth": {"type": "basic", "username": USERNAME, "password": PASSWORD}}),
        json!({"url": sink_url, "auth": {"type": "oauth2_client_credentials", "token_url": format!("{sink_url}/token"),
               "client_id": "switchyard", "client_secret": CLIENT_SECRET}}),
    ]
}

async fn create_destinations(app: &TestApp, sink_url: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for (i, config) in secret_bearing_configs(sink_url).into_iter().enumerate() {
        let answer = app
            .post(
                "/v1/destinations",
                json!({"name": format!("secretive {i}"), "kind": "http", "config": config}),
            )
            .await;
        answer.assert_status(201);
        ids.push(answer.data()["id"].as_str().expect("an id").to_owned());
    }
    ids
}

#[tokio::test]
async fn the_database_file_holds_no_destination_secret_in_clear() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(204)).await;
    let ids = create_destinations(&app, &sink.url).await;

    // The API shows `<name>_set` flags, never the values.
    let shown: Vec<Value> = shown_destinations(&app, &ids).await;
    assert_eq!(shown[0]["config"]["signing_secret_set"], true);
    assert_eq!(shown[0]["config"]["auth"]["token_set"], true);
    assert_eq!(shown[1]["config"]["auth"]["password_set"], true);
    assert_eq!(shown[2]["config"]["auth"]["client_secret_set"], true);
    assert_holds_none("a GET answer", &Value::Array(shown).to_string(), &all_secrets(&[]));

    // The sealed secrets still authenticate and sign deliveries.
    app.create_subscription(&ids[0], &["#"]).await;
    app.publish(json!({"event_id": "sealed-1", "event_type": "a.b", "payload": {"n": 1}}))
        .await
        .assert_status(201);
    let received = sink.wait_for(DEADLINE, |r| !r.is_empty()).await;
    assert_eq!(received[0].header("authorization"), format!("Bearer {BEARER}"));
    assert!(signed_with(&received[0], &signing_secret()), "signed with the stored secret");
    let secret = app.get(&format!("/v1/destinations/{}/signing-secret", ids[0])).await;
    assert_eq!(secret.data()["signing_secret"], signing_secret());

    // Answers kept for an Idempotency-Key may show a secret: a rotated signing secret, a new
    // API key's token. They are sealed as well.
    let rotated = app
        .send(
            app.request(Method::POST, &format!("/v1/destinations/{}/signing-secret/rotate", ids[0]))
                .header("idempotency-key", "rotate-1"),
        )
        .await;
    rotated.assert_status(200);
    let new_secret = rotated.data()["signing_secret"].as_str().expect("a secret").to_owned();
    let issued = app
        .send(
            app.request(Method::POST, "/v1/api-keys")
                .header("idempotency-key", "key-1")
                .json(&json!({"name": "sealed", "role": "viewer"})),
        )
        .await;
    issued.assert_status(201);
    let token = issued.data()["token"].as_str().expect("a token").to_owned();

    let Some(dump) = sqlite3_dump(&app.db_path) else { return };
    assert!(dump.contains("CREATE TABLE destinations"), "a real dump");
    assert!(dump.contains("'v1:"), "sealed values are in the dump");
    assert_holds_none("the database dump", &dump, &all_secrets(&[&new_secret, &token]));
}

#[tokio::test]
async fn a_secret_header_reaches_the_receiver_and_is_never_shown_or_stored_in_clear() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(204)).await;
    let config = json!({"url": sink.url, "headers": {"X-Team": "billing"},
                        "secret_headers": {"X-API-Key": API_KEY}});
    let created =
        app.post("/v1/destinations", json!({"name": "keyed", "kind": "http", "config": config})).await;
    created.assert_status(201);
    let id = created.data()["id"].as_str().expect("an id").to_owned();
    let path = format!("/v1/destinations/{id}");
    assert_eq!(created.data()["config"]["secret_headers_set"], json!({"X-API-Key": true}));
    assert!(created.data()["config"].get("secret_headers").is_none());

    app.create_subscription(&id, &["#"]).await;
    app.publish(json!({"event_id": "keyed-1", "event_type": "a.b", "payload": {}})).await.assert_status(201);
    let received = sink.wait_for(DEADLINE, |r| !r.is_empty()).await;
    assert_eq!(received[0].header("x-api-key"), API_KEY);
    assert_eq!(received[0].header("x-team"), "billing");

    // PUT keeps the secret headers it leaves out; a merge patch adds one beside them.
    let shown = app.get(&path).await;
    let replaced = app
        .put(&path, json!({"name": "renamed", "kind": "http", "config": shown.data()["config"].clone()}))
        .await;
    replaced.assert_status(200);
    assert_eq!(replaced.data()["config"]["secret_headers_set"], json!({"X-API-Key": true}));
    let patched =
        app.patch(&path, json!({"config": {"secret_headers": {"X-Tenant-Token": TENANT_TOKEN}}})).await;
    patched.assert_status(200);
    assert_eq!(
        patched.data()["config"]["secret_headers_set"],
        json!({"X-API-Key": true, "X-Tenant-Token": true})
    );
    app.publish(json!({"event_id": "keyed-2", "event_type": "a.b", "payload": {}})).await.assert_status(201);
    let received = sink.wait_for(DEADLINE, |r| deliveries_of(r, "keyed-2").len() == 1).await;
    let second = deliveries_of(&received, "keyed-2")[0];
    assert_eq!((second.header("x-api-key"), second.header("x-tenant-token")), (API_KEY, TENANT_TOKEN));

    let answers = [created.body, shown.body, replaced.body, patched.body, app.get(&path).await.body];
    assert_holds_none(
        "the answers",
        &Value::Array(answers.to_vec()).to_string(),
        &all_secrets(&[TENANT_TOKEN]),
    );
    let Some(dump) = sqlite3_dump(&app.db_path) else { return };
    assert!(dump.contains("'v1:"), "sealed values are in the dump");
    assert_holds_none("the database dump", &dump, &all_secrets(&[TENANT_TOKEN]));
}

/// Reads each destination as the API shows it.
async fn shown_destinations(app: &TestApp, ids: &[String]) -> Vec<Value> {
    let mut shown = Vec::new();
    for id in ids {
        let answer = app.get(&format!("/v1/destinations/{id}")).await;
        answer.assert_status(200);
        shown.push(answer.data().clone());
    }
    shown
}

#[tokio::test]
async fn plaintext_secrets_left_by_an_earlier_version_are_sealed_at_start() {
    let dir = tempfile::tempdir().expect("a directory");
    let db = dir.path().join("legacy.db");
    let mut config = Config::default();
    config.database.url = format!("sqlite://{}", db.display());
    switchyard::open_database(&config).await.expect("a first start");
    let pool = sqlx::SqlitePool::connect(&config.database.url).await.expect("the file opens");
    // A destination as a version before sealing wrote it.
    sqlx::query(
        "INSERT INTO destinations (id, name, kind, config, secrets, timeout_ms, connect_timeout_ms, \
         retry, rate_limit, circuit_breaker, enabled, version, created_at, updated_at) \
         VALUES ('dst_legacy', 'legacy', 'http', '{\"url\":\"https://example.com/hook\"}', $1, 30000, \
         5000, '{}', NULL, '{}', 1, 1, 0, 0)",
    )
    .bind(json!({"auth.token": BEARER}).to_string())
    .execute(&pool)
    .await
    .expect("a plaintext row");

    let database = switchyard::open_database(&config).await.expect("the next start");
    let stored: String = sqlx::query_scalar("SELECT secrets FROM destinations WHERE id = 'dst_legacy'")
        .fetch_one(&pool)
        .await
        .expect("the row");
    assert!(stored.starts_with("v1:"), "sealed at start: {stored}");
    assert!(!stored.contains(BEARER));
    let id = switchyard_core::id::DestinationId::from_trusted("dst_legacy");
    let destination = database.store().get_destination(&id).await.expect("readable").expect("there");
    assert_eq!(destination.secrets.get("auth.token"), Some(&json!(BEARER)));
    pool.close().await;
}

// ---- the binary ----------------------------------------------------------------------------

/// A `switchyard` command on the database `hub.db` in `dir`, with no master key in the
/// environment.
fn switchyard(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .current_dir(dir)
        .env_remove("SWITCHYARD_MASTER_KEY")
        .env("SWITCHYARD_DATABASE__URL", format!("sqlite://{}", dir.join("hub.db").display()))
        // The sink listens on loopback, which the SSRF guard refuses by default.
        .env("SWITCHYARD_SECURITY__ALLOW_PRIVATE_DESTINATIONS", "true")
        .env("NO_COLOR", "1");
    command
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("the binary runs");
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    output
}

fn admin_token(dir: &Path) -> String {
    let output = run(switchyard(dir).args(["keys", "create", "--role", "admin"]));
    String::from_utf8(output.stdout).expect("UTF-8").trim().to_owned()
}

struct Node {
    child: Child,
    address: String,
    client: reqwest::Client,
    token: String,
}

impl Node {
    /// `serve` on a free port, its stderr written to `log`.
    async fn start(dir: &Path, token: &str, log: Option<&Path>) -> Node {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("addr").port();
        let mut command = switchyard(dir);
        command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]).stdout(Stdio::null());
        match log {
            Some(path) => {
                command
                    .env("SWITCHYARD_LOG__LEVEL", "debug")
                    .stderr(std::fs::File::create(path).expect("a log file"));
            }
            None => {
                command.env("SWITCHYARD_LOG__LEVEL", "warn").stderr(Stdio::inherit());
            }
        }
        let child = command.spawn().expect("serve starts");
        let node = Node {
            child,
            address: format!("http://127.0.0.1:{port}"),
            client: crate::helpers::http_client(),
            token: token.to_owned(),
        };
        let started = Instant::now();
        while !node.client.get(node.url("/health/ready")).send().await.is_ok_and(|r| r.status().is_success())
        {
            assert!(started.elapsed() < DEADLINE, "the node did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        node
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request.send().await.expect("sent");
        let status = answer.status().as_u16();
        (status, answer.json().await.unwrap_or(Value::Null))
    }

    /// The destinations of [`secret_bearing_configs`], the first subscribed to everything.
    async fn route_to(&self, sink: &Sink) -> Vec<String> {
        let mut ids = Vec::new();
        for config in secret_bearing_configs(&sink.url) {
            let body = json!({"name": "secretive", "kind": "http", "config": config,
                              "retry": {"initial_delay_ms": 50, "jitter": 0.0}});
            let (status, answer) = self.call(Method::POST, "/v1/destinations", Some(body)).await;
            assert_eq!(status, 201, "{answer}");
            ids.push(answer["data"]["id"].as_str().expect("an id").to_owned());
        }
        for id in &ids {
            let body = json!({"name": "all", "destination_id": id, "event_types": ["#"]});
            assert_eq!(self.call(Method::POST, "/v1/subscriptions", Some(body)).await.0, 201);
        }
        ids
    }

    async fn publish(&self, event_id: &str) {
        let body = json!({"event_id": event_id, "event_type": "a.b", "payload": {"n": 1}});
        assert_eq!(self.call(Method::POST, "/v1/events", Some(body)).await.0, 201);
    }

    fn stop(mut self) {
        self.child.kill().expect("SIGKILL is sent");
        self.child.wait().expect("the node is gone");
    }
}

/// Requests to the hook (not the token endpoint) carrying `event_id`.
fn deliveries_of<'a>(received: &'a [Received], event_id: &str) -> Vec<&'a Received> {
    received.iter().filter(|r| r.header("x-event-id") == event_id).collect()
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).expect("the file exists").permissions().mode() & 0o777
}

fn key_in(path: &Path) -> MasterKey {
    MasterKey::from_base64(&std::fs::read_to_string(path).expect("a key file")).expect("a key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_run_generates_an_owner_only_key_and_no_secret_reaches_the_logs() {
    let dir = tempfile::tempdir().expect("a directory");
    let key_file = dir.path().join("hub.key");
    let token = admin_token(dir.path());
    assert!(key_file.exists(), "the key is generated beside the database");
    #[cfg(unix)]
    assert_eq!(mode_of(&key_file), 0o600);
    let key = key_in(&key_file);

    let sink = Sink::start(Behaviour::Status(204)).await;
    let log = dir.path().join("serve.log");
    let node = Node::start(dir.path(), &token, Some(&log)).await;
    node.route_to(&sink).await;
    node.publish("logged-1").await;
    // The bearer and basic destinations deliver; the OAuth one fails to get a token (the sink
    // answers its token request with 204), an error path that must not leak the secret either.
    sink.wait_for(DEADLINE, |r| {
        deliveries_of(r, "logged-1").len() >= 2 && r.iter().any(|r| r.header("x-event-id").is_empty())
    })
    .await;
    // A refused write echoes no secret either.
    let bad = json!({"name": "bad", "kind": "http",
                     "config": {"url": "ftp://nowhere", "auth": {"type": "bearer", "token": BEARER}}});
    let (status, answer) = node.call(Method::POST, "/v1/destinations", Some(bad)).await;
    assert_eq!(status, 400);
    assert_holds_none("an error answer", &answer.to_string(), &all_secrets(&[]));
    node.stop();

    let logged = std::fs::read_to_string(&log).expect("the log");
    assert!(logged.contains("request"), "the log has request lines: {logged}");
    assert_holds_none("the log", &logged, &all_secrets(&[&key.export_base64()]));

    // --print-config shows no key either, even one given in the environment.
    let printed = run(switchyard(dir.path())
        .env("SWITCHYARD_MASTER_KEY", key.export_base64())
        .args(["serve", "--print-config"]));
    assert_holds_none(
        "--print-config",
        &String::from_utf8_lossy(&printed.stdout),
        &forms_of(&key.export_base64()),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_master_reseals_every_secret_under_a_new_key() {
    let dir = tempfile::tempdir().expect("a directory");
    let key_file = dir.path().join("hub.key");
    let token = admin_token(dir.path());
    let old = key_in(&key_file);
    let sink = Sink::start(Behaviour::Status(204)).await;
    let node = Node::start(dir.path(), &token, None).await;
    let ids = node.route_to(&sink).await;
    node.stop();
    let old_prefix = format!("v1:{}:", old.id());
    let db = dir.path().join("hub.db");
    if let Some(dump) = sqlite3_dump(&db) {
        assert!(dump.contains(&old_prefix), "sealed under the first key");
    }

    let rotated = run(switchyard(dir.path()).args(["keys", "rotate-master"]));
    let printed = String::from_utf8(rotated.stdout).expect("UTF-8");
    let new = key_in(&key_file);
    assert_eq!(printed, format!("{}\n", new.id()), "the new key id alone on stdout");
    assert_ne!(new.id(), old.id());
    assert!(!PathBuf::from(format!("{}.new", key_file.display())).exists(), "no staged key is left");
    #[cfg(unix)]
    assert_eq!(mode_of(&key_file), 0o600);
    if let Some(dump) = sqlite3_dump(&db) {
        assert!(!dump.contains(&old_prefix), "nothing is left under the old key");
        assert!(dump.contains(&format!("v1:{}:", new.id())), "sealed under the new key");
        assert_holds_none("the dump after rotation", &dump, &all_secrets(&[]));
    }

    // The new key alone reads and delivers.
    let node = Node::start(dir.path(), &token, None).await;
    let (_, secret) =
        node.call(Method::GET, &format!("/v1/destinations/{}/signing-secret", ids[0]), None).await;
    assert_eq!(secret["data"]["signing_secret"], signing_secret());
    node.publish("rotated-1").await;
    let received = sink.wait_for(DEADLINE, |r| deliveries_of(r, "rotated-1").len() >= 2).await;
    let bearer = deliveries_of(&received, "rotated-1")
        .into_iter()
        .find(|r| r.header("authorization").starts_with("Bearer"))
        .expect("the bearer destination delivered");
    assert_eq!(bearer.header("authorization"), format!("Bearer {BEARER}"));
    assert!(signed_with(bearer, &signing_secret()));
    node.stop();

    // The old key no longer opens anything, and the start says which keys are involved.
    let refused = switchyard(dir.path())
        .env("SWITCHYARD_MASTER_KEY", old.export_base64())
        .arg("migrate")
        .output()
        .expect("runs");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains(new.id().as_str()) && stderr.contains(old.id().as_str()), "{stderr}");
    assert!(!stderr.contains(&old.export_base64()), "{stderr}");
}

#[tokio::test]
async fn rotating_a_key_from_the_environment_writes_the_new_key_to_the_named_file() {
    let dir = tempfile::tempdir().expect("a directory");
    let old = MasterKey::generate();
    let with_key = |key: &MasterKey| {
        let mut command = switchyard(dir.path());
        command.env("SWITCHYARD_MASTER_KEY", key.export_base64());
        command
    };
    run(with_key(&old).arg("migrate"));
    assert!(!dir.path().join("hub.key").exists(), "no key file when the environment holds the key");
    // A secret in clear, which the next start seals under the key in the environment.
    let url = format!("sqlite://{}", dir.path().join("hub.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.expect("the file opens");
    sqlx::query(
        "INSERT INTO destinations (id, name, kind, config, secrets, timeout_ms, connect_timeout_ms, \
         retry, rate_limit, circuit_breaker, enabled, version, created_at, updated_at) \
         VALUES ('dst_env', 'env', 'http', '{}', '{\"auth.token\":\"t\"}', 1, 1, '{}', NULL, '{}', 1, 1, 0, 0)",
    )
    .execute(&pool)
    .await
    .expect("a row");
    pool.close().await;
    run(with_key(&old).arg("migrate"));

    let refused = with_key(&old).args(["keys", "rotate-master"]).output().expect("runs");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--new-key-file"));

    let next = dir.path().join("next.key");
    let rotated = run(with_key(&old).args(["keys", "rotate-master", "--new-key-file"]).arg(&next));
    let new = key_in(&next);
    assert_eq!(String::from_utf8_lossy(&rotated.stdout).trim(), new.id().as_str());
    #[cfg(unix)]
    assert_eq!(mode_of(&next), 0o600);
    run(with_key(&new).arg("migrate"));
    let stale = with_key(&old).arg("migrate").output().expect("runs");
    assert!(!stale.status.success(), "the old key no longer opens the secret");
}
