//! The outbox table on a real SQLite file and the real PostgreSQL: a row commits with its
//! business transaction or not at all, and reads back as written.

use std::time::Duration;

use serde_json::{Value, json};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, Row, SqliteConnection};
use switchyard_outbox::{OutboxError, OutboxEvent, create_table, enqueue, enqueue_into};

fn postgres_url() -> String {
    std::env::var("SWITCHYARD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A connection whose `search_path` is a fresh schema of its own; `None` (said loudly) when
/// PostgreSQL is unreachable outside CI.
async fn postgres() -> Option<(PgConnection, String)> {
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
    let schema = format!("outbox_{:016x}", rand_u64());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut admin)
        .await
        .expect("a schema");
    let joiner = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{joiner}options=-csearch_path%3D{schema}");
    Some((PgConnection::connect(&scoped).await.expect("connect"), scoped))
}

fn rand_u64() -> u64 {
    // The tests need distinct schema names, not good randomness.
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("a clock").as_nanos();
    (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

async fn sqlite() -> (SqliteConnection, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("app.db").display());
    (SqliteConnection::connect(&url).await.expect("open"), dir)
}

fn order_created(n: u32) -> OutboxEvent {
    OutboxEvent::new(
        "order",
        format!("ord-{n}"),
        "order.created",
        json!({"order_id": n, "total_cents": 2550}),
    )
}

#[tokio::test]
async fn sqlite_rows_commit_with_the_business_transaction_or_not_at_all() {
    let (mut conn, _dir) = sqlite().await;
    create_table(&mut conn).await.expect("the table");
    create_table(&mut conn).await.expect("the DDL runs again");
    sqlx::raw_sql("CREATE TABLE orders (id INTEGER PRIMARY KEY)").execute(&mut conn).await.expect("orders");

    let kept = order_created(1);
    let mut tx = conn.begin().await.expect("begin");
    sqlx::query("INSERT INTO orders (id) VALUES (1)").execute(&mut *tx).await.expect("an order");
    enqueue(&mut *tx, &kept).await.expect("enqueued");
    tx.commit().await.expect("commit");

    let mut tx = conn.begin().await.expect("begin");
    sqlx::query("INSERT INTO orders (id) VALUES (2)").execute(&mut *tx).await.expect("an order");
    enqueue(&mut *tx, &order_created(2)).await.expect("enqueued");
    tx.rollback().await.expect("rollback");

    let rows = sqlx::query(
        "SELECT id, aggregatetype, aggregateid, type, payload, created_at, relayed_at FROM outbox",
    )
    .fetch_all(&mut conn)
    .await
    .expect("rows");
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.get::<String, _>("id"), kept.id);
    assert_eq!(row.get::<String, _>("aggregatetype"), "order");
    assert_eq!(row.get::<String, _>("aggregateid"), "ord-1");
    assert_eq!(row.get::<String, _>("type"), "order.created");
    assert_eq!(serde_json::from_str::<Value>(&row.get::<String, _>("payload")).expect("JSON"), kept.payload);
    let created_at: String = row.get("created_at");
    assert!(
        created_at.ends_with('Z') && created_at.contains('T') && created_at.contains('.'),
        "{created_at}"
    );
    assert_eq!(row.get::<Option<String>, _>("relayed_at"), None);
}

#[tokio::test]
async fn the_same_id_twice_is_refused_by_the_table() {
    let (mut conn, _dir) = sqlite().await;
    create_table(&mut conn).await.expect("the table");
    let event = order_created(1).with_id("ord-1-created");
    enqueue(&mut conn, &event).await.expect("first");
    let again = enqueue(&mut conn, &event).await;
    assert!(matches!(again, Err(OutboxError::Database(_))), "{again:?}");
}

#[tokio::test]
async fn invalid_events_and_table_names_write_nothing() {
    let (mut conn, _dir) = sqlite().await;
    create_table(&mut conn).await.expect("the table");
    let bad = OutboxEvent { event_type: "Order Created".into(), ..order_created(1) };
    assert!(matches!(enqueue(&mut conn, &bad).await, Err(OutboxError::Invalid { field: "event_type", .. })));
    let name = enqueue_into(&mut conn, "outbox; DELETE FROM outbox", &order_created(2)).await;
    assert!(matches!(name, Err(OutboxError::TableName(_))), "{name:?}");
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&mut conn).await.expect("count");
    assert_eq!(count, 0);
}

#[tokio::test]
async fn postgres_rows_commit_with_the_transaction_and_wake_the_relay() {
    let Some((mut conn, url)) = postgres().await else { return };
    create_table(&mut conn).await.expect("the table");
    create_table(&mut conn).await.expect("the DDL runs again");
    let mut listener = PgListener::connect(&url).await.expect("a listener");
    listener.listen("switchyard_outbox").await.expect("listen");

    let dropped = order_created(2);
    let mut tx = conn.begin().await.expect("begin");
    enqueue(&mut *tx, &dropped).await.expect("enqueued");
    tx.rollback().await.expect("rollback");
    let kept = order_created(1);
    let mut tx = conn.begin().await.expect("begin");
    enqueue(&mut *tx, &kept).await.expect("enqueued");
    tx.commit().await.expect("commit");

    let notification = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("a notification within 5 s")
        .expect("a notification");
    assert_eq!(notification.payload(), "outbox");

    let rows = sqlx::query(
        "SELECT id, aggregateid, type, payload::text AS payload, relayed_at IS NULL AS pending FROM outbox",
    )
    .fetch_all(&mut conn)
    .await
    .expect("rows");
    assert_eq!(rows.len(), 1, "the rolled-back row is not there");
    assert_eq!(rows[0].get::<String, _>("id"), kept.id);
    assert_eq!(rows[0].get::<String, _>("aggregateid"), "ord-1");
    assert_eq!(rows[0].get::<String, _>("type"), "order.created");
    assert_eq!(
        serde_json::from_str::<Value>(&rows[0].get::<String, _>("payload")).expect("JSON"),
        kept.payload
    );
    assert!(rows[0].get::<bool, _>("pending"));
}

#[tokio::test]
async fn postgres_keeps_named_ids_and_refuses_one_twice() {
    let Some((mut conn, _)) = postgres().await else { return };
    create_table(&mut conn).await.expect("the table");
    let named = order_created(1).with_id("ord-1-created");
    enqueue(&mut conn, &named).await.expect("a named id");
    let again = enqueue(&mut conn, &named).await;
    assert!(matches!(again, Err(OutboxError::Database(_))), "{again:?}");
    let ids: Vec<String> =
        sqlx::query_scalar("SELECT id FROM outbox").fetch_all(&mut conn).await.expect("ids");
    assert_eq!(ids, ["ord-1-created"]);
}
