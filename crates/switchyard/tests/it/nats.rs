//! Delivering to NATS JetStream end to end (`NATS_URL`, by default nats://127.0.0.1:4222): a
//! destination written through the API, an event published, the message read back from the
//! stream with the broker's own client.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use serde_json::{Value, json};

use crate::delivery::delivery_with_status;
use crate::helpers::{TestApp, spawn_app};
use crate::process::{Scenario, free_port};

pub(crate) fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// A JetStream context on the test broker, or `None` (said loudly) when it is unreachable
/// outside CI; under `CI=true` an unreachable broker fails the test.
pub(crate) async fn broker() -> Option<jetstream::Context> {
    match async_nats::connect(nats_url()).await {
        Ok(client) => Some(jetstream::new(client)),
        Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("NATS at {} is unreachable under CI=true: {error}", nats_url())
        }
        Err(error) => {
            eprintln!("SKIPPED: NATS at {} is unreachable ({error}); start it to run this test", nats_url());
            None
        }
    }
}

/// A stream of its own for one test: its name and the subject prefix it takes (`<prefix>.>`).
pub(crate) async fn test_stream(jetstream: &jetstream::Context) -> (String, String) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let suffix = format!("{:x}{:x}", std::process::id(), now.as_nanos());
    let (name, prefix) = (format!("SWITCHYARD_IT_{suffix}"), format!("switchyard-it.{suffix}"));
    let config =
        stream::Config { name: name.clone(), subjects: vec![format!("{prefix}.>")], ..Default::default() };
    jetstream.create_stream(config).await.expect("a test stream");
    (name, prefix)
}

async fn messages_in(jetstream: &jetstream::Context, name: &str) -> u64 {
    let mut stream = jetstream.get_stream(name).await.expect("the stream");
    stream.info().await.expect("its info").state.messages
}

#[tokio::test]
async fn a_published_event_reaches_the_stream_of_a_nats_destination() {
    let Some(jetstream) = broker().await else { return };
    let (name, prefix) = test_stream(&jetstream).await;

    let app = spawn_app().await;
    let created = app
        .post(
            "/v1/destinations",
            json!({"name": "broker", "kind": "nats", "config": {"url": nats_url(), "subject": format!("{prefix}.{{event_type}}")}}),
        )
        .await;
    created.assert_status(201);
    let destination = created.data()["id"].as_str().expect("an id").to_owned();
    app.create_subscription(&destination, &["order.*"]).await;
    let payload = json!({"order": 1001, "total": "12.50"});
    app.publish(json!({"event_id": "nats-1", "event_type": "order.created", "payload": payload}))
        .await
        .assert_status(201);

    let delivery = delivery_with_status(&app, "nats-1", "succeeded").await;
    let stream = jetstream.get_stream(&name).await.expect("the stream");
    let message = stream.get_raw_message(1).await.expect("the message");
    assert_eq!(message.subject.as_str(), format!("{prefix}.order.created"));
    assert_eq!(serde_json::from_slice::<Value>(&message.payload).expect("JSON"), payload);
    let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header("Nats-Msg-Id").as_deref(), delivery["id"].as_str(), "the delivery id is the dedup key");
    assert_eq!(header("X-Event-ID").as_deref(), Some("nats-1"));
    assert_eq!(header("X-Event-Type").as_deref(), Some("order.created"));

    // A test send goes the same way.
    let tested = app.post(&format!("/v1/destinations/{destination}/test"), json!({})).await;
    tested.assert_status(200);
    assert_eq!(tested.data()["success"], true, "{}", tested.body);
    assert_eq!(messages_in(&jetstream, &name).await, 2);
    let _ = jetstream.delete_stream(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_leaves_every_event_in_the_stream_exactly_once() {
    let Some(jetstream) = broker().await else { return };
    let (name, prefix) = test_stream(&jetstream).await;
    let scenario = Scenario::new();
    let mut node = scenario.start().await;
    let config = json!({"url": nats_url(), "subject": format!("{prefix}.{{event_type}}")});
    let destination = scenario
        .post(&node, "/v1/destinations", json!({"name": "broker", "kind": "nats", "config": config}))
        .await;
    let id = destination["data"]["id"].as_str().expect("an id").to_owned();
    scenario
        .post(&node, "/v1/subscriptions", json!({"name": "all", "destination_id": id, "event_types": ["#"]}))
        .await;
    let total = 3_000;
    scenario.publish(&node, total).await;
    let started = Instant::now();
    while messages_in(&jetstream, &name).await < 200 {
        assert!(started.elapsed() < Duration::from_secs(60), "nothing reached the stream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.child.kill().expect("SIGKILL is sent");
    node.child.wait().expect("the node is gone");
    let at_kill = messages_in(&jetstream, &name).await;
    assert!(at_kill < total as u64, "everything was delivered before the kill; the test proves nothing");

    let mut restarted = scenario.start().await;
    let started = Instant::now();
    while messages_in(&jetstream, &name).await < total as u64 {
        assert!(started.elapsed() < Duration::from_secs(90), "the stream never had every event");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Deliveries that were in flight at the kill went again; the stream dropped the copies.
    let pending = scenario.get_answer(&restarted, "/v1/deliveries?status=pending").await;
    assert_eq!(pending["data"].as_array().map(Vec::len), Some(0), "{pending}");
    assert_eq!(messages_in(&jetstream, &name).await, total as u64, "one message per delivery");
    restarted.child.kill().expect("stopped");
    let _ = restarted.child.wait();
    let _ = jetstream.delete_stream(&name).await;
}

/// The NATS server binary (`NATS_SERVER_BIN`, by default Debian's), for tests that stop and
/// start a broker of their own; `None` (said loudly) when it is missing outside CI.
fn nats_server_binary() -> Option<PathBuf> {
    let binary =
        PathBuf::from(std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "/usr/sbin/nats-server".into()));
    if binary.is_file() {
        return Some(binary);
    }
    assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "{} is missing under CI=true", binary.display());
    eprintln!("SKIPPED: {} is missing; install nats-server to run this test", binary.display());
    None
}

/// A NATS server of the test's own on a free loopback port, JetStream keeping its streams in
/// a directory of its own, so that the test can stop it and start it again.
struct OwnBroker {
    binary: PathBuf,
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnBroker {
    async fn start(binary: PathBuf) -> OwnBroker {
        let mut broker = OwnBroker {
            binary,
            port: free_port(),
            store: tempfile::tempdir().expect("a directory"),
            child: None,
        };
        broker.restart().await;
        broker
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and store); answers once it takes clients.
    async fn restart(&mut self) {
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let started = Instant::now();
        while async_nats::connect(self.url()).await.is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "nats-server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A client of this server's JetStream; a new one after each restart.
    async fn jetstream(&self) -> jetstream::Context {
        jetstream::new(async_nats::connect(self.url()).await.expect("connected"))
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn circuit_becomes(app: &TestApp, destination: &str, state: &str) {
    let started = Instant::now();
    loop {
        let health = app.get(&format!("/v1/destinations/{destination}/health")).await;
        if health.data()["circuit"]["state"] == state {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the circuit never became {state}: {}",
            health.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn publish_numbered(app: &TestApp, numbers: std::ops::Range<u32>) {
    for n in numbers {
        app.publish(
            json!({"event_id": format!("outage-{n}"), "event_type": "order.created", "payload": {"n": n}}),
        )
        .await
        .assert_status(201);
    }
}

#[tokio::test]
async fn a_broker_that_goes_down_opens_the_circuit_and_gets_every_event_once_when_back() {
    let Some(binary) = nats_server_binary() else { return };
    let mut broker = OwnBroker::start(binary).await;
    let (name, prefix) = test_stream(&broker.jetstream().await).await;
    let app = spawn_app().await;
    let created = app
        .post(
            "/v1/destinations",
            json!({
                "name": "broker", "kind": "nats",
                "config": {"url": broker.url(), "subject": format!("{prefix}.{{event_type}}")},
                "timeout_ms": 1_000, "connect_timeout_ms": 500,
                "retry": {"max_attempts": 100, "initial_delay_ms": 100, "multiplier": 1.5, "jitter": 0.0, "max_delay_ms": 1_000},
                "circuit_breaker": {"consecutive_failures": 3, "cooldown_ms": 500, "max_cooldown_ms": 1_000},
            }),
        )
        .await;
    created.assert_status(201);
    let destination = created.data()["id"].as_str().expect("an id").to_owned();
    app.create_subscription(&destination, &["order.*"]).await;

    publish_numbered(&app, 0..20).await;
    let started = Instant::now();
    while messages_in(&broker.jetstream().await, &name).await < 20 {
        assert!(started.elapsed() < Duration::from_secs(30), "the first events never reached the stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    broker.stop();
    publish_numbered(&app, 20..40).await;
    circuit_becomes(&app, &destination, "open").await;

    broker.restart().await;
    let jetstream = broker.jetstream().await;
    let started = Instant::now();
    while messages_in(&jetstream, &name).await < 40 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the events of the outage never reached the stream"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    circuit_becomes(&app, &destination, "closed").await;
    // Publishes the client buffered during the outage may reach the stream before their
    // attempts, timed out, are retried: the retries then find a duplicate, and succeed.
    let started = Instant::now();
    while app.count("/v1/deliveries?status=succeeded").await < 40 {
        assert!(started.elapsed() < Duration::from_secs(30), "some deliveries never succeeded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(messages_in(&jetstream, &name).await, 40, "one message per event, none repeated");
}
