//! `switchyard dlq list|replay`: the real binary on the database of a running application,
//! with dead deliveries made by a real sink answering 422.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{TestApp, run_switchyard as switchyard, spawn_app};
use crate::sink::{Behaviour, Sink};

const DEADLINE: Duration = Duration::from_secs(20);

fn database_url(app: &TestApp) -> String {
    format!("sqlite://{}", app.db_path.display())
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 on stdout")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn assert_success(output: &Output) {
    assert!(output.status.success(), "{:?}; stderr: {}", output.status, stderr(output));
}

/// The data rows of a `dlq list` table (between the header and the summary line).
fn table_rows(stdout: &str) -> Vec<&str> {
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() >= 2, "a header and a summary line: {stdout:?}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("LAST_ERROR"), "header: {stdout}");
    lines[1..lines.len() - 1].to_vec()
}

fn summary(stdout: &str) -> &str {
    stdout.lines().last().unwrap_or_default()
}

/// Publishes one event of `event_type`.
async fn publish(app: &TestApp, event_id: &str, event_type: &str) {
    app.publish(json!({"event_id": event_id, "event_type": event_type, "payload": {"n": event_id}}))
        .await
        .assert_status(201);
}

/// Polls the only delivery of `event_id` until it has `status`.
async fn delivery_with_status(app: &TestApp, event_id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let event = app.get(&format!("/v1/events/{event_id}")).await;
        let first = event.data()["deliveries"].as_array().and_then(|d| d.first()).cloned();
        if let Some(delivery) = first.filter(|d| d["status"] == status) {
            return delivery;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the delivery of {event_id} never became {status}: {}",
            event.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The ids of the dead deliveries of `event_ids`, waiting until each is dead.
async fn dead_deliveries(app: &TestApp, event_ids: &[&str]) -> Vec<String> {
    let mut ids = Vec::new();
    for event_id in event_ids {
        let delivery = delivery_with_status(app, event_id, "dead").await;
        ids.push(delivery["id"].as_str().expect("an id").to_owned());
    }
    ids
}

/// Two destinations failing with 422: `orders` gets `order.*` (three events), `invoices` gets
/// `invoice.*` (two), all dead, published in the order o-1, o-2, o-3, i-1, i-2.
struct Fixture {
    app: TestApp,
    orders_sink: Sink,
    invoices_sink: Sink,
    orders: String,
    invoices: String,
    order_deliveries: Vec<String>,
    invoice_deliveries: Vec<String>,
}

async fn fixture() -> Fixture {
    let app = spawn_app().await;
    let orders_sink = Sink::start(Behaviour::Status(422)).await;
    let invoices_sink = Sink::start(Behaviour::Status(422)).await;
    let orders = app.create_destination(&orders_sink.url).await;
    let invoices = app.create_destination(&invoices_sink.url).await;
    app.create_subscription(&orders, &["order.*"]).await;
    app.create_subscription(&invoices, &["invoice.*"]).await;
    for (event_id, event_type) in [
        ("o-1", "order.created"),
        ("o-2", "order.created"),
        ("o-3", "order.created"),
        ("i-1", "invoice.paid"),
        ("i-2", "invoice.paid"),
    ] {
        publish(&app, event_id, event_type).await;
    }
    let order_deliveries = dead_deliveries(&app, &["o-1", "o-2", "o-3"]).await;
    let invoice_deliveries = dead_deliveries(&app, &["i-1", "i-2"]).await;
    Fixture { app, orders_sink, invoices_sink, orders, invoices, order_deliveries, invoice_deliveries }
}

#[tokio::test]
async fn list_shows_the_dead_deliveries_oldest_first_and_how_many_match() {
    let f = fixture().await;
    let url = database_url(&f.app);

    let output = switchyard(&["dlq", "list"], &url).await;
    assert_success(&output);
    let out = stdout(&output);
    let rows = table_rows(&out);
    let all: Vec<&String> = f.order_deliveries.iter().chain(&f.invoice_deliveries).collect();
    assert_eq!(rows.len(), all.len(), "{out}");
    for (row, id) in rows.iter().zip(&all) {
        assert!(row.starts_with(id.as_str()), "rows in creation order, newest last: {out}");
        assert!(row.contains("422"), "the last error shows: {row}");
    }
    assert!(rows[0].contains(&f.orders) && rows[0].contains("o-1"), "{out}");
    assert!(rows[4].contains(&f.invoices) && rows[4].contains("i-2"), "{out}");
    assert_eq!(summary(&out), "5 dead deliveries match");

    let limited = switchyard(&["dlq", "list", "--limit", "2"], &url).await;
    assert_success(&limited);
    let out = stdout(&limited);
    let rows = table_rows(&out);
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows[0].starts_with(&f.invoice_deliveries[0]) && rows[1].starts_with(&f.invoice_deliveries[1]));
    assert_eq!(summary(&out), "5 dead deliveries match", "the count ignores the limit");
}

#[tokio::test]
async fn list_filters_narrow_the_rows_and_the_count() {
    let f = fixture().await;
    let url = database_url(&f.app);

    let output = switchyard(&["dlq", "list", "--destination", &f.orders], &url).await;
    assert_success(&output);
    let out = stdout(&output);
    let rows = table_rows(&out);
    assert_eq!(rows.len(), 3, "{out}");
    assert!(rows.iter().all(|row| row.contains(&f.orders) && !row.contains(&f.invoices)), "{out}");
    assert_eq!(summary(&out), "3 dead deliveries match");

    let output = switchyard(&["dlq", "list", "--event-type", "invoice.paid"], &url).await;
    assert_success(&output);
    let out = stdout(&output);
    let rows = table_rows(&out);
    assert_eq!(rows.len(), 2, "{out}");
    assert!(rows.iter().all(|row| row.contains(&f.invoices)), "{out}");
    assert_eq!(summary(&out), "2 dead deliveries match");

    let output = switchyard(&["dlq", "list", "--since", "2999-01-01T00:00:00Z"], &url).await;
    assert_success(&output);
    let out = stdout(&output);
    assert!(table_rows(&out).is_empty(), "{out}");
    assert_eq!(summary(&out), "0 dead deliveries match");

    let output = switchyard(&["dlq", "list", "--json", "--destination", &f.invoices], &url).await;
    assert_success(&output);
    let out = stdout(&output);
    let objects: Vec<Value> =
        out.lines().map(|line| serde_json::from_str(line).expect("one JSON object per line")).collect();
    let ids: Vec<&str> = objects.iter().map(|o| o["id"].as_str().expect("an id")).collect();
    assert_eq!(ids, f.invoice_deliveries.iter().map(String::as_str).collect::<Vec<_>>());
    for object in &objects {
        assert_eq!(object["status"], "dead");
        assert_eq!(object["destination_id"], f.invoices.as_str());
        assert_eq!(object["attempt_count"], 1);
    }
    assert!(stderr(&output).contains("2 dead deliveries match"), "the count goes to stderr");
}

#[tokio::test]
async fn replay_with_yes_replays_only_the_named_destination_and_the_server_delivers_them() {
    let f = fixture().await;
    let url = database_url(&f.app);
    // Both receivers are fixed: only the replay decides which deliveries are tried again.
    f.orders_sink.set(Behaviour::Status(200));
    f.invoices_sink.set(Behaviour::Status(200));
    let invoices_received = f.invoices_sink.received().len();

    let output = switchyard(&["dlq", "replay", "--yes", "--destination", &f.orders], &url).await;
    assert_success(&output);
    assert_eq!(stdout(&output), "replayed 3 dead deliveries\n");
    assert!(!stderr(&output).contains("replaying ["), "no progress bar off a terminal");

    for id in &f.invoice_deliveries {
        let delivery = f.app.get(&format!("/v1/deliveries/{id}")).await;
        assert_eq!(delivery.data()["status"], "dead", "not replayed: {}", delivery.body);
    }
    for event_id in ["o-1", "o-2", "o-3"] {
        let delivery = delivery_with_status(&f.app, event_id, "succeeded").await;
        let id = delivery["id"].as_str().expect("an id");
        let detail = f.app.get(&format!("/v1/deliveries/{id}")).await;
        let outcomes: Vec<&str> = detail.data()["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .map(|a| a["outcome"].as_str().unwrap_or("?"))
            .collect();
        assert_eq!(outcomes, ["permanent", "succeeded"], "the old attempt is kept");
    }
    let letters = f.app.get(&format!("/v1/dead-letters?destination_id={}", f.invoices)).await;
    assert_eq!(letters.body["pagination"]["total_items"], 2);
    assert_eq!(f.app.count("/v1/dead-letters").await, 2, "only the invoices stay dead");
    assert_eq!(f.invoices_sink.received().len(), invoices_received, "nothing was sent to invoices");

    let again = switchyard(&["dlq", "replay", "--yes", "--destination", &f.orders], &url).await;
    assert_success(&again);
    assert_eq!(stdout(&again), "replayed 0 dead deliveries\n");
}

#[tokio::test]
async fn replay_without_yes_off_a_terminal_refuses_and_changes_nothing() {
    let f = fixture().await;
    let url = database_url(&f.app);

    let output = switchyard(&["dlq", "replay"], &url).await;
    assert_eq!(output.status.code(), Some(2), "stderr: {}", stderr(&output));
    assert!(output.stdout.is_empty(), "stdout: {}", stdout(&output));
    let message = stderr(&output);
    assert!(message.contains("--yes") && message.contains("5 dead deliveries"), "stderr: {message}");

    for id in f.order_deliveries.iter().chain(&f.invoice_deliveries) {
        let delivery = f.app.get(&format!("/v1/deliveries/{id}")).await;
        assert_eq!(delivery.data()["status"], "dead", "{}", delivery.body);
        assert_eq!(delivery.data()["attempt_count"], 1, "{}", delivery.body);
    }
    assert_eq!(f.app.count("/v1/dead-letters").await, 5);
}

#[tokio::test]
async fn invalid_filters_are_usage_errors_with_exit_code_two() {
    let dir = tempfile::tempdir().expect("a directory");
    let url = format!("sqlite://{}", dir.path().join("dlq.db").display());
    for (args, expected) in [
        (&["dlq", "replay", "--yes", "--since", "yesterday"][..], "RFC 3339"),
        (&["dlq", "list", "--until", "2025-13-01T00:00:00Z"][..], "RFC 3339"),
        (&["dlq", "list", "--event-type", "Order Created"][..], "lowercase"),
        (&["dlq", "list", "--limit", "1001"][..], "1001"),
        (
            &["dlq", "replay", "--yes", "--since", "2025-02-01T00:00:00Z", "--until", "2025-01-01T00:00:00Z"]
                [..],
            "--since must be earlier than --until",
        ),
    ] {
        let output = switchyard(args, &url).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: stderr: {}", stderr(&output));
        assert!(output.stdout.is_empty(), "{args:?}: stdout: {}", stdout(&output));
        assert!(stderr(&output).contains(expected), "{args:?}: stderr: {}", stderr(&output));
    }
    assert!(!dir.path().join("dlq.db").exists(), "a refused command does not touch the database");
}
