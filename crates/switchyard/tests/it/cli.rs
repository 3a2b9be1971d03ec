//! The `switchyard` binary's commands, run as a user would run them.

use std::process::{Command, Output};

use reqwest::Method;

use crate::helpers::spawn_app;

fn switchyard(args: &[&str], database_url: &str) -> Output {
    let scratch = tempfile::tempdir().expect("a working directory");
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .current_dir(scratch.path())
        .env("SWITCHYARD_DATABASE__URL", database_url)
        .env("NO_COLOR", "1")
        .output()
        .expect("the binary runs")
}

// The command blocks the test's thread while the app serves from the same runtime: with one
// thread, an app transaction caught open at that moment would hold the write lock for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_create_prints_the_token_alone_and_the_token_works() {
    let app = spawn_app().await;
    let url = format!("sqlite://{}", app.db_path.display());
    let output = switchyard(&["keys", "create", "--role", "publisher", "--name", "deploy"], &url);
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let token = stdout.strip_suffix('\n').expect("a trailing newline");
    assert!(token.starts_with("sy_") && !token.contains(char::is_whitespace), "stdout was {stdout:?}");
    let publish = app
        .send(
            app.request_as(token, Method::POST, "/v1/events")
                .json(&serde_json::json!({"event_type": "a", "payload": {}})),
        )
        .await;
    publish.assert_status(201);
    let forbidden = app.send(app.request_as(token, Method::GET, "/v1/api-keys")).await;
    forbidden.assert_error(403, "forbidden");
}

#[test]
fn keys_create_refuses_an_unknown_role() {
    let dir = tempfile::tempdir().expect("a directory");
    let url = format!("sqlite://{}", dir.path().join("k.db").display());
    let output = switchyard(&["keys", "create", "--role", "root"], &url);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("admin") && stderr.contains("viewer"), "stderr: {stderr}");
}

#[tokio::test]
async fn the_openapi_command_prints_the_served_document() {
    let app = spawn_app().await;
    let output = switchyard(&["openapi"], "sqlite://unused.db");
    assert!(output.status.success());
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    let served: serde_json::Value =
        app.client.get(app.url("/openapi.json")).send().await.expect("served").json().await.expect("JSON");
    assert_eq!(printed, served);
}

#[test]
fn an_unknown_config_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("a directory");
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    let output = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["serve", "--print-config"])
        .current_dir(dir.path())
        .env("SWITCHYARD_DATABASE__URL", &url)
        .env("SWITCHYARD_SERVER__LISTN", "127.0.0.1:1")
        .output()
        .expect("the binary runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("listn"), "stderr: {stderr}");
}

#[test]
fn print_config_masks_the_database_password() {
    let dir = tempfile::tempdir().expect("a directory");
    let output = switchyard(&["serve", "--print-config"], "postgres://app:hunter2@db.internal/switchyard");
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("hunter2"), "the password leaked: {stdout}");
    assert!(stdout.contains("db.internal"), "stdout: {stdout}");
    drop(dir);
}

#[tokio::test]
async fn the_sink_command_prints_what_it_receives_and_answers_the_status_asked() {
    use std::io::{BufRead, BufReader};
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("an address").port();
    let mut sink = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["sink", "--listen", &format!("127.0.0.1:{port}"), "--status", "202"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the sink starts");
    let client = crate::helpers::http_client();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let started = std::time::Instant::now();
    let answer = loop {
        match client.post(&url).header("webhook-id", "dlv_1").body("{\"n\":1}").send().await {
            Ok(answer) => break answer,
            Err(_) if started.elapsed() < std::time::Duration::from_secs(10) => {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await
            }
            Err(error) => panic!("the sink never answered: {error}"),
        }
    };
    assert_eq!(answer.status().as_u16(), 202);
    let stdout = sink.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("a line");
        line
    })
    .await
    .expect("read");
    sink.kill().expect("stopped");
    let _ = sink.wait();
    assert!(line.starts_with("POST /hooks webhook-id=dlv_1"), "{line}");
    assert!(line.trim_end().ends_with("body={\"n\":1}"), "{line}");
}
