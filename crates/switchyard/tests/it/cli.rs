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

#[tokio::test]
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
