//! Structured logs: the lines of a request and of the deliveries it causes carry the request's
//! correlation id (JSON lines, as `log.format = "json"` writes them).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tracing_subscriber::fmt::MakeWriter;

use crate::helpers::spawn_app;
use crate::sink::{Behaviour, Sink};

/// Collects what the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("the buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        let bytes = self.0.lock().expect("the buffer").clone();
        String::from_utf8_lossy(&bytes).lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }
}

/// Captures what this thread logs at `filter` as JSON lines, until the guard drops.
fn capture(filter: &str) -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_env_filter(filter)
        .with_writer(captured.clone())
        .finish();
    (captured.clone(), tracing::subscriber::set_default(subscriber))
}

/// The spans of a JSON log line, innermost last.
fn spans(line: &Value) -> Vec<&Value> {
    line["spans"].as_array().map(|s| s.iter().collect()).unwrap_or_default()
}

// The test's runtime has one thread, on which the app is spawned too, so a subscriber set as
// this thread's default sees every line of the request and of the delivery.
#[tokio::test]
async fn request_and_delivery_lines_carry_the_correlation_id() {
    let (captured, _guard) = capture("info,switchyard_engine=debug");

    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(204)).await;
    let destination = app.create_destination(&sink.url).await;
    app.create_subscription(&destination, &["order.*"]).await;
    let request = app
        .request(Method::POST, "/v1/events")
        .header("x-correlation-id", "checkout-31")
        .header("x-request-id", "req-31")
        .json(&json!({"event_id": "o-31", "event_type": "order.created", "payload": {}}));
    app.send(request).await.assert_status(201);
    sink.wait_for(Duration::from_secs(20), |r| !r.is_empty()).await;

    let started = std::time::Instant::now();
    let lines = loop {
        let lines = captured.lines();
        let recorded = lines.iter().any(|l| l["fields"]["message"] == "attempt recorded");
        if recorded {
            break lines;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "no delivery line was logged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let request_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| spans(l).iter().any(|s| s["name"] == "request" && s["request_id"] == "req-31"))
        .collect();
    assert!(!request_lines.is_empty(), "the request logged nothing");
    for line in &request_lines {
        let request_span = spans(line).into_iter().find(|s| s["name"] == "request").expect("a request span");
        assert_eq!(request_span["correlation_id"], "checkout-31", "{line}");
    }
    let delivery_lines: Vec<&Value> = lines
        .iter()
        .filter(|l| spans(l).iter().any(|s| s["name"] == "delivery" && s["event_id"] == "o-31"))
        .collect();
    assert!(!delivery_lines.is_empty(), "the delivery logged nothing");
    for line in delivery_lines {
        let span = spans(line).into_iter().find(|s| s["name"] == "delivery").expect("a delivery span");
        assert_eq!(span["correlation_id"], "checkout-31", "{line}");
        assert_eq!(span["request_id"], "req-31", "{line}");
    }

    // Without the header, the request's closing line carries the correlation id the event got.
    let request = app
        .request(Method::POST, "/v1/events")
        .header("x-request-id", "req-32")
        .json(&json!({"event_id": "o-32", "event_type": "order.created", "payload": {}}));
    app.send(request).await.assert_status(201);
    let answered = captured
        .lines()
        .into_iter()
        .find(|l| l["fields"]["message"] == "answered" && l["span"]["request_id"] == "req-32")
        .expect("the request's closing line");
    assert_eq!(answered["span"]["correlation_id"], "o-32", "{answered}");
}

/// Values the client chooses (a malformed `traceparent`, the path, the method) reach the log
/// lines as excerpts only, however long they were sent.
#[tokio::test]
async fn client_values_are_logged_as_excerpts() {
    let (captured, _guard) = capture("info");
    let app = spawn_app().await;
    let traceparent = format!("00-{}", "a".repeat(5000));
    let request = app
        .request(Method::POST, "/v1/events")
        .header("traceparent", traceparent.as_str())
        .json(&json!({"event_id": "long-trace", "event_type": "order.created", "payload": {}}));
    app.send(request).await.assert_status(201);
    let long_path = format!("/v1/{}", "p".repeat(3000));
    app.send(app.request(Method::GET, &long_path)).await.assert_error(404, "not_found");

    let lines = captured.lines();
    let warning = lines
        .iter()
        .find(|l| l["fields"]["message"] == "ignoring a malformed traceparent header")
        .expect("the malformed traceparent is logged");
    let logged = warning["fields"]["traceparent"].as_str().expect("the logged value");
    assert!(logged.contains("00-aaaa"), "{logged}");
    assert!(logged.len() < 100, "logged whole: {} bytes", logged.len());
    let answered = lines
        .iter()
        .find(|l| {
            l["fields"]["message"] == "answered"
                && l["span"]["path"].as_str().is_some_and(|p| p.starts_with("/v1/ppp"))
        })
        .expect("the long path's request line");
    assert!(answered["span"]["path"].as_str().map_or(0, str::len) < 300, "{answered}");
    let text: String = lines.iter().map(Value::to_string).collect();
    assert!(!text.contains(&"a".repeat(100)), "a long traceparent reached the log");
    assert!(!text.contains(&"p".repeat(300)), "a long path reached the log");
}
