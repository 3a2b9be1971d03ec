//! Pull sources end to end: the hub reads an application's outbox table (here) and brokers'
//! queues (`brokers`), through the real API, engine and store.

mod brokers;
mod outbox;
mod outbox_crash;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Connection, SqliteConnection};
use switchyard_outbox::OutboxEvent;

/// An application's own SQLite database with the outbox table, as `switchyard-outbox` makes it.
pub struct AppDatabase {
    pub path: PathBuf,
}

impl AppDatabase {
    pub async fn create(dir: &Path) -> AppDatabase {
        let path = dir.join("app.db");
        let mut conn = SqliteConnection::connect_with(
            &SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
        )
        .await
        .expect("the application's database opens");
        switchyard_outbox::create_table(&mut conn).await.expect("the outbox table");
        conn.close().await.expect("closed");
        AppDatabase { path }
    }

    /// What a source's `database_url` names.
    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    pub async fn connect(&self) -> SqliteConnection {
        let options = SqliteConnectOptions::new().filename(&self.path).busy_timeout(Duration::from_secs(10));
        SqliteConnection::connect_with(&options).await.expect("the application's database opens")
    }

    /// Writes `events` in one transaction, as an application writes them with its business rows.
    pub async fn enqueue(&self, events: &[OutboxEvent]) {
        let mut conn = self.connect().await;
        let mut tx = conn.begin().await.expect("a transaction");
        for event in events {
            switchyard_outbox::enqueue(&mut *tx, event).await.expect("enqueued");
        }
        tx.commit().await.expect("committed");
        conn.close().await.expect("closed");
    }

    pub async fn execute(&self, sql: &'static str) {
        let mut conn = self.connect().await;
        sqlx::raw_sql(sql).execute(&mut conn).await.expect("the statement runs");
        conn.close().await.expect("closed");
    }

    pub async fn rows_left(&self) -> i64 {
        let mut conn = self.connect().await;
        let n = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE relayed_at IS NULL")
            .fetch_one(&mut conn)
            .await
            .expect("counted");
        conn.close().await.expect("closed");
        n
    }

    /// Waits up to `deadline` until no row waits to be relayed.
    pub async fn wait_until_relayed(&self, deadline: Duration) {
        let started = Instant::now();
        loop {
            let left = self.rows_left().await;
            if left == 0 {
                return;
            }
            assert!(started.elapsed() < deadline, "{left} rows still wait after {deadline:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `n` events of `orders` aggregates, ids in the order written: `row-00000`, `row-00001`, …
pub fn order_events(from: usize, to: usize) -> Vec<OutboxEvent> {
    (from..to)
        .map(|i| {
            OutboxEvent::new("order", format!("order-{}", i % 7), "order.created", json!({"i": i}))
                .with_id(format!("row-{i:05}"))
        })
        .collect()
}

/// An outbox source's body over `database_url`, with `extra` merged into its config.
pub fn outbox_source(database_url: &str, extra: Value) -> Value {
    let mut config = json!({"database_url": database_url, "poll_interval_ms": 100});
    for (key, value) in extra.as_object().expect("an object") {
        config[key] = value.clone();
    }
    json!({"name": "orders", "kind": "outbox", "config": config})
}
