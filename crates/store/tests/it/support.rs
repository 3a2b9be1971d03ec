//! A fresh database per test, and builders for the rows the suite writes.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Map, json};
use sqlx::Connection as _;
use sqlx::sqlite::SqliteConnection;
use switchyard_core::destination::{CircuitBreakerPolicy, Destination, DestinationKind, RetryPolicy};
use switchyard_core::event::{EventId, EventMetadata, EventSource, EventType, NewEvent};
use switchyard_core::id::{DestinationId, SourceId, SubscriptionId};
use switchyard_core::pattern::EventTypePattern;
use switchyard_core::source::{Source, SourceKind};
use switchyard_core::store::Store;
use switchyard_core::subscription::{Ordering, OrderingOnDead, Subscription};
use switchyard_core::time::Millis;
use switchyard_store::{Database, DatabaseOptions, MasterKeys, connect};
use tempfile::TempDir;

pub const T0: Millis = 1_700_000_000_000;

enum Backend {
    Sqlite {
        path: PathBuf,
    },
    /// A schema of its own in the test database, dropped with the value.
    Postgres {
        url: String,
        base_url: String,
        schema: String,
    },
}

/// Where the PostgreSQL tests run: `SWITCHYARD_TEST_POSTGRES_URL`, or the local default.
pub fn postgres_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `url` with every connection's `search_path` set to `schema`.
fn with_search_path(url: &str, schema: &str) -> String {
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}options=-csearch_path%3D{schema}")
}

/// SQLite spellings in the suite's side statements, in PostgreSQL's dialect.
fn in_postgres_dialect(sql: &str) -> String {
    sql.replace("CAST(body AS TEXT)", "convert_from(body, 'UTF8')").replace(" AS BLOB)", " AS BYTEA)")
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

    /// The suite's way in: every backend answers `None` when the test must be skipped.
    pub async fn sqlite_for_suite() -> Option<Self> {
        Some(Self::sqlite().await)
    }

    /// A migrated, empty schema of its own in the test database; `None` (with a loud message)
    /// when PostgreSQL is unreachable, which fails the test under `CI=true` instead.
    pub async fn postgres() -> Option<Self> {
        Self::postgres_in_schema(format!("sy_{:016x}", rand::random::<u64>())).await
    }

    /// [`TestDb::postgres`] in a schema named `schema`, which must not exist yet.
    pub async fn postgres_in_schema(schema: String) -> Option<Self> {
        let base_url = postgres_url();
        let mut admin = match sqlx::PgConnection::connect(&base_url).await {
            Ok(conn) => conn,
            Err(error) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("PostgreSQL at {base_url} is unreachable under CI=true: {error}");
                }
                eprintln!(
                    "\n!!! SKIPPED: PostgreSQL at {base_url} is unreachable ({error}); set \
                     SWITCHYARD_TEST_POSTGRES_URL or start it (scripts/test does) !!!\n"
                );
                return None;
            }
        };
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .expect("create the test schema");
        admin.close().await.expect("close the admin connection");
        let url = with_search_path(&base_url, &schema);
        let keys = MasterKeys::generated();
        let database = connect_url(&url, &keys).await;
        database.migrate().await.expect("migrate");
        Some(Self {
            store: database.store(),
            database,
            keys,
            backend: Backend::Postgres { url, base_url, schema },
            _dir: tempfile::tempdir().expect("a temporary directory"),
        })
    }

    /// Another connection to the same database, sealing and opening with `keys`.
    pub async fn reopen(&self, keys: &MasterKeys) -> Database {
        match &self.backend {
            Backend::Sqlite { path } => connect_sqlite(path, keys).await,
            Backend::Postgres { url, .. } => connect_url(url, keys).await,
        }
    }

    /// Another connection to the same database, its options adjusted by `adjust`.
    pub async fn reopen_with(&self, adjust: impl FnOnce(&mut DatabaseOptions)) -> Database {
        let url = match &self.backend {
            Backend::Sqlite { path } => format!("sqlite://{}", path.display()),
            Backend::Postgres { url, .. } => url.clone(),
        };
        let mut options = options(&url, &self.keys);
        adjust(&mut options);
        connect(&options).await.expect("connect to the test database")
    }

    /// A side connection of PostgreSQL's, in the test's schema.
    pub async fn postgres_side_connection(&self) -> sqlx::PgConnection {
        let Backend::Postgres { url, .. } = &self.backend else { panic!("a PostgreSQL database") };
        sqlx::PgConnection::connect(url).await.expect("a side connection")
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
            Backend::Postgres { url, .. } => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("a side connection");
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(in_postgres_dialect(sql)))
                    .fetch_all(&mut conn)
                    .await
                    .expect("side query");
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
            Backend::Postgres { url, .. } => {
                let mut conn = sqlx::PgConnection::connect(url).await.expect("a side connection");
                sqlx::query(sqlx::AssertSqlSafe(in_postgres_dialect(sql)))
                    .execute(&mut conn)
                    .await
                    .expect("side statement");
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
            Backend::Postgres { .. } => {
                self.execute_outside(
                    "CREATE FUNCTION fail_deliveries() RETURNS trigger LANGUAGE plpgsql \
                     AS $$ BEGIN RAISE EXCEPTION 'injected'; END $$",
                )
                .await;
                self.execute_outside(
                    "CREATE TRIGGER fail_deliveries BEFORE INSERT ON deliveries \
                     FOR EACH ROW EXECUTE FUNCTION fail_deliveries()",
                )
                .await
            }
        }
    }

    /// Makes every insert of an attempt whose error is `poison` fail, with `injected`.
    pub async fn poison_attempts(&self) {
        match &self.backend {
            Backend::Sqlite { .. } => {
                self.execute_outside(
                    "CREATE TRIGGER poison_attempts BEFORE INSERT ON attempts \
                     WHEN NEW.error = 'poison' BEGIN SELECT RAISE(ABORT, 'injected'); END",
                )
                .await
            }
            Backend::Postgres { .. } => {
                self.execute_outside(
                    "CREATE FUNCTION poison_attempts() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                     IF NEW.error = 'poison' THEN RAISE EXCEPTION 'injected'; END IF; \
                     RETURN NEW; END $$",
                )
                .await;
                self.execute_outside(
                    "CREATE TRIGGER poison_attempts BEFORE INSERT ON attempts FOR EACH ROW \
                     EXECUTE FUNCTION poison_attempts()",
                )
                .await
            }
        }
    }

    /// Makes every insert of an event whose id starts with `poison` fail, with `injected`.
    pub async fn poison_events(&self) {
        match &self.backend {
            Backend::Sqlite { .. } => {
                self.execute_outside(
                    "CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.event_id LIKE 'poison%' \
                     BEGIN SELECT RAISE(ABORT, 'injected'); END",
                )
                .await
            }
            Backend::Postgres { .. } => {
                self.execute_outside(
                    "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                     IF NEW.event_id LIKE 'poison%' THEN RAISE EXCEPTION 'injected'; END IF; \
                     RETURN NEW; END $$",
                )
                .await;
                self.execute_outside(
                    "CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison()",
                )
                .await
            }
        }
    }

    pub async fn repair_delivery_inserts(&self) {
        match &self.backend {
            Backend::Sqlite { .. } => self.execute_outside("DROP TRIGGER fail_deliveries").await,
            Backend::Postgres { .. } => {
                self.execute_outside("DROP TRIGGER fail_deliveries ON deliveries").await
            }
        }
    }
}

impl Drop for TestDb {
    /// Drops a PostgreSQL test's schema, from a thread of its own since the test's runtime
    /// is busy dropping this value.
    fn drop(&mut self) {
        let Backend::Postgres { base_url, schema, .. } = &self.backend else {
            return;
        };
        let (base_url, schema, name) = (base_url.clone(), schema.clone(), schema.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async {
                let mut admin = sqlx::PgConnection::connect(&base_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                    .execute(&mut admin)
                    .await?;
                admin.close().await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the test schema {name}; drop it by hand");
        }
    }
}

async fn connect_sqlite(path: &std::path::Path, keys: &MasterKeys) -> Database {
    connect_url(&format!("sqlite://{}", path.display()), keys).await
}

async fn connect_url(url: &str, keys: &MasterKeys) -> Database {
    connect(&options(url, keys)).await.expect("connect to the test database")
}

fn options(url: &str, keys: &MasterKeys) -> DatabaseOptions {
    DatabaseOptions {
        url: url.to_owned(),
        max_connections: 4,
        master_keys: keys.clone(),
        ..DatabaseOptions::default()
    }
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
            request_id: Some(format!("req-{id}")),
            headers: None,
        },
        ordering_key: None,
        source: EventSource::api(),
        publisher: Some(format!("key:key_{id}")),
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

/// A GitHub webhook source, its HMAC secret split out as the API splits it.
pub fn source(name: &str) -> Source {
    Source {
        id: SourceId::generate(),
        name: name.to_owned(),
        kind: SourceKind::Webhook,
        config: json!({"verification": {"type": "github"}, "forward_headers": ["x-github-event"]}),
        secrets: Map::from_iter([("verification.secret".to_owned(), json!(SOURCE_SECRET))]),
        enabled: true,
        version: 1,
        created_at: T0,
        updated_at: T0,
    }
}

/// The secret of [`source`]'s sources, which the database must never hold in clear.
pub const SOURCE_SECRET: &str = "gh-hmac-s3cret-never-in-clear";

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
