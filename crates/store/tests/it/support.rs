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
use switchyard_store::{Database, DatabaseOptions, connect};
use tempfile::TempDir;

pub const T0: Millis = 1_700_000_000_000;

enum Backend {
    Sqlite { path: PathBuf },
}

/// A migrated, empty database that lives as long as the value.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    pub database: Database,
    backend: Backend,
    _dir: TempDir,
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("switchyard.db");
        let options = DatabaseOptions { url: format!("sqlite://{}", path.display()), max_connections: 4 };
        let database = connect(&options).await.expect("connect to a fresh SQLite file");
        database.migrate().await.expect("migrate");
        Self { store: database.store(), database, backend: Backend::Sqlite { path }, _dir: dir }
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

pub fn event(id: &str, event_type: &str) -> NewEvent {
    NewEvent {
        event_id: EventId::parse(id).expect("valid event id"),
        event_type: EventType::parse(event_type).expect("valid event type"),
        timestamp: T0 - 5,
        payload: json!({"id": id, "nested": {"n": 1, "list": [1, "two", null]}}),
        metadata: EventMetadata { correlation_id: format!("corr-{id}"), causation_id: None },
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
