//! Slow and idle clients cannot exhaust the server: request heads, bodies and idle spells are
//! timed, requests too, connections are capped, and what the server refuses before any handler
//! runs still gets the envelope. Raw TCP connections play the misbehaving clients.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app_with};

/// How long a test waits for something that should happen well within it.
const PATIENCE: Duration = Duration::from_secs(10);
const HEALTH_REQUEST: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: hub.invalid\r\n\r\n";

async fn connect(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    tokio::time::timeout(PATIENCE, TcpStream::connect(address))
        .await
        .expect("connects in time")
        .expect("connects")
}

/// How long until the server closes `stream` (end of file or a reset), if it does within
/// `PATIENCE`; whatever it answered first is skipped.
async fn time_until_closed(stream: &mut TcpStream) -> Option<Duration> {
    let started = Instant::now();
    let mut scratch = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + PATIENCE).into(), stream.read(&mut scratch)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

/// One HTTP/1.1 answer read off a raw connection.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawAnswer {
    fn envelope(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("{}: not JSON: {}", self.head, String::from_utf8_lossy(&self.body)))
    }

    /// Asserts an envelope failure with this status and code; answers the envelope.
    #[track_caller]
    fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.head);
        let envelope = self.envelope();
        assert_eq!(envelope["success"], false, "{envelope}");
        assert_eq!(envelope["error"]["code"], code, "{envelope}");
        assert!(envelope["metadata"]["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{envelope}");
        envelope
    }
}

/// Reads one answer (head, then a body of its `Content-Length`) within `PATIENCE`.
async fn read_answer(stream: &mut TcpStream) -> RawAnswer {
    tokio::time::timeout(PATIENCE, read_answer_now(stream)).await.expect("an answer in time")
}

async fn read_answer_now(stream: &mut TcpStream) -> RawAnswer {
    let mut received = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut chunk).await.expect("reads");
        assert!(read > 0, "closed before a whole head: {}", String::from_utf8_lossy(&received));
        received.extend_from_slice(&chunk[..read]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a status code");
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = received[head_end..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut chunk).await.expect("reads");
        assert!(read > 0, "closed within the body");
        body.extend_from_slice(&chunk[..read]);
    }
    RawAnswer { status, head, body }
}

#[tokio::test]
async fn slowloris_clients_are_cut_off_while_others_are_served() {
    let app = spawn_app_with(|config| config.server.header_read_timeout_ms = 300).await;
    let mut slow = Vec::new();
    for _ in 0..20 {
        let stream = connect(&app).await;
        let (mut reader, mut writer) = stream.into_split();
        slow.push(tokio::spawn(async move {
            // Ends when a write fails: the server has closed the connection.
            let trickle = async {
                let mut next: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: hub.invalid\r\nX-Slow: ";
                while writer.write_all(next).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    next = b"a";
                }
            };
            let started = Instant::now();
            let closed = async {
                let mut scratch = [0u8; 256];
                while reader.read(&mut scratch).await.is_ok_and(|read| read > 0) {}
            };
            tokio::select! {
                _ = tokio::time::timeout(PATIENCE, closed) => {}
                _ = trickle => {}
            }
            started.elapsed()
        }));
    }
    // Served meanwhile, while the slow heads trickle in.
    let answer = app.send(app.client.get(app.url("/health/live"))).await;
    answer.assert_status(200);
    for connection in slow {
        let lasted = connection.await.expect("the slow client");
        assert!(lasted >= Duration::from_millis(250), "cut off too early: {lasted:?}");
        assert!(lasted < Duration::from_secs(5), "still open after {lasted:?}");
    }
}

#[tokio::test]
async fn a_kept_alive_connection_closes_when_idle_and_its_next_head_is_timed_from_its_first_byte() {
    let app = spawn_app_with(|config| {
        config.server.header_read_timeout_ms = 300;
        config.server.idle_timeout_ms = 3_000;
    })
    .await;

    let mut idle = connect(&app).await;
    idle.write_all(HEALTH_REQUEST).await.expect("sent");
    read_answer(&mut idle).await;
    let lasted = time_until_closed(&mut idle).await.expect("closed once idle");
    // Longer than the head timeout: an idle connection is not waiting for a head.
    assert!(lasted >= Duration::from_millis(2_500), "closed after {lasted:?}");

    let mut slow = connect(&app).await;
    slow.write_all(HEALTH_REQUEST).await.expect("sent");
    read_answer(&mut slow).await;
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHo").await.expect("sent");
    let lasted = time_until_closed(&mut slow).await.expect("closed");
    assert!(lasted < Duration::from_millis(2_000), "the head timeout, not the idle one: {lasted:?}");
}

#[tokio::test]
async fn a_stalled_body_is_answered_in_the_envelope_and_the_connection_closed() {
    let app = spawn_app_with(|config| config.server.body_read_timeout_ms = 300).await;
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: hub.invalid\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"event",
        app.admin_token
    );
    let started = Instant::now();
    stream.write_all(head.as_bytes()).await.expect("sent");
    let answer = read_answer(&mut stream).await;
    assert!(started.elapsed() >= Duration::from_millis(250), "answered after {:?}", started.elapsed());
    let envelope = answer.assert_error(400, "validation_error");
    assert_eq!(envelope["error"]["details"][0]["field"], "body", "{envelope}");
    let message = envelope["error"]["details"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("not received in time"), "{message}");
    assert!(answer.head.to_ascii_lowercase().contains("connection: close"), "{}", answer.head);
    assert!(time_until_closed(&mut stream).await.is_some(), "the connection is closed");
    assert_eq!(app.count("/v1/events").await, 0);
}

#[tokio::test]
async fn an_announced_body_over_the_limit_is_refused_before_100_continue() {
    let app = spawn_app_with(|_| {}).await;
    for authorization in [format!("Authorization: Bearer {}\r\n", app.admin_token), String::new()] {
        let mut stream = connect(&app).await;
        let head = format!(
            "POST /v1/events HTTP/1.1\r\nHost: hub.invalid\r\n{authorization}Content-Type: application/json\r\n\
             Content-Length: 5000000\r\nExpect: 100-continue\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("sent");
        let answer = read_answer(&mut stream).await;
        let envelope = answer.assert_error(413, "payload_too_large");
        let message = envelope["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("5000000") && message.contains("limits.max_body_bytes"), "{message}");
    }
}

#[tokio::test]
async fn a_request_past_the_request_timeout_answers_unavailable() {
    let app = spawn_app_with(|config| config.server.request_timeout_ms = 300).await;
    // Held past the store's own busy timeout (5 s), so only the request timeout can answer.
    let pool = app.database().await;
    let mut side = pool.acquire().await.expect("a side connection");
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *side).await.expect("the write lock");
    let started = Instant::now();
    let destination =
        json!({"name": "sink", "kind": "http", "config": {"url": "https://hooks.hub.invalid/in"}});
    let answer = app.post("/v1/destinations", destination).await;
    let waited = started.elapsed();
    sqlx::query("ROLLBACK").execute(&mut *side).await.expect("release the lock");
    answer.assert_error(503, "unavailable");
    assert_eq!(answer.header("retry-after"), Some("1"));
    let message = answer.body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("server.request_timeout_ms"), "{message}");
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
    assert_eq!(app.count("/v1/destinations").await, 0);
}

#[tokio::test]
async fn overlong_urls_and_too_many_headers_are_refused_in_the_envelope() {
    let app = spawn_app_with(|_| {}).await;
    let long_query = format!("/health/live?pad={}", "a".repeat(9 * 1024));
    let answer = app.send(app.client.get(app.url(&long_query))).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["url"]);
    let answer = app.send(app.request(Method::GET, &format!("/v1/events?{}", "a".repeat(9 * 1024)))).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["url"]);

    let mut crowded = app.request(Method::GET, "/v1/events");
    for index in 0..120 {
        crowded = crowded.header(format!("x-extra-{index}"), "1");
    }
    let answer = app.send(crowded).await;
    answer.assert_error(400, "validation_error");
    assert_eq!(answer.detail_fields(), ["headers"]);
    let message = answer.body["error"]["details"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("the limit is 100"), "{message}");
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_wait_until_one_closes() {
    let app = spawn_app_with(|config| config.server.max_connections = 2).await;
    // Two kept-alive connections, each proven accepted by an answer, hold the cap.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&app).await;
        stream.write_all(HEALTH_REQUEST).await.expect("sent");
        assert_eq!(read_answer(&mut stream).await.status, 200);
        held.push(stream);
    }
    let mut waiting = connect(&app).await;
    waiting.write_all(HEALTH_REQUEST).await.expect("sent");
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut first)).await;
    assert!(early.is_err(), "answered past the cap: {early:?}");
    drop(held.remove(0));
    let answer = read_answer(&mut waiting).await;
    assert_eq!(answer.status, 200, "{}", answer.head);
}

#[tokio::test]
async fn thousands_of_idle_connections_are_cut_off_while_the_node_stays_ready() {
    switchyard::raise_open_files_limit();
    let app = spawn_app_with(|config| {
        config.server.max_connections = 1_000;
        config.server.header_read_timeout_ms = 300;
        config.server.idle_timeout_ms = 300;
    })
    .await;
    // One connection at a time: a burst of handshakes would overflow the kernel's queue of
    // half-open connections, whose SYN cookies then leave clients believing in connections
    // the server never saw.
    let mut idle = Vec::new();
    for _ in 0..2_000 {
        let mut stream = connect(&app).await;
        idle.push(tokio::spawn(async move { time_until_closed(&mut stream).await }));
    }
    ready_within_patience(&app.address).await;
    for connection in idle {
        let closed = connection.await.expect("the idle client");
        assert!(closed.is_some(), "an idle connection was never closed");
    }
}

/// Running out of file descriptors, as with more idle clients than `ulimit -n`, fails `accept`
/// with EMFILE for a while: the node backs off instead of spinning or dying, cuts the idle
/// clients off at the head timeout, and answers again.
#[tokio::test]
async fn running_out_of_file_descriptors_delays_new_connections_but_never_stops_the_node() {
    switchyard::raise_open_files_limit();
    let dir = tempfile::tempdir().expect("a directory");
    let mut command = Command::new("sh");
    command
        .args([
            "-c",
            "ulimit -S -n 256 && ulimit -H -n 256 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_switchyard"),
        ])
        .current_dir(dir.path())
        .env("SWITCHYARD_DATABASE__URL", format!("sqlite://{}", dir.path().join("switchyard.db").display()))
        .env("SWITCHYARD_SERVER__HEADER_READ_TIMEOUT_MS", "500")
        .env("SWITCHYARD_LOG__LEVEL", "error")
        .env("NO_COLOR", "1");
    let mut node = crate::process::serve(command).await;
    let address = node.address.trim_start_matches("http://").to_owned();
    let mut idle = Vec::new();
    for _ in 0..400 {
        let mut stream = tokio::time::timeout(PATIENCE, TcpStream::connect(&address))
            .await
            .expect("connects in time")
            .expect("connects");
        idle.push(tokio::spawn(async move { time_until_closed(&mut stream).await }));
    }
    ready_within_patience(&node.address).await;
    for connection in idle {
        assert!(connection.await.expect("the idle client").is_some(), "an idle connection was never closed");
    }
    node.child.kill().expect("stopped");
    let _ = node.child.wait();
}

/// Asserts `/health/ready` at `address` answers 200 within `PATIENCE`, on fresh connections.
async fn ready_within_patience(address: &str) {
    let client = crate::helpers::http_client();
    let started = Instant::now();
    loop {
        let ready = tokio::time::timeout(
            Duration::from_secs(2),
            client.get(format!("{address}/health/ready")).send(),
        )
        .await;
        if let Ok(Ok(response)) = ready
            && response.status() == 200
        {
            return;
        }
        assert!(started.elapsed() < PATIENCE, "/health/ready did not answer amid the idle connections");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
