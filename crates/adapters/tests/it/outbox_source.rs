//! The `outbox` source on a real SQLite file and the real PostgreSQL
//! (`SWITCHYARD_TEST_POSTGRES_URL`, else `postgres://postgres@127.0.0.1:5432/test`; skipped,
//! loudly, when unreachable unless `CI=true`). Rows are written by the `switchyard-outbox`
//! crate, as an application writes them. Each PostgreSQL test has a schema of its own.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};
use switchyard_adapters::sources::outbox::OutboxPuller;
use switchyard_core::id::SourceId;
use switchyard_core::source::pull::{Consumer, Pulled, Puller};
use switchyard_core::source::{Source, SourceKind};
use switchyard_core::time::now_millis;
use switchyard_outbox::{OutboxEvent, create_table, enqueue};

fn postgres_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// An application database with the outbox table, and a connection to write it.
enum TestDb {
    Sqlite { conn: SqliteConnection, url: String, _dir: tempfile::TempDir },
    Postgres { conn: PgConnection, url: String, schema: String },
}

impl TestDb {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("app.db");
        let mut conn =
            SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", file.display())).await.expect("open");
        create_table(&mut conn).await.expect("the outbox table");
        Self::Sqlite { conn, url: format!("sqlite://{}", file.display()), _dir: dir }
    }

    /// `None` (said loudly) when PostgreSQL is unreachable outside CI.
    async fn postgres() -> Option<Self> {
        let url = postgres_url();
        let mut admin = match PgConnection::connect(&url).await {
            Ok(admin) => admin,
            Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("PostgreSQL at {url} is unreachable under CI=true: {error}")
            }
            Err(error) => {
                eprintln!("\n!!! SKIPPED: PostgreSQL at {url} is unreachable ({error}) !!!\n");
                return None;
            }
        };
        let schema = format!("outbox_source_{:016x}", rand::random::<u64>());
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .expect("a schema");
        let joiner = if url.contains('?') { '&' } else { '?' };
        let scoped = format!("{url}{joiner}options=-csearch_path%3D{schema}");
        let mut conn = PgConnection::connect(&scoped).await.expect("connect");
        create_table(&mut conn).await.expect("the outbox table");
        Some(Self::Postgres { conn, url, schema })
    }

    /// A configuration of this database's outbox table (schema-qualified on PostgreSQL),
    /// with `extra` fields.
    fn config(&self, extra: Value) -> Value {
        let mut config = match self {
            Self::Sqlite { url, .. } => json!({"database_url": url}),
            Self::Postgres { url, schema, .. } => {
                json!({"database_url": url, "table": format!("{schema}.outbox")})
            }
        };
        if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
            config.extend(extra);
        }
        config
    }

    async fn enqueue(&mut self, event: &OutboxEvent) {
        match self {
            Self::Sqlite { conn, .. } => enqueue(conn, event).await.expect("enqueued"),
            Self::Postgres { conn, .. } => enqueue(conn, event).await.expect("enqueued"),
        }
    }

    /// Runs `sql` (a statement of this test's own text).
    async fn execute(&mut self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Self::Sqlite { conn, .. } => sqlx::raw_sql(sql).execute(conn).await.map(drop),
            Self::Postgres { conn, .. } => sqlx::raw_sql(sql).execute(conn).await.map(drop),
        }
        .expect("executed");
    }

    /// The ids that `sql` (one text column) answers.
    async fn ids(&mut self, sql: &str) -> Vec<String> {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Self::Sqlite { conn, .. } => sqlx::query_scalar(sql).fetch_all(conn).await,
            Self::Postgres { conn, .. } => sqlx::query_scalar(sql).fetch_all(conn).await,
        }
        .expect("queried")
    }

    async fn cleanup(self) {
        if let Self::Postgres { mut conn, schema, .. } = self {
            let drop_schema = AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE"));
            sqlx::raw_sql(drop_schema).execute(&mut conn).await.expect("dropped");
        }
    }
}

/// A source validated by the puller, as the API stores it.
async fn source(config: Value) -> Source {
    let validated = OutboxPuller::new().validate(config).await.expect("a valid configuration");
    stored_source(validated.config, Value::Object(validated.secrets))
}

fn stored_source(config: Value, secrets: Value) -> Source {
    let Value::Object(secrets) = secrets else { panic!("secrets are an object") };
    Source {
        id: SourceId::generate(),
        name: "orders".into(),
        kind: SourceKind::Outbox,
        config,
        secrets,
        enabled: true,
        version: 1,
        created_at: 0,
        updated_at: 0,
    }
}

async fn consumer(config: Value) -> Box<dyn Consumer> {
    OutboxPuller::new().connect(&source(config).await).await.expect("connected")
}

fn order_created(n: u32) -> OutboxEvent {
    OutboxEvent::new("order", format!("ord-{n}"), "order.created", json!({"order_id": n}))
        .with_id(format!("evt-{n}"))
}

fn ids_of(batch: &[Pulled]) -> Vec<&str> {
    batch.iter().map(|p| p.event_id.as_deref().unwrap_or("-")).collect()
}

fn positions(batch: &[Pulled]) -> Vec<u64> {
    batch.iter().map(|p| p.position).collect()
}

async fn fields_refused(config: Value) -> Vec<String> {
    let refused = OutboxPuller::new().validate(config).await.expect_err("refused");
    refused.0.into_iter().map(|e| e.field).collect()
}

/// Each scenario runs on a SQLite file and on PostgreSQL.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario(super::TestDb::sqlite().await).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test]
                async fn $scenario() {
                    let Some(db) = super::TestDb::postgres().await else { return };
                    super::$scenario(db).await;
                }
            )*
        }
    };
}

on_both!(
    validation_fills_in_defaults,
    validation_names_the_missing_table_and_columns,
    rows_are_read_in_order_in_batches_and_committed_ones_deleted,
    mark_mode_marks_only_the_committed_rows,
    a_row_that_is_not_an_event_stays_and_the_rows_after_it_go,
);

async fn validation_fills_in_defaults(db: TestDb) {
    let raw = db.config(json!({"columns": {"id": "id", "payload": "payload"}, "batch_size": 10}));
    let validated = OutboxPuller::new().validate(raw.clone()).await.expect("valid");
    let mut expected = json!({
        "columns": {
            "id": "id", "aggregate_type": "aggregatetype", "aggregate_id": "aggregateid",
            "event_type": "type", "payload": "payload", "created_at": "created_at",
        },
        "table": "outbox", "after_relay": "delete", "mark_column": "relayed_at",
        "batch_size": 10, "poll_interval_ms": 500, "sequence_column": null,
    });
    for field in ["database_url", "table"] {
        if let Some(value) = raw.get(field) {
            expected[field] = value.clone();
        }
    }
    assert_eq!(validated.config, expected);
    assert!(validated.secrets.is_empty());
    // Validated again as stored: the same.
    let again = OutboxPuller::new().validate(validated.config.clone()).await.expect("valid");
    assert_eq!(again, validated);
    db.cleanup().await;
}

async fn validation_names_the_missing_table_and_columns(db: TestDb) {
    let missing_table = match &db {
        TestDb::Sqlite { .. } => json!("nowhere"),
        TestDb::Postgres { schema, .. } => json!(format!("{schema}.nowhere")),
    };
    assert_eq!(fields_refused(db.config(json!({"table": missing_table}))).await, ["config.table"]);
    assert_eq!(
        fields_refused(db.config(json!({"columns": {"payload": "body", "aggregate_id": "key"}}))).await,
        ["config.columns.aggregate_id", "config.columns.payload"]
    );
    assert_eq!(
        fields_refused(db.config(json!({"after_relay": "mark", "mark_column": "done_at"}))).await,
        ["config.mark_column"]
    );
    assert_eq!(
        fields_refused(db.config(json!({"sequence_column": "seq"}))).await,
        ["config.sequence_column"]
    );
    // The column need not exist in delete mode.
    OutboxPuller::new().validate(db.config(json!({"mark_column": "done_at"}))).await.expect("valid");
    db.cleanup().await;
}

async fn rows_are_read_in_order_in_batches_and_committed_ones_deleted(mut db: TestDb) {
    for n in 1..=5 {
        db.enqueue(&order_created(n)).await;
    }
    let mut consumer = consumer(db.config(json!({"batch_size": 2}))).await;
    assert_eq!(consumer.backlog().await, Some(5));

    let first = consumer.next_batch().await.expect("a batch");
    assert_eq!(ids_of(&first), ["evt-1", "evt-2"]);
    assert_eq!(positions(&first), [0, 1]);
    let one = &first[0];
    assert_eq!(one.event_type.as_deref(), Some("order.created"));
    assert_eq!(one.ordering_key.as_deref(), Some("ord-1"));
    let body: Value = serde_json::from_slice(&one.body).expect("the payload is JSON");
    assert_eq!(body, json!({"order_id": 1}));
    let written_at = one.written_at.expect("created_at is read");
    assert!((now_millis() - written_at).abs() < 60_000, "written at {written_at}");

    consumer.acknowledge(&[0, 1], &[]).await.expect("acknowledged");
    assert_eq!(db.ids("SELECT id FROM outbox ORDER BY id").await, ["evt-3", "evt-4", "evt-5"]);

    let second = consumer.next_batch().await.expect("a batch");
    assert_eq!(ids_of(&second), ["evt-3", "evt-4"]);
    assert_eq!(positions(&second), [0, 1]);
    // Only the committed one goes; the other is read again.
    consumer.acknowledge(&[1], &[]).await.expect("acknowledged");
    assert_eq!(db.ids("SELECT id FROM outbox ORDER BY id").await, ["evt-3", "evt-5"]);
    let third = consumer.next_batch().await.expect("a batch");
    assert_eq!(ids_of(&third), ["evt-3", "evt-5"]);
    consumer.acknowledge(&[0, 1], &[]).await.expect("acknowledged");
    assert!(consumer.next_batch().await.expect("a batch").is_empty());
    assert_eq!(consumer.backlog().await, Some(0));
    consumer.close().await;
    db.cleanup().await;
}

async fn mark_mode_marks_only_the_committed_rows(mut db: TestDb) {
    for n in 1..=3 {
        db.enqueue(&order_created(n)).await;
    }
    let mut consumer = consumer(db.config(json!({"after_relay": "mark"}))).await;
    let batch = consumer.next_batch().await.expect("a batch");
    assert_eq!(ids_of(&batch), ["evt-1", "evt-2", "evt-3"]);
    consumer.acknowledge(&[0, 2], &[]).await.expect("acknowledged");
    let marked = db.ids("SELECT id FROM outbox WHERE relayed_at IS NOT NULL ORDER BY id").await;
    assert_eq!(marked, ["evt-1", "evt-3"]);
    assert_eq!(db.ids("SELECT id FROM outbox ORDER BY id").await.len(), 3, "nothing is deleted");
    let again = consumer.next_batch().await.expect("a batch");
    assert_eq!(ids_of(&again), ["evt-2"]);
    consumer.acknowledge(&[0], &[]).await.expect("acknowledged");
    assert!(consumer.next_batch().await.expect("a batch").is_empty());
    assert_eq!(consumer.backlog().await, Some(0));
    consumer.close().await;
    db.cleanup().await;
}

async fn a_row_that_is_not_an_event_stays_and_the_rows_after_it_go(mut db: TestDb) {
    // An array is not an event; the outbox crate refuses it, so it is written by hand.
    db.execute(
        "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) \
         VALUES ('evt-0', 'order', 'ord-0', 'order.created', '[1]')",
    )
    .await;
    for n in 1..=2 {
        db.enqueue(&order_created(n)).await;
    }
    let mut consumer = consumer(db.config(json!({"batch_size": 1, "poll_interval_ms": 50}))).await;
    let bad = consumer.next_batch().await.expect("a batch");
    assert_eq!(ids_of(&bad), ["evt-0"]);
    assert_eq!(bad[0].body, b"[1]");
    consumer.acknowledge(&[], &[0]).await.expect("acknowledged");

    let mut read = Vec::new();
    for _ in 0..4 {
        let batch = consumer.next_batch().await.expect("a batch");
        read.extend(ids_of(&batch).into_iter().map(str::to_owned));
        let committed = positions(&batch);
        consumer.acknowledge(&committed, &[]).await.expect("acknowledged");
    }
    assert_eq!(read, ["evt-1", "evt-2"], "the rows after it are read, and it is not read again");
    assert_eq!(db.ids("SELECT id FROM outbox").await, ["evt-0"], "it stays in the table");
    consumer.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn bad_fields_are_refused_by_name_before_the_database_is_reached() {
    let url = json!("sqlite://never-opened.db");
    let cases = [
        (json!({"database_url": url, "extra": 1}), "config.extra"),
        (json!({"database_url": url, "table": "outbox; DROP TABLE orders"}), "config.table"),
        (json!({"database_url": url, "table": "a.b.c"}), "config.table"),
        (json!({"database_url": url, "columns": {"id": "id\" OR 1=1 --"}}), "config.columns.id"),
        (json!({"database_url": url, "columns": {"body": "payload"}}), "config.columns.body"),
        (json!({"database_url": url, "mark_column": "relayed at"}), "config.mark_column"),
        (json!({"database_url": url, "sequence_column": "1seq"}), "config.sequence_column"),
        (json!({"database_url": url, "batch_size": 0}), "config.batch_size"),
        (json!({"database_url": url, "batch_size": 1001}), "config.batch_size"),
        (json!({"database_url": url, "poll_interval_ms": 10}), "config.poll_interval_ms"),
        (json!({"database_url": url, "after_relay": "archive"}), "config.after_relay"),
        (json!({"database_url": "mysql://db/app"}), "config.database_url"),
        (json!({"table": "outbox"}), "config.database_url"),
    ];
    for (config, field) in cases {
        assert_eq!(fields_refused(config.clone()).await, [field], "{config}");
    }
    assert!(!std::path::Path::new("never-opened.db").exists());
}

#[tokio::test]
async fn unreachable_databases_are_named_without_their_password() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let missing = dir.path().join("missing.db");
    let config = json!({"database_url": format!("sqlite://{}", missing.display())});
    let refused = OutboxPuller::new().validate(config).await.expect_err("refused");
    assert_eq!(refused.0[0].field, "config.database_url");
    assert!(refused.0[0].message.contains("missing.db"), "{}", refused.0[0].message);
    assert!(!missing.exists(), "the file is not created");

    let started = Instant::now();
    let config = json!({"database_url": "postgres://hub:s3cret-pw@127.0.0.1:1/app"});
    let refused = OutboxPuller::new().validate(config).await.expect_err("refused");
    assert!(started.elapsed() < Duration::from_secs(3), "not retried until a timeout");
    assert_eq!(refused.0.len(), 1);
    assert_eq!(refused.0[0].field, "config.database_url");
    let message = &refused.0[0].message;
    assert!(message.contains("could not be reached") && message.contains("refused"), "{message}");
    assert!(!refused.to_string().contains("s3cret"), "{refused}");

    // A stored source whose database went away: the consumer says why, without the password.
    let config = json!({"database_url": "postgres://hub@127.0.0.1:1/app"});
    let stored = stored_source(config, json!({"password": "s3cret-pw"}));
    let error = OutboxPuller::new().connect(&stored).await.err().expect("not connected");
    assert!(error.0.contains("refused") && !error.0.contains("s3cret"), "{error}");
}

#[tokio::test]
async fn sqlite_tables_of_other_shapes_are_read_by_their_columns() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("app.db");
    let mut conn =
        SqliteConnection::connect(&format!("sqlite://{}?mode=rwc", file.display())).await.expect("open");
    sqlx::raw_sql(
        "CREATE TABLE events (seq INTEGER, event_id TEXT, kind TEXT, agg TEXT, aggtype TEXT, body TEXT, at);
         INSERT INTO events VALUES (2, 'b', 'order.paid', 'ord-1', 'order', '{\"n\":2}', 1714564800);
         INSERT INTO events VALUES (1, 'c', NULL, 'ord-1', 'order', '{\"n\":1}', '2024-05-01 12:00:00');
         INSERT INTO events VALUES (3, 'a', 'order.shipped', NULL, 'order', NULL, 'later');",
    )
    .execute(&mut conn)
    .await
    .expect("a table");
    let config = json!({
        "database_url": format!("sqlite:{}", file.display()),
        "table": "events",
        "columns": {"id": "event_id", "aggregate_type": "aggtype", "aggregate_id": "agg",
                    "event_type": "kind", "payload": "body", "created_at": "at"},
        "sequence_column": "seq",
    });
    let mut consumer = consumer(config).await;
    let batch = consumer.next_batch().await.expect("a batch");
    assert_eq!(ids_of(&batch), ["c", "b", "a"], "in sequence order");
    assert_eq!((batch[0].event_type.as_deref(), batch[0].written_at), (None, Some(1_714_564_800_000)));
    assert_eq!(
        (batch[1].event_type.as_deref(), batch[1].body.as_slice(), batch[1].written_at),
        (Some("order.paid"), b"{\"n\":2}".as_slice(), Some(1_714_564_800_000))
    );
    assert_eq!((batch[2].ordering_key.as_deref(), batch[2].body.is_empty()), (None, true));
    assert_eq!(batch[2].written_at, None);
    consumer.acknowledge(&[1], &[0, 2]).await.expect("acknowledged");
    let left: Vec<String> = sqlx::query_scalar("SELECT event_id FROM events ORDER BY seq")
        .fetch_all(&mut conn)
        .await
        .expect("rows");
    assert_eq!(left, ["c", "a"]);
    assert!(consumer.next_batch().await.expect("a batch").is_empty(), "held rows are skipped");
    consumer.close().await;
}

#[tokio::test]
async fn an_idle_sqlite_reader_polls_at_its_interval() {
    let mut db = TestDb::sqlite().await;
    let mut consumer = consumer(db.config(json!({"poll_interval_ms": 300}))).await;
    assert!(consumer.next_batch().await.expect("a batch").is_empty());
    let started = Instant::now();
    assert!(consumer.next_batch().await.expect("a batch").is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250), "waited {:?}", started.elapsed());
    db.enqueue(&order_created(1)).await;
    let started = Instant::now();
    let batch = consumer.next_batch().await.expect("a batch");
    assert_eq!(ids_of(&batch), ["evt-1"]);
    assert!(started.elapsed() < Duration::from_secs(2));
    consumer.close().await;
}

#[tokio::test]
async fn postgres_passwords_leave_the_url_and_come_back_to_connect() {
    let Some(mut db) = TestDb::postgres().await else { return };
    let TestDb::Postgres { url, .. } = &db else { unreachable!() };
    let mut with_password = url::Url::parse(url).expect("a URL");
    // PostgreSQL's test user may trust local connections and ignore the password.
    let (password, encoded) = match with_password.password() {
        Some(given) => (given.to_owned(), given.to_owned()),
        None => ("p@ss word".to_owned(), "p%40ss%20word".to_owned()),
    };
    with_password.set_password(Some(&encoded)).expect("set");
    let mut config = db.config(json!({}));
    config["database_url"] = json!(with_password.to_string());

    let validated = OutboxPuller::new().validate(config.clone()).await.expect("valid");
    let kept = validated.config["database_url"].as_str().expect("a URL");
    assert!(url::Url::parse(kept).expect("a URL").password().is_none(), "{kept}");
    assert!(!validated.config.to_string().contains(&password));
    assert_eq!(validated.secrets.get("password"), Some(&json!(password)));

    db.enqueue(&order_created(1)).await;
    let mut consumer = consumer(config).await;
    assert_eq!(ids_of(&consumer.next_batch().await.expect("a batch")), ["evt-1"]);
    consumer.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn postgres_notifications_wake_an_idle_reader_long_before_its_poll() {
    let Some(mut db) = TestDb::postgres().await else { return };
    let mut consumer = consumer(db.config(json!({"poll_interval_ms": 10_000}))).await;
    assert!(consumer.next_batch().await.expect("a batch").is_empty());
    let reader = tokio::spawn(async move {
        let started = Instant::now();
        loop {
            let batch = consumer.next_batch().await.expect("a batch");
            if !batch.is_empty() {
                consumer.close().await;
                return (ids_of(&batch).join(","), started.elapsed());
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    db.enqueue(&order_created(1)).await;
    let (ids, waited) = tokio::time::timeout(Duration::from_secs(8), reader)
        .await
        .expect("woken before the poll interval")
        .expect("the reader");
    assert_eq!(ids, "evt-1");
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    db.cleanup().await;
}

#[tokio::test]
async fn postgres_uuid_ids_are_relayed_and_created_at_must_be_a_time() {
    let Some(mut db) = TestDb::postgres().await else { return };
    db.execute(
        "CREATE TABLE events (id uuid PRIMARY KEY, aggregatetype text, aggregateid text, type text, \
         payload jsonb, created_at timestamptz NOT NULL DEFAULT now(), written text);
         INSERT INTO events (id, aggregatetype, aggregateid, type, payload) VALUES
           ('0190a1b2-0000-7000-8000-000000000001', 'order', 'ord-1', 'order.created', '{\"n\": 1}'),
           ('0190a1b2-0000-7000-8000-000000000002', 'order', 'ord-2', 'order.created', '{\"n\": 2}');",
    )
    .await;
    let TestDb::Postgres { schema, .. } = &db else { unreachable!() };
    let table = format!("{schema}.events");
    let refused =
        fields_refused(db.config(json!({"table": table, "columns": {"created_at": "written"}}))).await;
    assert_eq!(refused, ["config.columns.created_at"]);

    let mut consumer = consumer(db.config(json!({"table": table}))).await;
    let batch = consumer.next_batch().await.expect("a batch");
    assert_eq!(
        ids_of(&batch),
        ["0190a1b2-0000-7000-8000-000000000001", "0190a1b2-0000-7000-8000-000000000002"]
    );
    consumer.acknowledge(&[1], &[]).await.expect("acknowledged");
    let left = db.ids("SELECT id::text FROM events").await;
    assert_eq!(left, ["0190a1b2-0000-7000-8000-000000000001"]);
    consumer.close().await;
    db.cleanup().await;
}
