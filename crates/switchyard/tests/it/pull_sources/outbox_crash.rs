//! The relay of the real binary killed with SIGKILL half-way: on SQLite the node restarts and
//! finishes; on PostgreSQL two nodes share the source, one reads, and when it dies the other
//! takes the source over. Either way every row becomes exactly one event, in the order of the
//! rows, and the table empties.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::Connection as _;

use super::{AppDatabase, order_events, outbox_source};
use crate::multi_node::Cluster;
use crate::process::{Node, Scenario};

const ROWS: usize = 10_000;

/// Waits (up to 60 s) until `left()` drops below `below`; answers what it is then.
async fn wait_below<F, Fut>(below: i64, left: F) -> i64
where
    F: Fn() -> Fut,
    Fut: Future<Output = i64>,
{
    let started = Instant::now();
    loop {
        let n = left().await;
        if n < below {
            return n;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{n} rows still wait");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The row ids, in the order written.
fn row_ids() -> Vec<String> {
    order_events(0, ROWS).into_iter().map(|e| e.id).collect()
}

#[tokio::test]
async fn sqlite_a_relay_killed_half_way_loses_no_row_and_stores_each_once() {
    let scenario = Scenario::new();
    let dir = tempfile::tempdir().expect("a directory");
    let database = AppDatabase::create(dir.path()).await;
    database.enqueue(&order_events(0, ROWS)).await;
    // The same node id after the restart: the node takes its own lease back at once.
    let env = [("SWITCHYARD_ENGINE__NODE_ID", "relay-1")];
    let mut node = scenario.start_with(&env).await;
    scenario.post(&node, "/v1/sources", outbox_source(&database.url(), json!({"batch_size": 100}))).await;

    wait_below(ROWS as i64 - 500, || database.rows_left()).await;
    node.child.kill().expect("SIGKILL is sent");
    node.child.wait().expect("the node is gone");
    assert!(database.rows_left().await > 0, "the node was killed before it relayed every row");

    let _restarted: Node = scenario.start_with(&env).await;
    database.wait_until_relayed(Duration::from_secs(60)).await;
    let hub = sqlx::SqlitePool::connect(&format!("sqlite://{}", scenario.database_path().display()))
        .await
        .expect("the hub's database opens");
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM events WHERE source LIKE 'outbox:%' ORDER BY seq")
            .fetch_all(&hub)
            .await
            .expect("the events");
    assert_eq!(stored, row_ids(), "every row once, in the order written");
}

/// The reader's state on `node` for the only source.
async fn pull_state(cluster: &Cluster, node: &Node) -> Value {
    let status = cluster.get(node, "/v1/status").await;
    status["sources"][0]["pull"].clone()
}

#[tokio::test]
async fn postgres_two_nodes_relay_a_source_once_and_the_survivor_takes_it_over() {
    let Some(mut cluster) = Cluster::new().await else { return };
    cluster.migrate_and_issue_key();
    let mut conn = cluster.database().await;
    switchyard_outbox::create_table(&mut conn).await.expect("the outbox table");
    let mut tx = conn.begin().await.expect("a transaction");
    for event in order_events(0, ROWS) {
        switchyard_outbox::enqueue(&mut *tx, &event).await.expect("enqueued");
    }
    tx.commit().await.expect("committed");
    conn.close().await.expect("closed");
    let rows_left = || cluster.count("SELECT COUNT(*) FROM outbox WHERE id LIKE $1", "row-%");

    let a = cluster.start("node-a").await;
    let b = cluster.start("node-b").await;
    cluster.post(&a, "/v1/sources", outbox_source(&cluster.url, json!({"batch_size": 100}))).await;

    wait_below(ROWS as i64 - 500, rows_left).await;
    let (state_a, state_b) = (pull_state(&cluster, &a).await, pull_state(&cluster, &b).await);
    let (mut reader, survivor, standby) =
        if state_a["state"] == "reading" { (a, b, state_b) } else { (b, a, state_a) };
    assert_eq!(standby["state"], "standby", "one node reads, the other waits: {standby}");
    assert_eq!(standby["accepted"], 0, "{standby}");
    reader.child.kill().expect("SIGKILL is sent");
    reader.child.wait().expect("the node is gone");
    assert!(rows_left().await > 0, "the reader was killed before it relayed every row");

    let started = Instant::now();
    while rows_left().await > 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "the survivor did not finish the relay");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pull_state(&cluster, &survivor).await["state"], "reading");
    let mut conn = cluster.database().await;
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM events WHERE source LIKE 'outbox:%' ORDER BY seq")
            .fetch_all(&mut conn)
            .await
            .expect("the events");
    conn.close().await.expect("closed");
    assert_eq!(stored, row_ids(), "every row once, in the order written");
}
