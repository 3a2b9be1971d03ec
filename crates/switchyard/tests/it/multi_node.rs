//! Several `switchyard serve` processes on one PostgreSQL database, as a deployment runs them:
//! a node killed with SIGKILL loses nothing and repeats only what it held, a destination's rate
//! limit holds for the cluster, and nodes run with a role that may not change the schema.
//!
//! Each test gets a schema of its own in the database of `SWITCHYARD_TEST_POSTGRES_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`), dropped afterwards. When PostgreSQL is
//! unreachable the tests fail under `CI=true` and are skipped, loudly, otherwise.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use sqlx::Connection as _;

use crate::process::{Node, serve};
use crate::sink::{Behaviour, Sink};

const CONCURRENCY: usize = 32;
/// Short, so the survivors take a killed node's work over quickly; long enough that no attempt
/// of a live node on a loaded machine outlives its lease (which would repeat it).
const LEASE_MS: u64 = 5_000;

fn postgres_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `url` with every connection's `search_path` set to `schema`.
fn with_search_path(url: &str, schema: &str) -> String {
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}options=-csearch_path%3D{schema}")
}

/// `url` logging in as `user` (no password: the test server trusts loopback).
fn as_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

/// A fresh schema, the nodes' shared settings, and the roles made for the test; all dropped
/// with the value.
pub(crate) struct Cluster {
    dir: tempfile::TempDir,
    base_url: String,
    schema: String,
    /// The privileged URL (the test's user), on the schema.
    pub(crate) url: String,
    master_key: String,
    roles: Vec<String>,
    token: Option<String>,
    client: reqwest::Client,
}

impl Cluster {
    /// `None` (with a loud message) when PostgreSQL is unreachable outside CI.
    pub(crate) async fn new() -> Option<Cluster> {
        let base_url = postgres_url();
        let mut admin = match sqlx::PgConnection::connect(&base_url).await {
            Ok(conn) => conn,
            Err(error) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("PostgreSQL at {base_url} is unreachable under CI=true: {error}");
                }
                eprintln!("\n!!! SKIPPED: PostgreSQL at {base_url} is unreachable ({error}) !!!\n");
                return None;
            }
        };
        let schema = format!("sy_{}", unique_suffix());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .expect("create the schema");
        admin.close().await.expect("close");
        // The nodes are killed, not the database server: commits need not wait for the disk.
        let url = format!("{}%20-csynchronous_commit%3Doff", with_search_path(&base_url, &schema));
        // Nodes of one deployment share their master key; a PostgreSQL database has no key file.
        let master_key = base64::engine::general_purpose::STANDARD.encode([7_u8; 32]);
        Some(Cluster {
            dir: tempfile::tempdir().expect("a directory"),
            base_url,
            schema,
            url,
            master_key,
            roles: Vec::new(),
            token: None,
            client: crate::helpers::http_client(),
        })
    }

    /// The binary, configured for this cluster's database as `url`.
    fn command(&self, url: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_switchyard"));
        command
            .current_dir(self.dir.path())
            .env("SWITCHYARD_DATABASE__URL", url)
            .env("SWITCHYARD_MASTER_KEY", &self.master_key)
            .env("SWITCHYARD_ENGINE__LEASE_MS", LEASE_MS.to_string())
            .env("SWITCHYARD_ENGINE__CONCURRENCY", CONCURRENCY.to_string())
            // One destination takes all the load: let it have every slot.
            .env("SWITCHYARD_ENGINE__MAX_IN_FLIGHT_PER_DESTINATION", CONCURRENCY.to_string())
            .env("SWITCHYARD_ENGINE__SHUTDOWN_GRACE_MS", "2000")
            .env("SWITCHYARD_LOG__LEVEL", "warn")
            // The sink listens on loopback, which the SSRF guard refuses by default.
            .env("SWITCHYARD_SECURITY__ALLOW_PRIVATE_DESTINATIONS", "true")
            .env("NO_COLOR", "1");
        command
    }

    fn run(&self, url: &str, args: &[&str]) -> Output {
        self.command(url).args(args).output().expect("the binary runs")
    }

    /// `switchyard migrate`, then an admin key, both with the privileged role.
    pub(crate) fn migrate_and_issue_key(&mut self) {
        let migrated = self.run(&self.url, &["migrate"]);
        assert!(migrated.status.success(), "migrate: {}", String::from_utf8_lossy(&migrated.stderr));
        let output = self.run(&self.url, &["keys", "create", "--role", "admin", "--name", "test"]);
        assert!(output.status.success(), "keys create: {}", String::from_utf8_lossy(&output.stderr));
        self.token = Some(String::from_utf8(output.stdout).expect("UTF-8").trim().to_owned());
    }

    pub(crate) async fn start(&self, node_id: &str) -> Node {
        let mut command = self.command(&self.url);
        command.env("SWITCHYARD_ENGINE__NODE_ID", node_id);
        serve(command).await
    }

    pub(crate) async fn post(&self, node: &Node, path: &str, body: Value) -> Value {
        let answer = self
            .client
            .post(format!("{}{path}", node.address))
            .bearer_auth(self.token.as_deref().expect("an admin key"))
            .json(&body)
            .send()
            .await
            .expect("sent");
        let status = answer.status();
        let body: Value = answer.json().await.expect("JSON");
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// The `data` of a successful GET.
    pub(crate) async fn get(&self, node: &Node, path: &str) -> Value {
        let answer = self
            .client
            .get(format!("{}{path}", node.address))
            .bearer_auth(self.token.as_deref().expect("an admin key"))
            .send()
            .await
            .expect("sent");
        let status = answer.status();
        let body: Value = answer.json().await.expect("JSON");
        assert!(status.is_success(), "{path}: {status} {body}");
        body["data"].clone()
    }

    /// A destination at the sink (with `policy` merged in) and a subscription to everything.
    pub(crate) async fn route_to(&self, node: &Node, sink: &Sink, policy: Value) {
        let mut destination = json!({"name": "sink", "kind": "http", "config": {"url": sink.url},
                                     "retry": {"initial_delay_ms": 50, "jitter": 0.0}});
        for (key, value) in policy.as_object().expect("an object") {
            destination[key] = value.clone();
        }
        let created = self.post(node, "/v1/destinations", destination).await;
        let id = created["data"]["id"].as_str().expect("an id").to_owned();
        self.post(
            node,
            "/v1/subscriptions",
            json!({"name": "all", "destination_id": id, "event_types": ["#"]}),
        )
        .await;
    }

    /// Publishes events `from..to` in one batch through `node`.
    async fn publish(&self, node: &Node, from: usize, to: usize) {
        let events: Vec<Value> = (from..to)
            .map(|i| json!({"event_id": format!("e-{i}"), "event_type": "load.item", "payload": {"i": i}}))
            .collect();
        self.post(node, "/v1/events/batch", json!({"events": events})).await;
    }

    /// Publishes, through `node`, every `of`-th batch of `events` starting with batch `share`.
    async fn publish_share(
        &self,
        node: &Node,
        events: std::ops::Range<usize>,
        batch: usize,
        share: usize,
        of: usize,
    ) {
        for from in events.clone().step_by(batch).skip(share).step_by(of) {
            self.publish(node, from, (from + batch).min(events.end)).await;
        }
    }

    pub(crate) async fn database(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url).await.expect("a connection to the test schema")
    }

    pub(crate) async fn count(&self, sql: &'static str, bind: &str) -> i64 {
        let mut conn = self.database().await;
        let n = sqlx::query_scalar(sql).bind(bind).fetch_one(&mut conn).await.expect("count");
        conn.close().await.expect("close");
        n
    }

    /// Waits up to 20 s until `total` deliveries are recorded as succeeded.
    async fn wait_until_succeeded(&self, total: usize) {
        let started = Instant::now();
        loop {
            let succeeded =
                self.count("SELECT COUNT(*) FROM deliveries WHERE status = $1", "succeeded").await;
            if succeeded == total as i64 {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{succeeded} of {total} recorded as succeeded"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    /// Drops the schema and the roles, from a thread of its own (the test's runtime is busy).
    fn drop(&mut self) {
        let (base_url, schema, roles) = (self.base_url.clone(), self.schema.clone(), self.roles.clone());
        let name = schema.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&base_url).await?;
                let mut statements = vec![format!("DROP SCHEMA {schema} CASCADE")];
                for role in roles {
                    statements.push(format!("DROP OWNED BY {role}"));
                    statements.push(format!("DROP ROLE {role}"));
                }
                for statement in statements {
                    sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await?;
                }
                admin.close().await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test schema {name} or its roles; drop them by hand");
        }
    }
}

fn unique_suffix() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("a clock").as_nanos();
    format!("{:x}_{}", nanos, std::process::id())
}

/// The leases a node holds.
const HELD: &str = "SELECT COUNT(*) FROM deliveries WHERE status = 'in_flight' AND lease_owner = $1";

fn stop(mut node: Node) {
    let _ = node.child.kill();
    let _ = node.child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_everything_and_repeat_only_what_the_killed_one_held() {
    let Some(mut cluster) = Cluster::new().await else { return };
    cluster.migrate_and_issue_key();
    let sink = Sink::start(Behaviour::Status(200)).await;
    let mut nodes = Vec::new();
    for id in ["node-a", "node-b", "node-c"] {
        nodes.push(cluster.start(id).await);
    }
    cluster.route_to(&nodes[0], &sink, json!({})).await;

    let (total, batch) = (10_000, 500);
    let began = Instant::now();
    // The first half through all three nodes at once.
    tokio::join!(
        cluster.publish_share(&nodes[0], 0..total / 2, batch, 0, 3),
        cluster.publish_share(&nodes[1], 0..total / 2, batch, 1, 3),
        cluster.publish_share(&nodes[2], 0..total / 2, batch, 2, 3),
    );
    sink.wait_for(Duration::from_secs(60), |r| r.len() >= 1_000).await;
    // Kill it while it holds leases, so the takeover has something to take over.
    let started = Instant::now();
    while cluster.count(HELD, "node-b").await == 0 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut victim = nodes.remove(1);
    victim.child.kill().expect("SIGKILL is sent");
    victim.child.wait().expect("the node is gone");
    // What the dead node held: its leases expire only after LEASE_MS, so this is the state at
    // the kill.
    let held = cluster
        .count("SELECT COUNT(*) FROM deliveries WHERE status = 'in_flight' AND lease_owner = $1", "node-b")
        .await;
    let at_kill = sink.received().len();
    assert!(at_kill < total, "everything was delivered before the kill; the test proves nothing");

    // The second half through the survivors.
    tokio::join!(
        cluster.publish_share(&nodes[0], total / 2..total, batch, 0, 2),
        cluster.publish_share(&nodes[1], total / 2..total, batch, 1, 2),
    );
    sink.wait_for_distinct(Duration::from_secs(90), total).await;
    let repeated: usize = sink.by_delivery().values().filter(|n| **n > 1).map(|n| n - 1).sum();
    eprintln!(
        "{total} events delivered by three nodes in {:?}; node-b held {held} leases at the kill; \
         {repeated} deliveries were repeated",
        began.elapsed()
    );
    assert!(
        repeated as i64 <= held,
        "{repeated} repeated deliveries, but the killed node held only {held} leases"
    );

    // Every delivery is recorded as succeeded, the dead node's ones by a survivor.
    cluster.wait_until_succeeded(total).await;
    let left = cluster.count("SELECT COUNT(*) FROM deliveries WHERE lease_owner = $1", "node-b").await;
    assert_eq!(left, 0, "the survivors took over every lease of the killed node");
    nodes.into_iter().for_each(stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_takes_over_the_fast_queue_of_a_killed_one() {
    let Some(mut cluster) = Cluster::new().await else { return };
    cluster.migrate_and_issue_key();
    // Slow enough that most of what the victim ingests still waits in its queue at the kill.
    let sink = Sink::start(Behaviour::Slow { delay: Duration::from_millis(300), status: 200 }).await;
    let victim = cluster.start("fast-victim").await;
    let survivor = cluster.start("fast-survivor").await;
    cluster.route_to(&victim, &sink, json!({})).await;
    let total = 600;
    cluster.publish(&victim, 0, total).await;
    sink.wait_for(Duration::from_secs(60), |r| r.len() >= 40).await;
    let mut victim = victim;
    victim.child.kill().expect("SIGKILL is sent");
    victim.child.wait().expect("the node is gone");
    // Leased at ingest to the victim, beyond what it could have been sending: its queue.
    let held = cluster.count(HELD, "fast-victim").await;
    assert!(held > CONCURRENCY as i64, "the victim held {held} leases; its queue was empty");
    assert!(
        sink.received().len() < total,
        "everything was delivered before the kill; the test proves nothing"
    );

    sink.set(Behaviour::Status(200));
    sink.wait_for_distinct(Duration::from_secs(90), total).await;
    let repeated = sink.by_delivery().values().filter(|n| **n > 1).count();
    assert!(repeated <= CONCURRENCY, "{repeated} repeated; the victim was sending at most {CONCURRENCY}");
    cluster.wait_until_succeeded(total).await;
    assert_eq!(
        cluster.count("SELECT COUNT(*) FROM deliveries WHERE lease_owner = $1", "fast-victim").await,
        0
    );
    stop(survivor);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_for_the_three_nodes_together() {
    let Some(mut cluster) = Cluster::new().await else { return };
    cluster.migrate_and_issue_key();
    let sink = Sink::start(Behaviour::Status(204)).await;
    let mut nodes = Vec::new();
    for id in ["rate-a", "rate-b", "rate-c"] {
        nodes.push(cluster.start(id).await);
    }
    // Tokens 200 ms apart: far more than the jitter between a grant and its arrival.
    let (per_second, burst) = (5, 3);
    cluster
        .route_to(&nodes[0], &sink, json!({"rate_limit": {"per_second": per_second, "burst": burst}}))
        .await;
    let total = 48;
    for (i, from) in (0..total).step_by(8).enumerate() {
        cluster.publish(&nodes[i % 3], from, from + 8).await;
    }

    let received = sink.wait_for(Duration::from_secs(40), |r| r.len() >= total).await;
    let mut instants: Vec<Instant> = received.iter().map(|r| r.at).collect();
    instants.sort();
    for (i, start) in instants.iter().enumerate() {
        let in_second =
            instants[i..].iter().take_while(|t| t.duration_since(*start) < Duration::from_secs(1)).count();
        assert!(in_second <= per_second + burst, "{in_second} requests within a second of request {i}");
    }
    // Each node alone would allow the whole rate: three would take a third of the time.
    let span = instants[total - 1].duration_since(instants[0]);
    let least = Duration::from_millis(((total - burst - per_second) * 1_000 / per_second) as u64);
    assert!(span >= least, "{total} requests at {per_second}/s after a burst of {burst} took {span:?}");
    assert_eq!(sink.by_delivery().len(), total, "each event once");
    nodes.into_iter().for_each(stop);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_run_with_a_role_that_may_not_change_the_schema() {
    let Some(mut cluster) = Cluster::new().await else { return };
    let role = format!("sy_runtime_{}", unique_suffix());
    cluster.roles.push(role.clone());
    let mut admin = cluster.database().await;
    for statement in
        [format!("CREATE ROLE {role} LOGIN"), format!("GRANT USAGE ON SCHEMA {} TO {role}", cluster.schema)]
    {
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.expect("role setup");
    }
    let runtime_url = with_search_path(&as_user(&cluster.base_url, &role), &cluster.schema);

    // Before `migrate`, a node of that role refuses to start and says what to do.
    let mut refused = cluster.command(&runtime_url);
    refused.env("SWITCHYARD_ENGINE__NODE_ID", "runtime").stdout(Stdio::null()).stderr(Stdio::piped());
    let mut child = refused.args(["serve", "--listen", "127.0.0.1:0"]).spawn().expect("starts");
    let started = Instant::now();
    while child.try_wait().expect("waits").is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("a node without DDL rights started on an unmigrated schema");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("switchyard migrate"), "{stderr}");
    assert!(!cluster.url.is_empty() && !stderr.contains("panicked"), "{stderr}");

    // The privileged role migrates; the runtime role gets data rights only (README, Deployment).
    cluster.migrate_and_issue_key();
    for statement in [
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {role}", cluster.schema),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {role}", cluster.schema),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.expect("grants");
    }
    admin.close().await.expect("close");

    let mut runtime = sqlx::PgConnection::connect(&runtime_url).await.expect("the runtime role logs in");
    let ddl = sqlx::query("CREATE TABLE not_allowed (x INT)").execute(&mut runtime).await;
    assert!(ddl.is_err(), "the runtime role may not change the schema");
    runtime.close().await.expect("close");

    let mut command = cluster.command(&runtime_url);
    command.env("SWITCHYARD_ENGINE__NODE_ID", "runtime");
    let node = serve(command).await;
    let sink = Sink::start(Behaviour::Status(200)).await;
    cluster.route_to(&node, &sink, json!({})).await;
    cluster.publish(&node, 0, 20).await;
    sink.wait_for(Duration::from_secs(20), |r| r.len() >= 20).await;
    stop(node);
}
