//! `GET /v1/status`: blockers appear when a destination's circuit opens and its deliveries die,
//! and clear after the sink recovers and the dead letters are replayed; YAML says the same.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::sink::{Behaviour, Sink};

const DEADLINE: Duration = Duration::from_secs(20);

async fn status(app: &TestApp, token: &str) -> Value {
    let answer = app.send(app.request_as(token, Method::GET, "/v1/status")).await;
    answer.assert_status(200);
    answer.data().clone()
}

fn blocker_kinds(report: &Value, destination: &str) -> Vec<String> {
    let mut kinds: Vec<String> = report["blockers"]
        .as_array()
        .expect("blockers")
        .iter()
        .filter(|b| b["destination_id"] == destination)
        .map(|b| b["kind"].as_str().expect("a kind").to_owned())
        .collect();
    kinds.sort();
    kinds
}

fn service<'a>(report: &'a Value, destination: &str) -> &'a Value {
    report["external_services"]
        .as_array()
        .expect("external_services")
        .iter()
        .find(|s| s["destination_id"] == destination)
        .expect("the destination is listed")
}

/// Polls the report until `done` holds; answers it.
async fn status_until(app: &TestApp, token: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let report = status(app, token).await;
        if done(&report) {
            return report;
        }
        assert!(started.elapsed() < DEADLINE, "the status never showed {what}: {report}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn yaml_status(app: &TestApp, token: &str) -> Value {
    let response = app
        .request_as(token, Method::GET, "/v1/status?format=yaml")
        .send()
        .await
        .expect("the request is sent");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/yaml");
    let text = response.text().await.expect("a body");
    let parsed: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("not YAML ({e}): {text}"));
    parsed["integration_status"].clone()
}

#[tokio::test]
async fn an_open_circuit_and_dead_letters_are_blockers_until_recovery() {
    let app = spawn_app().await;
    let viewer = app.issue_key("viewer").await;
    let sink = Sink::start(Behaviour::Status(503)).await;
    let answer = app
        .post(
            "/v1/destinations",
            json!({
                "name": "billing", "kind": "http", "config": {"url": sink.url},
                "retry": {"max_attempts": 2, "initial_delay_ms": 50, "multiplier": 1.0, "jitter": 0.0},
                "circuit_breaker": {"consecutive_failures": 2, "cooldown_ms": 3_000, "max_cooldown_ms": 3_000},
            }),
        )
        .await;
    answer.assert_status(201);
    let billing = answer.data()["id"].as_str().expect("an id").to_owned();
    app.create_subscription(&billing, &["invoice.*"]).await;

    let fresh = status(&app, &viewer).await;
    assert_eq!(fresh["api"], "deployed");
    assert_eq!(fresh["database"], "migrations_complete");
    assert_eq!(service(&fresh, &billing)["state"], "configured", "{fresh}");
    assert_eq!(fresh["blockers"], json!([]), "{fresh}");

    // Two failures: the circuit opens and the delivery's attempts are spent.
    app.publish(json!({"event_id": "inv-1", "event_type": "invoice.paid", "payload": {}}))
        .await
        .assert_status(201);
    let blocked = status_until(&app, &viewer, "both blockers", |r| {
        blocker_kinds(r, &billing) == ["circuit_open", "dead_letters"]
    })
    .await;
    let billing_service = service(&blocked, &billing);
    assert_eq!(billing_service["circuit"], "open", "{blocked}");
    assert_eq!(billing_service["dead"], 1);
    assert_eq!(billing_service["circuit_reason"], "2 consecutive failures");
    for blocker in blocked["blockers"].as_array().expect("blockers") {
        assert!(blocker["reason"].as_str().is_some_and(|r| r.contains("billing")), "{blocker}");
    }
    let performance = &blocked["performance"];
    assert!(performance["requests"].as_u64().is_some_and(|n| n >= 3), "{performance}");
    assert!(performance["latency_ms"]["p99"].is_u64(), "{performance}");
    assert!(performance["throughput"].as_f64().is_some_and(|t| t > 0.0), "{performance}");

    // The YAML form: the same report under `integration_status:` (the performance figures
    // move with every request, so they are compared by shape only).
    let yaml = yaml_status(&app, &viewer).await;
    let json_form = status(&app, &viewer).await;
    for field in ["api", "database", "external_services", "blockers"] {
        assert_eq!(yaml[field], json_form[field], "{field} differs between YAML and JSON");
    }
    assert!(yaml["performance"]["latency_ms"].is_object() && yaml["performance"]["window_ms"] == 60_000);

    let unknown = app.send(app.request_as(&viewer, Method::GET, "/v1/status?format=xml")).await;
    unknown.assert_error(400, "validation_error");
    assert_eq!(unknown.detail_fields(), ["format"]);

    // Recovery: the sink is back and the dead letter is replayed; after the cool-down its
    // probe closes the circuit.
    sink.set(Behaviour::Status(204));
    let replay = app.post("/v1/dead-letters/replay", json!({"destination_id": billing})).await;
    replay.assert_status(202);
    assert_eq!(replay.data()["count"], 1);
    let recovered = status_until(&app, &viewer, "no blockers", |r| {
        r["blockers"].as_array().is_some_and(Vec::is_empty) && service(r, &billing)["circuit"] == "closed"
    })
    .await;
    let billing_service = service(&recovered, &billing);
    assert_eq!(billing_service["dead"], 0, "{recovered}");
    assert_eq!(billing_service["pending"], 0, "{recovered}");
    assert_eq!(billing_service["state"], "monitoring", "a success seen, attempts in the window: {recovered}");
    assert_eq!(sink.received().iter().filter(|r| r.succeeded()).count(), 1);
}

#[tokio::test]
async fn a_paused_destination_with_a_backlog_is_a_blocker() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(204)).await;
    let destination = app.create_destination(&sink.url).await;
    app.create_subscription(&destination, &["order.*"]).await;
    app.post(&format!("/v1/destinations/{destination}/pause"), json!({})).await.assert_status(200);
    app.publish(json!({"event_type": "order.created", "payload": {}})).await.assert_status(201);

    let report = status(&app, &app.admin_token).await;
    assert_eq!(blocker_kinds(&report, &destination), ["destination_paused"], "{report}");
    assert_eq!(service(&report, &destination)["enabled"], false);
    assert_eq!(service(&report, &destination)["pending"], 1);

    app.post(&format!("/v1/destinations/{destination}/resume"), json!({})).await.assert_status(200);
    // Pending stops counting it once claimed; `monitoring` once its success is recorded.
    let cleared = status_until(&app, &app.admin_token, "the backlog sent", |r| {
        service(r, &destination)["state"] == "monitoring"
    })
    .await;
    assert_eq!(cleared["blockers"], json!([]), "{cleared}");
    assert_eq!(service(&cleared, &destination)["pending"], 0, "{cleared}");
}

#[tokio::test]
async fn the_status_needs_credentials() {
    let app = spawn_app().await;
    let anonymous = app.send(app.client.get(app.url("/v1/status"))).await;
    anonymous.assert_error(401, "unauthorized");
}

/// Runs the binary off the runtime's one thread, which must keep serving the app meanwhile.
async fn switchyard_cli(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let scratch = tempfile::tempdir().expect("a working directory");
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(&args)
            .current_dir(scratch.path())
            .env_remove("SWITCHYARD_TOKEN")
            .env("NO_COLOR", "1")
            .output()
            .expect("the binary runs")
    })
    .await
    .expect("the command finished")
}

#[tokio::test]
async fn the_status_command_prints_the_report_of_a_running_node() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(204)).await;
    let destination = app.create_destination(&sink.url).await;
    let args = |format: &str| {
        ["status", "--url", &app.address, "--token", &app.admin_token, "--format", format]
            .map(str::to_owned)
            .to_vec()
    };

    let output = switchyard_cli(args("yaml")).await;
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_norway::from_slice(&output.stdout).expect("YAML on stdout");
    let status = &report["integration_status"];
    assert_eq!(status["api"], "deployed");
    assert_eq!(service(status, &destination)["state"], "configured");

    let output = switchyard_cli(args("json")).await;
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let report: Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(report["database"], "migrations_complete");

    let refused =
        switchyard_cli(["status", "--url", &app.address, "--token", "sy_wrong"].map(str::to_owned).to_vec())
            .await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("401"), "{stderr}");
}
