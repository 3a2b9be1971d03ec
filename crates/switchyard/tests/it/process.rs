//! The real binary as a separate process: `kill -9` and SIGTERM under load lose nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::sink::{Behaviour, Sink};

const CONCURRENCY: usize = 32;

pub struct Node {
    pub child: Child,
    pub address: String,
}

impl Drop for Node {
    /// A test that fails half-way leaves no node running behind it.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    listener.local_addr().expect("an address").port()
}

fn switchyard(db: &Path, dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
    command
        .current_dir(dir)
        .env("SWITCHYARD_DATABASE__URL", format!("sqlite://{}", db.display()))
        .env("SWITCHYARD_ENGINE__LEASE_MS", "1500")
        .env("SWITCHYARD_ENGINE__CONCURRENCY", CONCURRENCY.to_string())
        .env("SWITCHYARD_ENGINE__SHUTDOWN_GRACE_MS", "5000")
        .env("SWITCHYARD_LOG__LEVEL", "warn")
        // The sink listens on loopback, which the SSRF guard refuses by default.
        .env("SWITCHYARD_SECURITY__ALLOW_PRIVATE_DESTINATIONS", "true")
        .env("NO_COLOR", "1");
    command
}

fn admin_token(db: &Path, dir: &Path) -> String {
    let output = switchyard(db, dir)
        .args(["keys", "create", "--role", "admin", "--name", "test"])
        .output()
        .expect("runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8").trim().to_owned()
}

async fn start(db: &Path, dir: &Path) -> Node {
    serve(switchyard(db, dir)).await
}

/// Runs `serve` with `command` on a free loopback port; answers once the node is ready.
pub async fn serve(mut command: Command) -> Node {
    let port = free_port();
    let child = command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serve starts");
    let address = format!("http://127.0.0.1:{port}");
    let client = crate::helpers::http_client();
    let started = Instant::now();
    while client
        .get(format!("{address}/health/ready"))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(started.elapsed() < Duration::from_secs(20), "the node did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Node { child, address }
}

/// A database file of its own, an admin token for it, and nodes of the real binary serving it.
pub struct Scenario {
    _dir: tempfile::TempDir,
    db: PathBuf,
    token: String,
    client: reqwest::Client,
}

impl Scenario {
    pub fn new() -> Scenario {
        let dir = tempfile::tempdir().expect("a directory");
        let db = dir.path().join("switchyard.db");
        let token = admin_token(&db, dir.path());
        Scenario { _dir: dir, db, token, client: crate::helpers::http_client() }
    }

    /// The hub's database file.
    pub fn database_path(&self) -> &Path {
        &self.db
    }

    pub async fn start(&self) -> Node {
        start(&self.db, self._dir.path()).await
    }

    /// Starts a node with these environment variables on top of the usual ones.
    pub async fn start_with(&self, env: &[(&str, &str)]) -> Node {
        let mut command = switchyard(&self.db, self._dir.path());
        command.envs(env.iter().copied());
        serve(command).await
    }

    /// The `data` of a successful GET.
    pub async fn get(&self, node: &Node, path: &str) -> Value {
        self.get_answer(node, path).await["data"].clone()
    }

    /// The whole answer of a successful GET (envelope included).
    pub async fn get_answer(&self, node: &Node, path: &str) -> Value {
        let answer = self
            .client
            .get(format!("{}{path}", node.address))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("sent");
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        answer.json().await.expect("JSON")
    }

    pub async fn post(&self, node: &Node, path: &str, body: Value) -> Value {
        let answer = self
            .client
            .post(format!("{}{path}", node.address))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("sent");
        assert!(answer.status().is_success(), "{path}: {}", answer.status());
        answer.json().await.expect("JSON")
    }

    /// A destination at the sink and a subscription to everything.
    pub async fn route_to(&self, node: &Node, sink: &Sink) {
        self.route_to_url(node, &sink.url).await;
    }

    /// A destination at `url` and a subscription to everything.
    pub async fn route_to_url(&self, node: &Node, url: &str) {
        let destination = self
            .post(
                node,
                "/v1/destinations",
                json!({"name": "sink", "kind": "http", "config": {"url": url},
                                                   "retry": {"initial_delay_ms": 50, "jitter": 0.0}}),
            )
            .await;
        let id = destination["data"]["id"].as_str().expect("an id").to_owned();
        self.post(
            node,
            "/v1/subscriptions",
            json!({"name": "all", "destination_id": id, "event_types": ["#"]}),
        )
        .await;
    }

    pub async fn publish(&self, node: &Node, count: usize) {
        for chunk in 0..count.div_ceil(1000) {
            let events: Vec<Value> = (chunk * 1000..((chunk + 1) * 1000).min(count))
                .map(
                    |i| json!({"event_id": format!("e-{i}"), "event_type": "load.item", "payload": {"i": i}}),
                )
                .collect();
            self.post(node, "/v1/events/batch", json!({"events": events})).await;
        }
    }
}

/// Waits until every one of `count` deliveries reached the sink; answers how many arrived twice or more.
async fn all_delivered(sink: &Sink, count: usize) -> usize {
    sink.wait_for_distinct(Duration::from_secs(90), count).await;
    sink.by_delivery().values().filter(|n| **n > 1).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_loses_nothing_and_repeats_only_what_was_in_flight() {
    let scenario = Scenario::new();
    let sink = Sink::start(Behaviour::Status(200)).await;
    let mut node = scenario.start().await;
    scenario.route_to(&node, &sink).await;
    let total = 5_000;
    scenario.publish(&node, total).await;
    sink.wait_for(Duration::from_secs(60), |r| r.len() >= 500).await;
    node.child.kill().expect("SIGKILL is sent");
    node.child.wait().expect("the node is gone");
    let at_kill = sink.received().len();
    assert!(at_kill < total, "everything was delivered before the kill; the test proves nothing");

    let mut restarted = scenario.start().await;
    let repeated = all_delivered(&sink, total).await;
    assert!(
        repeated <= CONCURRENCY,
        "{repeated} deliveries arrived twice; at most {CONCURRENCY} were in flight"
    );
    restarted.child.kill().expect("stopped");
    let _ = restarted.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_within_the_grace_period_and_loses_nothing() {
    let scenario = Scenario::new();
    let sink = Sink::start(Behaviour::Status(200)).await;
    let mut node = scenario.start().await;
    scenario.route_to(&node, &sink).await;
    let total = 3_000;
    scenario.publish(&node, total).await;
    sink.wait_for(Duration::from_secs(60), |r| r.len() >= 300).await;
    let pid = node.child.id().to_string();
    let signalled = Instant::now();
    let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(status.success());
    let exit = loop {
        if let Some(exit) = node.child.try_wait().expect("waits") {
            break exit;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "the node did not stop within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "the node exited with {exit}");
    let at_stop = sink.received().len();
    assert!(at_stop < total, "everything was delivered before SIGTERM; the test proves nothing");

    let mut restarted = scenario.start().await;
    let repeated = all_delivered(&sink, total).await;
    assert_eq!(repeated, 0, "a drained shutdown repeats nothing");
    restarted.child.kill().expect("stopped");
    let _ = restarted.child.wait();
}
