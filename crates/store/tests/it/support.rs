//! A fresh database per test, and builders for the rows the suite writes.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, json};
use sqlx::Connection as _;
use sqlx::sqlite::SqliteConnection;
use switchyard_core::destination::{CircuitBreakerPolicy, Destination, DestinationKind, RetryPolicy};
use switchyard_core::event::{EventId, EventMetadata, EventSource, EventType, NewEvent};
use switchyard_core::id::{DestinationId, SubscriptionId};
use switchyard_core::pattern::EventTypePattern;
use switchyard_core::store::Store;
use switchyard_core::subscription::{Ordering, OrderingOnDead, Subscription};
use switchyard_core::time::Millis;
use switchyard_store::{Database, DatabaseOptions, MasterKeys, connect};
use tempfile::TempDir;

pub const T0: Millis = 1_700_000_000_000;

enum Backend {
    Sqlite { path: PathBuf },
}

/// A migrated, empty database that lives as long as the value.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    pub database: Database,
    /// The master keys `database` seals with.
    pub keys: MasterKeys,
    backend: Backend,
    _dir: TempDir,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("switchyard.db");
        let keys = MasterKeys::generated();
        let database = connect_sqlite(&path, &keys).await;
        database.migrate().await.expect("migrate");
        Self { store: database.store(), database, keys, backend: Backend::Sqlite { path }, _dir: dir }
    }

    /// Another connection to the same database, sealing and opening with `keys`.
    pub async fn reopen(&self, keys: &MasterKeys) -> Database {
        match &self.backend {
            Backend::Sqlite { path } => connect_sqlite(path, keys).await,
        }
    }

    /// The text of the first column of every row `sql` answers, read outside the store: what
    /// the database file holds.
    pub async fn read_outside(&self, sql: &'static str) -> Vec<String> {
        match &self.backend {
            Backend::Sqlite { path } => {
                let url = format!("sqlite://{}", path.display());
                let mut conn = SqliteConnection::connect(&url).await.expect("a side connection");
                let rows: Vec<String> =
                    sqlx::query_scalar(sql).fetch_all(&mut conn).await.expect("side query");
                conn.close().await.expect("close the side connection");
                rows
            }
        }
    }

    /// Runs `sql` on a connection of its own, outside the store, as an operator (or another
    /// process) would.
    pub async fn execute_outside(&self, sql: &'static str) {
        match &self.backend {
            Backend::Sqlite { path } => {
                let url = format!("sqlite://{}", path.display());
                let mut conn = SqliteConnection::connect(&url).await.expect("a side connection");
                sqlx::query(sql).execute(&mut conn).await.expect("side statement");
                conn.close().await.expect("close the side connection");
            }
        }
    }

    /// Makes every insert into `deliveries` fail, to prove ingest is all or nothing.
    pub async fn break_delivery_inserts(&self) {
        match &self.backend {
            Backend::Sqlite { .. } => {
                self.execute_outside(
                    "CREATE TRIGGER fail_deliveries BEFORE INSERT ON deliveries \
                     BEGIN SELECT RAISE(ABORT, 'injected'); END",
                )
                .await
            }
        }
    }

    pub async fn repair_delivery_inserts(&self) {
        match &self.backend {
            Backend::Sqlite { .. } => self.execute_outside("DROP TRIGGER fail_deliveries").await,
        }
    }
}

async fn connect_sqlite(path: &std::path::Path, keys: &MasterKeys) -> Database {
    let options = DatabaseOptions {
        url: format!("sqlite://{}", path.display()),
        max_connections: 4,
        master_keys: keys.clone(),
    };
    connect(&options).await.expect("connect to the SQLite file")
}

pub fn event(id: &str, event_type: &str) -> NewEvent {
    NewEvent {
        event_id: EventId::parse(id).expect("valid event id"),
        event_type: EventType::parse(event_type).expect("valid event type"),
        timestamp: T0 - 5,
        payload: json!({"id": id, "nested": {"n": 1, "list": [1, "two", null]}}),
        metadata: EventMetadata {
            correlation_id: format!("corr-{id}"),
            causation_id: None,
            traceparent: None,
        },
        ordering_key: None,
        source: EventSource::api(),
        content_hash: format!("hash-{id}"),
    }
}

pub fn destination(name: &str) -> Destination {
    Destination {
        id: DestinationId::generate(),
        name: name.to_owned(),
        kind: DestinationKind::Http,
        config: json!({"url": "https://example.com/hook", "method": "POST"}),
        secrets: Map::from_iter([("signing_secret".to_owned(), json!("whsec_c2VjcmV0"))]),
        timeout_ms: 30_000,
        connect_timeout_ms: 5_000,
        retry: RetryPolicy::default(),
        rate_limit: None,
        circuit_breaker: CircuitBreakerPolicy::default(),
        enabled: true,
        version: 1,
        created_at: T0,
        updated_at: T0,
    }
}

pub fn subscription(destination: &DestinationId, patterns: &[&str]) -> Subscription {
    Subscription {
        id: SubscriptionId::generate(),
        name: format!("to {}", patterns.join(",")),
        destination_id: destination.clone(),
        event_types: patterns.iter().map(|p| EventTypePattern::parse(p).expect("valid pattern")).collect(),
        filter: None,
        transform: None,
        ordering: Ordering::None,
        ordering_on_dead: OrderingOnDead::Skip,
        enabled: true,
        version: 1,
        created_at: T0,
        updated_at: T0,
    }
}
