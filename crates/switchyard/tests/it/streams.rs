//! `GET /v1/events/stream` and `GET /v1/deliveries/stream`: live frames in commit order,
//! resuming without gaps or repeats, filters, heartbeats, stalled clients and shutdown.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use switchyard::Application;
use switchyard::config::Config;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::helpers::{TestApp, http_client, spawn_app, spawn_app_with};
use crate::sink::{Behaviour, Sink};

const WAIT: Duration = Duration::from_secs(10);

/// One Server-Sent Events frame; a comment line alone makes a frame with `comment` set.
#[derive(Debug, Default)]
struct Frame {
    event: Option<String>,
    id: Option<String>,
    data: Option<String>,
    comment: bool,
}

impl Frame {
    fn json(&self) -> Value {
        serde_json::from_str(self.data.as_deref().expect("data")).expect("JSON data")
    }
}

fn parse(block: &str) -> Frame {
    let mut frame = Frame::default();
    for line in block.lines() {
        if line.starts_with(':') {
            frame.comment = true;
        } else if let Some((field, value)) = line.split_once(": ") {
            match field {
                "event" => frame.event = Some(value.to_owned()),
                "id" => frame.id = Some(value.to_owned()),
                "data" => frame.data = Some(value.to_owned()),
                _ => {}
            }
        }
    }
    frame
}

/// A stream being read.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(app: &TestApp, path: &str, last_event_id: Option<&str>) -> Stream {
        let mut request = app.request(Method::GET, path);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.expect("the stream opens");
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Stream { response, buffer: String::new() }
    }

    /// The next frame, heartbeats included; `None` when the stream ended.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse(&block));
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk()).await.expect("a frame in time");
            match chunk {
                Ok(Some(bytes)) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next `n` frames that are not heartbeats.
    async fn frames(&mut self, n: usize) -> Vec<Frame> {
        let mut frames = Vec::new();
        while frames.len() < n {
            let frame = self.next().await.expect("the stream goes on");
            if !frame.comment {
                frames.push(frame);
            }
        }
        frames
    }

    /// Whether nothing but heartbeats comes for `quiet`.
    async fn stays_quiet(&mut self, quiet: Duration) -> bool {
        let until = tokio::time::Instant::now() + quiet;
        loop {
            match tokio::time::timeout_at(until, self.next()).await {
                Err(_) => return true,
                Ok(Some(frame)) if frame.comment => {}
                Ok(_) => return false,
            }
        }
    }
}

fn ids_of(frames: &[Frame]) -> Vec<String> {
    frames.iter().map(|f| f.json()["event_id"].as_str().expect("an event id").to_owned()).collect()
}

async fn publish(app: &TestApp, id: &str, event_type: &str) {
    app.publish(json!({"event_id": id, "event_type": event_type, "payload": {"id": id}}))
        .await
        .assert_status(201);
}

#[tokio::test]
async fn a_subscriber_sees_events_published_after_it_connected_in_order() {
    let app = spawn_app().await;
    publish(&app, "before", "order.created").await;
    let mut stream = Stream::open(&app, "/v1/events/stream", None).await;
    for i in 0..5 {
        publish(&app, &format!("e{i}"), "order.created").await;
    }
    let frames = stream.frames(5).await;
    assert_eq!(ids_of(&frames), ["e0", "e1", "e2", "e3", "e4"]);
    for frame in &frames {
        assert_eq!(frame.event.as_deref(), Some("event"));
        assert!(frame.id.is_some());
        assert_eq!(frame.json()["payload"]["id"], frame.json()["event_id"], "the event as stored");
        let id = frame.json()["event_id"].as_str().expect("an event id").to_owned();
        let shown = app.get(&format!("/v1/events/{id}")).await;
        assert_eq!(&frame.json(), shown.data(), "the frame is the event as GET /v1/events/{{id}} shows it");
    }
}

/// Reads `first` events, disconnects, publishes `missed`, and answers the last id read.
async fn read_then_leave(app: &TestApp, path: &str, first: &[&str], missed: &[&str]) -> String {
    let mut stream = Stream::open(app, path, None).await;
    for id in first {
        publish(app, id, "a.b").await;
    }
    let frames = stream.frames(first.len()).await;
    assert_eq!(ids_of(&frames), first);
    drop(stream);
    for id in missed {
        publish(app, id, "a.b").await;
    }
    frames.last().and_then(|f| f.id.clone()).expect("an id")
}

async fn resuming_misses_none_and_repeats_none(app: &TestApp) {
    let last = read_then_leave(app, "/v1/events/stream", &["r1", "r2", "r3"], &["r4", "r5"]).await;
    let mut stream = Stream::open(app, "/v1/events/stream", Some(&last)).await;
    publish(app, "r6", "a.b").await;
    assert_eq!(ids_of(&stream.frames(3).await), ["r4", "r5", "r6"]);
    assert!(stream.stays_quiet(Duration::from_millis(600)).await, "nothing twice");

    let mut stream = Stream::open(app, &format!("/v1/events/stream?after={last}"), None).await;
    assert_eq!(ids_of(&stream.frames(3).await), ["r4", "r5", "r6"]);
    assert!(stream.stays_quiet(Duration::from_millis(600)).await, "nothing twice");
}

#[tokio::test]
async fn reconnecting_with_last_event_id_or_after_misses_none_and_repeats_none() {
    let app = spawn_app().await;
    resuming_misses_none_and_repeats_none(&app).await;
}

#[tokio::test]
async fn reconnecting_misses_none_and_repeats_none_on_postgres() {
    let Some(cluster) = crate::multi_node::Cluster::new().await else { return };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key_file = dir.path().join("master.key");
    std::fs::write(&key_file, format!("{}\n", base64_key())).expect("the key file");
    let url = cluster.url.clone();
    let app = spawn_app_with(move |config| {
        config.database.url = url;
        config.security.master_key_file = Some(key_file);
    })
    .await;
    resuming_misses_none_and_repeats_none(&app).await;
}

fn base64_key() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode([9_u8; 32])
}

#[tokio::test]
async fn cursors_that_are_not_the_streams_are_refused() {
    let app = spawn_app().await;
    publish(&app, "x1", "a.b").await;
    publish(&app, "x2", "a.b").await;
    let page = app.get("/v1/events?after=&per_page=1").await;
    let list_cursor = page.body["pagination"]["next_cursor"].as_str().map(str::to_owned);
    for query in [
        "after=nonsense".to_owned(),
        format!("after={}", list_cursor.unwrap_or_default()),
        "colour=red".into(),
    ] {
        let answer = app.get(&format!("/v1/events/stream?{query}")).await;
        answer.assert_error(400, "validation_error");
    }
    let answer =
        app.send(app.request(Method::GET, "/v1/deliveries/stream").header("Last-Event-ID", "zz")).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["Last-Event-ID"]);
    let viewer = app.issue_key("viewer").await;
    let response =
        app.request_as(&viewer, Method::GET, "/v1/events/stream").send().await.expect("the stream opens");
    assert_eq!(response.status(), 200, "viewers may watch");
}

#[tokio::test]
async fn filters_hold() {
    let app = spawn_app().await;
    let mut by_type = Stream::open(&app, "/v1/events/stream?event_type=order.*", None).await;
    let mut by_flow = Stream::open(&app, "/v1/events/stream?correlation_id=flow-1&source=api", None).await;
    let mut by_source = Stream::open(&app, "/v1/events/stream?source=webhook:src_none", None).await;
    publish(&app, "f1", "invoice.paid").await;
    publish(&app, "f2", "order.created").await;
    let in_flow = json!({"event_id": "f3", "event_type": "invoice.paid", "payload": {},
                         "metadata": {"correlation_id": "flow-1"}});
    app.publish(in_flow).await.assert_status(201);
    publish(&app, "f4", "order.shipped").await;
    assert_eq!(ids_of(&by_type.frames(2).await), ["f2", "f4"]);
    assert_eq!(ids_of(&by_flow.frames(1).await), ["f3"]);
    assert!(by_source.stays_quiet(Duration::from_millis(600)).await);
    assert!(by_flow.stays_quiet(Duration::from_millis(300)).await);
}

#[tokio::test]
async fn the_deliveries_stream_shows_a_delivery_until_it_succeeds() {
    let app = spawn_app().await;
    // Slow enough that the stream reads the delivery before it settles.
    let sink = Sink::start(Behaviour::Slow { delay: Duration::from_millis(800), status: 200 }).await;
    let destination = app.create_destination(&sink.url).await;
    app.create_subscription(&destination, &["#"]).await;
    let mut stream =
        Stream::open(&app, &format!("/v1/deliveries/stream?destination_id={destination}"), None).await;
    let mut other = Stream::open(&app, "/v1/deliveries/stream?destination_id=dst_other", None).await;
    publish(&app, "d1", "a.b").await;
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("succeeded") {
        let frame = stream.frames(1).await.remove(0);
        assert_eq!(frame.event.as_deref(), Some("delivery"));
        let delivery = frame.json();
        assert_eq!(delivery["event_id"], "d1");
        assert_eq!(delivery["destination_id"].as_str(), Some(destination.as_str()));
        statuses.push(delivery["status"].as_str().expect("a status").to_owned());
    }
    assert!(matches!(statuses[0].as_str(), "pending" | "in_flight"), "{statuses:?}");
    assert!(other.stays_quiet(Duration::from_millis(300)).await);
}

#[tokio::test]
async fn heartbeats_arrive_while_nothing_happens() {
    let app = spawn_app_with(|config| config.server.stream_heartbeat_ms = 100).await;
    let mut stream = Stream::open(&app, "/v1/events/stream", None).await;
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        assert!(stream.next().await.expect("a frame").comment, "a heartbeat comment");
    }
    assert!(started.elapsed() < Duration::from_secs(3));
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number of KiB")
}

/// The app runs in this process, so its memory is this process's RSS. Publishing itself costs
/// some (the database's page cache, the allocator's pools); a stream that buffered for its
/// stalled client would hold every event published, 32 MiB of payloads, on top.
#[tokio::test]
async fn a_stalled_client_is_cut_off_with_lagged_and_memory_stays_flat() {
    let app = spawn_app_with(|config| config.server.stream_lag_timeout_ms = 500).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let mut socket = tokio::net::TcpStream::connect(&address).await.expect("a connection");
    let request = format!(
        "GET /v1/events/stream HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\r\n",
        app.admin_token
    );
    socket.write_all(request.as_bytes()).await.expect("the request is sent");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let before = rss_kib();
    let filler = "x".repeat(16 * 1024);
    for batch in 0..40 {
        let events: Vec<Value> = (0..50)
            .map(|i| json!({"event_id": format!("big-{batch}-{i}"), "event_type": "load.big", "payload": {"filler": filler}}))
            .collect();
        app.post("/v1/events/batch", json!({"events": events})).await.assert_status(200);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(grown_mib < 32, "RSS grew by {grown_mib} MiB while the client stalled");

    let mut seen = Vec::new();
    let mut buffer = vec![0_u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + WAIT;
    while !String::from_utf8_lossy(&seen).contains("event: lagged") {
        let read = tokio::time::timeout_at(deadline, socket.read(&mut buffer)).await.expect("lagged in time");
        let n = read.expect("the socket reads");
        assert!(n > 0, "the stream ended without `lagged`");
        seen.extend_from_slice(&buffer[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    let lagged =
        text.split("event: lagged\ndata: ").nth(1).and_then(|rest| rest.lines().next()).expect("data");
    let lagged: Value = serde_json::from_str(lagged).expect("JSON");
    assert!(lagged["cursor"].is_string() && lagged["message"].is_string(), "{lagged}");
}

#[tokio::test]
async fn shutdown_ends_an_open_stream_promptly() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().expect("a socket address");
    config.database.url = format!("sqlite://{}", dir.path().join("s.db").display());
    let app = Application::build(config).await.expect("the application builds");
    let address = format!("http://{}", app.local_addr());
    let token = app.first_admin_token().expect("a first key").to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let client = http_client();
    let mut response = loop {
        match client.get(format!("{address}/v1/events/stream")).bearer_auth(&token).send().await {
            Ok(response) if response.status() == 200 => break response,
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let _ = stop.send(());
    let started = tokio::time::Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(3), async {
        while let Ok(Some(_)) = response.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream ended");
    let finished = tokio::time::timeout(Duration::from_secs(5), server).await;
    assert!(finished.is_ok(), "the server stopped");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}
