//! `spawn_app()`: the real application on a fresh SQLite file and port 0, with typed helpers.

use std::path::PathBuf;
use std::process::{Command, Output};

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use switchyard::Application;
use switchyard::config::Config;
use switchyard_store::Database;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub admin_token: String,
    pub db_path: PathBuf,
    /// The application's own database handle (the same write connection).
    store_database: Database,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    _dir: TempDir,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A client for tests; the process-wide TLS provider must be chosen before any is built.
pub fn http_client() -> reqwest::Client {
    switchyard_adapters::install_crypto_provider();
    reqwest::Client::new()
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db_path = dir.path().join("switchyard.db");
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("a socket address");
    config.database.url = format!("sqlite://{}", db_path.display());
    // The tests' sinks listen on loopback; the SSRF guard's own tests turn this back off.
    config.security.allow_private_destinations = true;
    adjust(&mut config);
    let app = Application::build(config).await.expect("the application builds");
    let address = format!("http://{}", app.local_addr());
    let admin_token = app.first_admin_token().expect("a first admin key on a new database").to_owned();
    let store_database = app.database();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        app.run_until(async {
            let _ = rx.await;
        })
        .await
        .expect("the server runs");
    });
    wait_until_ready(&address).await;
    TestApp {
        address,
        client: http_client(),
        admin_token,
        db_path,
        store_database,
        shutdown: Some(tx),
        server: Some(server),
        _dir: dir,
    }
}

/// Readiness includes the engine, which starts on its own task: wait for it.
async fn wait_until_ready(address: &str) {
    let client = http_client();
    let started = std::time::Instant::now();
    loop {
        let ready = client.get(format!("{address}/health/ready")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the app never became ready");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// A response read whole; every non-204 answer is checked to be a well-formed envelope.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub async fn read(response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("a readable body");
        let body = if status == StatusCode::NO_CONTENT {
            assert!(bytes.is_empty(), "204 must have no body");
            Value::Null
        } else {
            let body: Value = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| panic!("{status}: not JSON: {}", String::from_utf8_lossy(&bytes)));
            assert_envelope(status, &headers, &body);
            body
        };
        Answer { status, headers, body }
    }

    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a failure answer with this status and error code.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "unexpected code; body: {}", self.body);
        self
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.body);
        self
    }

    /// The `field`s of `error.details`.
    pub fn detail_fields(&self) -> Vec<String> {
        self.body["error"]["details"]
            .as_array()
            .map(|d| d.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

#[track_caller]
fn assert_envelope(status: StatusCode, headers: &reqwest::header::HeaderMap, body: &Value) {
    let ok = status.is_success();
    assert_eq!(body["success"], ok, "success flag of a {status}: {body}");
    let metadata = &body["metadata"];
    assert_eq!(metadata["version"], "1.0", "metadata.version: {body}");
    assert!(metadata["timestamp"].is_string(), "metadata.timestamp: {body}");
    let request_id = metadata["request_id"].as_str().unwrap_or_default();
    assert!(!request_id.is_empty(), "metadata.request_id: {body}");
    let header_id = headers.get("x-request-id").and_then(|v| v.to_str().ok());
    if headers.get("idempotent-replayed").is_none() {
        assert_eq!(header_id, Some(request_id), "X-Request-ID header matches the envelope");
    }
    if ok {
        assert!(body.get("data").is_some(), "data of a success: {body}");
        assert!(body.get("error").is_none());
    } else {
        assert!(body["error"]["code"].is_string(), "error.code: {body}");
        assert!(body["error"]["message"].is_string(), "error.message: {body}");
        assert!(body.get("data").is_none());
    }
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "content type of {body}"
    );
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// A request authenticated as the first admin.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_as(&self.admin_token, method, path)
    }

    pub fn request_as(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(token)
    }

    pub async fn send(&self, request: RequestBuilder) -> Answer {
        Answer::read(request.send().await.expect("the request is sent")).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(Method::POST, path).json(&body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Answer {
        self.send(self.request(Method::PUT, path).json(&body)).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(
            self.request(Method::PATCH, path)
                .header("content-type", "application/merge-patch+json")
                .body(body.to_string()),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn publish(&self, event: Value) -> Answer {
        self.post("/v1/events", event).await
    }

    /// Issues a key with `role` and answers its token.
    pub async fn issue_key(&self, role: &str) -> String {
        let answer = self.post("/v1/api-keys", json!({"name": format!("{role} key"), "role": role})).await;
        answer.assert_status(201);
        answer.data()["token"].as_str().expect("a token").to_owned()
    }

    pub async fn create_destination(&self, url: &str) -> String {
        let answer = self
            .post("/v1/destinations", json!({"name": "sink", "kind": "http", "config": {"url": url}}))
            .await;
        answer.assert_status(201);
        answer.data()["id"].as_str().expect("an id").to_owned()
    }

    pub async fn create_subscription(&self, destination_id: &str, patterns: &[&str]) -> String {
        let answer = self
            .post(
                "/v1/subscriptions",
                json!({"name": "route", "destination_id": destination_id, "event_types": patterns}),
            )
            .await;
        answer.assert_status(201);
        answer.data()["id"].as_str().expect("an id").to_owned()
    }

    /// The `total_items` of a numbered listing.
    pub async fn count(&self, path: &str) -> u64 {
        let answer = self.get(path).await;
        answer.assert_status(200);
        answer.body["pagination"]["total_items"].as_u64().expect("total_items")
    }

    /// Caps the database at `pages` pages on the application's own write connection, so that
    /// writes needing more fail as on a full disk; answers the cap in force (at least the pages
    /// in use, so `1` caps it where it stands).
    pub async fn cap_database_pages(&self, pages: u32) -> u32 {
        let Database::Sqlite(sqlite) = &self.store_database else { panic!("a SQLite database") };
        sqlite.cap_writer_pages(pages).await.expect("the cap is set")
    }

    /// A direct connection to the database file, for checks and fault injection the API cannot do.
    pub async fn database(&self) -> sqlx::SqlitePool {
        sqlx::SqlitePool::connect(&format!("sqlite://{}", self.db_path.display()))
            .await
            .expect("the database file opens")
    }
}

/// Runs the `switchyard` binary as a user would, on `database_url`, with stdin closed (not a
/// terminal) and colours off. A synchronous call from a test's runtime would stall an
/// application running on that same runtime, which may hold the database's write lock.
pub fn run_switchyard_blocking(args: &[&str], database_url: &str) -> Output {
    let scratch = tempfile::tempdir().expect("a working directory");
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(scratch.path())
        .env("SWITCHYARD_DATABASE__URL", database_url)
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs")
}

/// [`run_switchyard_blocking`] off the runtime, so an application under test keeps serving.
pub async fn run_switchyard(args: &[&str], database_url: &str) -> Output {
    let args: Vec<String> = args.iter().map(|&arg| arg.to_owned()).collect();
    let database_url = database_url.to_owned();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_switchyard_blocking(&args, &database_url)
    })
    .await
    .expect("the binary's thread")
}
