//! An `outbox` source relays an application's table through one node: in order, each row
//! once, the table emptied (or marked) only after the events commit; what is not an event
//! stays behind without holding the rest up; what cannot be read is reported.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{AppDatabase, order_events, outbox_source};
use crate::helpers::{TestApp, spawn_app};
use crate::sink::{Behaviour, Sink};

/// A hub routing everything to a sink, and an application database beside it.
async fn hub_and_app() -> (TestApp, Sink, AppDatabase, tempfile::TempDir) {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(200)).await;
    let destination = app.create_destination(&sink.url).await;
    app.create_subscription(&destination, &["#"]).await;
    let dir = tempfile::tempdir().expect("a directory");
    let database = AppDatabase::create(dir.path()).await;
    (app, sink, database, dir)
}

async fn create_source(app: &TestApp, body: Value) -> String {
    let answer = app.post("/v1/sources", body).await;
    answer.assert_status(201);
    answer.data()["id"].as_str().expect("an id").to_owned()
}

/// The source's entry in the status report.
async fn source_status(app: &TestApp, id: &str) -> Value {
    let answer = app.get("/v1/status").await;
    answer.assert_status(200);
    let sources = answer.data()["sources"].as_array().expect("sources").clone();
    sources.into_iter().find(|s| s["source_id"] == id).expect("the source is reported")
}

/// Waits up to 20 s until the source's status satisfies `done`.
async fn wait_for_status(app: &TestApp, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let status = source_status(app, id).await;
        if done(&status) {
            return status;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the status never came to it: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The hub's events of `source`, in the order it stored them: (id, type, ordering key).
async fn stored_events(app: &TestApp, source: &str) -> Vec<(String, String, Option<String>)> {
    let pool = app.database().await;
    let rows =
        sqlx::query_as("SELECT event_id, event_type, ordering_key FROM events WHERE source = ? ORDER BY seq")
            .bind(format!("outbox:{source}"))
            .fetch_all(&pool)
            .await
            .expect("the events are read");
    pool.close().await;
    rows
}

#[tokio::test]
async fn rows_are_relayed_in_order_each_once_and_the_table_is_emptied() {
    let (app, sink, database, _dir) = hub_and_app().await;
    let events = order_events(0, 2_000);
    database.enqueue(&events).await;
    let id = create_source(&app, outbox_source(&database.url(), json!({"batch_size": 300}))).await;

    database.wait_until_relayed(Duration::from_secs(30)).await;
    let stored = stored_events(&app, &id).await;
    let expected: Vec<(String, String, Option<String>)> =
        events.iter().map(|e| (e.id.clone(), e.event_type.clone(), Some(e.aggregate_id.clone()))).collect();
    assert_eq!(stored, expected, "each row once, in the order written, keyed by its aggregate");
    let received = sink.wait_for_distinct(Duration::from_secs(30), events.len()).await;
    let first = received.iter().find(|r| r.json()["i"] == 0).expect("row 0 is delivered");
    assert_eq!(first.json(), json!({"i": 0}), "the payload is the row's");

    let status = wait_for_status(&app, &id, |s| s["pull"]["accepted"] == 2_000).await;
    assert_eq!(
        (status["kind"].clone(), status["pull"]["state"].clone()),
        (json!("outbox"), json!("reading"))
    );
    assert_eq!(
        (status["pull"]["duplicate"].clone(), status["pull"]["invalid"].clone()),
        (json!(0), json!(0))
    );
    let metrics =
        app.client.get(app.url("/metrics")).send().await.expect("scraped").text().await.expect("text");
    let accepted = format!(r#"switchyard_source_events_total{{source="{id}",outcome="accepted"}} 2000"#);
    assert!(metrics.lines().any(|l| l == accepted), "{accepted} in\n{metrics}");
    assert!(metrics.contains(&format!(r#"switchyard_source_relay_lag_seconds{{source="{id}"}}"#)));
}

#[tokio::test]
async fn rows_written_while_the_source_runs_are_relayed_too_and_marked_when_asked() {
    let (app, sink, database, _dir) = hub_and_app().await;
    let id = create_source(&app, outbox_source(&database.url(), json!({"after_relay": "mark"}))).await;
    wait_for_status(&app, &id, |s| s["pull"]["state"] == "reading").await;
    database.enqueue(&order_events(0, 10)).await;
    database.enqueue(&order_events(10, 20)).await;

    database.wait_until_relayed(Duration::from_secs(20)).await;
    sink.wait_for_distinct(Duration::from_secs(20), 20).await;
    let mut conn = database.connect().await;
    let marked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE relayed_at IS NOT NULL")
        .fetch_one(&mut conn)
        .await
        .expect("counted");
    assert_eq!(marked, 20, "mark keeps the rows, marked");
    assert_eq!(stored_events(&app, &id).await.len(), 20);
}

#[tokio::test]
async fn a_row_that_is_not_an_event_stays_behind_and_the_rows_after_it_still_go() {
    let (app, sink, database, _dir) = hub_and_app().await;
    let good = |i: usize| order_events(i, i + 1).remove(0);
    database.enqueue(&[good(0)]).await;
    // A JSON array passes the table's check but is no event's payload (switchyard-outbox
    // refuses to write it; another writer may not).
    database
        .execute(
            "INSERT INTO outbox (id, aggregatetype, aggregateid, type, payload) \
             VALUES ('row-bad', 'order', 'order-x', 'order.created', '[1, 2]')",
        )
        .await;
    database.enqueue(&[good(2), good(3)]).await;
    let id = create_source(&app, outbox_source(&database.url(), json!({}))).await;

    sink.wait_for_distinct(Duration::from_secs(20), 3).await;
    let status =
        wait_for_status(&app, &id, |s| s["pull"]["invalid"] == 1 && s["pull"]["accepted"] == 3).await;
    assert!(status["pull"]["last_invalid"].as_str().expect("why").contains("not a JSON object"), "{status}");
    let ids: Vec<String> = stored_events(&app, &id).await.into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids, ["row-00000", "row-00002", "row-00003"]);
    let mut conn = database.connect().await;
    let left: Vec<String> =
        sqlx::query_scalar("SELECT id FROM outbox").fetch_all(&mut conn).await.expect("the rows left");
    assert_eq!(left, ["row-bad"], "the bad row waits to be fixed or deleted; nothing else does");

    // Rows written after it go too, without the bad one coming back.
    database.enqueue(&[good(4)]).await;
    sink.wait_for_distinct(Duration::from_secs(20), 4).await;
    let status = wait_for_status(&app, &id, |s| s["pull"]["accepted"] == 4).await;
    assert_eq!(status["pull"]["invalid"], 1, "{status}");
}

#[tokio::test]
async fn writing_a_source_checks_its_database_table_and_columns() {
    let (app, _sink, database, dir) = hub_and_app().await;
    let absent = format!("sqlite://{}", dir.path().join("absent.db").display());
    let answer = app.post("/v1/sources", outbox_source(&absent, json!({}))).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["config.database_url"], "{}", answer.body);
    assert!(!dir.path().join("absent.db").exists(), "checking a database does not create it");

    let answer =
        app.post("/v1/sources", outbox_source(&database.url(), json!({"table": "orders_outbox"}))).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["config.table"], "{}", answer.body);

    let columns = json!({"columns": {"payload": "body"}});
    let answer = app.post("/v1/sources", outbox_source(&database.url(), columns)).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["config.columns.payload"], "{}", answer.body);

    let answer = app
        .post("/v1/sources", outbox_source(&database.url(), json!({"table": "outbox; DROP TABLE x"})))
        .await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["config.table"], "{}", answer.body);
    assert_eq!(app.count("/v1/sources").await, 0, "nothing was written");

    let created = app.post("/v1/sources", outbox_source(&database.url(), json!({}))).await;
    created.assert_status(201);
    let config = &created.data()["config"];
    assert_eq!((config["table"].clone(), config["after_relay"].clone()), (json!("outbox"), json!("delete")));
    assert_eq!(config["columns"]["aggregate_id"], "aggregateid", "Debezium's names by default: {config}");
    assert!(created.data().get("url").is_none(), "only webhook sources have a public URL");
}

#[tokio::test]
async fn a_source_whose_table_goes_away_is_reported_failing_and_recovers() {
    let (app, sink, database, _dir) = hub_and_app().await;
    let id = create_source(&app, outbox_source(&database.url(), json!({}))).await;
    wait_for_status(&app, &id, |s| s["pull"]["state"] == "reading").await;
    database.execute("ALTER TABLE outbox RENAME TO outbox_away").await;

    let status = wait_for_status(&app, &id, |s| s["pull"]["failing"] == true).await;
    assert_eq!(status["pull"]["state"], "failing");
    let report = app.get("/v1/status").await;
    let blockers = report.data()["blockers"].as_array().expect("blockers").clone();
    let blocker = blockers.iter().find(|b| b["source_id"] == id.as_str()).expect("a blocker for the source");
    assert_eq!(blocker["kind"], "source_failing", "{blocker}");

    database.execute("ALTER TABLE outbox_away RENAME TO outbox").await;
    database.enqueue(&order_events(0, 3)).await;
    sink.wait_for_distinct(Duration::from_secs(40), 3).await;
    let status = wait_for_status(&app, &id, |s| s["pull"]["failing"] == false).await;
    assert_eq!(status["pull"]["last_error"], Value::Null, "{status}");
}

#[tokio::test]
async fn a_disabled_source_is_not_read_and_a_deleted_one_stops() {
    let (app, sink, database, _dir) = hub_and_app().await;
    let mut body = outbox_source(&database.url(), json!({}));
    body["enabled"] = json!(false);
    let id = create_source(&app, body).await;
    database.enqueue(&order_events(0, 5)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(database.rows_left().await, 5, "a disabled source reads nothing");
    assert_eq!(source_status(&app, &id).await["pull"]["state"], "disabled");

    app.patch(&format!("/v1/sources/{id}"), json!({"enabled": true})).await.assert_status(200);
    database.wait_until_relayed(Duration::from_secs(20)).await;
    sink.wait_for_distinct(Duration::from_secs(20), 5).await;

    app.delete(&format!("/v1/sources/{id}")).await.assert_status(204);
    tokio::time::sleep(Duration::from_secs(2)).await;
    database.enqueue(&order_events(5, 8)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(database.rows_left().await, 3, "a deleted source is no longer read");
}

#[tokio::test]
async fn a_row_whose_id_an_event_from_elsewhere_holds_is_stored_under_the_id_scoped_by_the_source() {
    let (app, sink, database, _dir) = hub_and_app().await;
    let published = app
        .publish(json!({"event_id": "row-00000", "event_type": "order.created", "payload": {"api": true}}))
        .await;
    published.assert_status(201);
    database.enqueue(&order_events(0, 2)).await;
    let id = create_source(&app, outbox_source(&database.url(), json!({}))).await;

    database.wait_until_relayed(Duration::from_secs(20)).await;
    let mut ids: Vec<String> = stored_events(&app, &id).await.into_iter().map(|(id, _, _)| id).collect();
    ids.sort();
    // The scoped one goes after the rest of its batch.
    let expected = ["row-00001".to_owned(), format!("{id}:row-00000")];
    assert_eq!(ids, expected, "the row is not lost as the API event's duplicate");
    sink.wait_for_distinct(Duration::from_secs(20), 3).await;
    let status = wait_for_status(&app, &id, |s| s["pull"]["accepted"] == 2).await;
    assert_eq!(status["pull"]["duplicate"], 0, "{status}");
}
