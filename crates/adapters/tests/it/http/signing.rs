//! Standard Webhooks signatures, checked with an HMAC we did not write and with the reference
//! Python library.

use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use switchyard_adapters::http::config::generate_signing_secret;

use super::sink::Recorded;
use super::{Sink, adapter, deliver_once, destination, rotating};

/// `v1,<base64>` for `secret` over what the sink received, computed independently.
fn expected_signature(secret: &str, request: &Recorded) -> String {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").expect("a whsec_ secret")).expect("base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(request.header("webhook-id").expect("an id").as_bytes());
    mac.update(b".");
    mac.update(request.header("webhook-timestamp").expect("a timestamp").as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

fn signatures(request: &Recorded) -> Vec<String> {
    request.header("webhook-signature").map(|s| s.split(' ').map(str::to_owned).collect()).unwrap_or_default()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test]
async fn one_signature_with_the_current_secret() {
    let sink = Sink::start().await;
    let secret = generate_signing_secret();
    let dest = destination(json!({"url": sink.url("/ok"), "signing_secret": secret}));
    deliver_once(&adapter(), &dest).await.expect("delivered");
    let request = sink.single_request();
    assert_eq!(signatures(&request), [expected_signature(&secret, &request)]);
}

#[tokio::test]
async fn both_secrets_sign_during_a_rotation_and_only_the_new_one_after() {
    let sink = Sink::start().await;
    let adapter = adapter();
    let (new, old) = (generate_signing_secret(), generate_signing_secret());
    let config = json!({"url": sink.url("/ok"), "signing_secret": new});
    let during = rotating(config.clone(), &old, now_ms() + 3_600_000);
    deliver_once(&adapter, &during).await.expect("delivered");
    let expired = rotating(config, &old, now_ms() - 1);
    deliver_once(&adapter, &expired).await.expect("delivered");
    let requests = sink.requests();
    assert_eq!(
        signatures(&requests[0]),
        [expected_signature(&new, &requests[0]), expected_signature(&old, &requests[0])]
    );
    assert_eq!(signatures(&requests[1]), [expected_signature(&new, &requests[1])]);
}

#[tokio::test]
async fn without_a_secret_no_signature_is_sent() {
    let sink = Sink::start().await;
    let mut dest = destination(json!({"url": sink.url("/ok")}));
    dest.secrets.remove("signing_secret");
    deliver_once(&adapter(), &dest).await.expect("delivered");
    let request = sink.single_request();
    assert_eq!(request.header("webhook-signature"), None);
    assert!(request.header("webhook-id").is_some());
}

/// Whether `python3` can import the reference library.
fn standardwebhooks_available() -> bool {
    Command::new("python3")
        .args(["-c", "import standardwebhooks.webhooks"])
        .output()
        .is_ok_and(|out| out.status.success())
}

const VERIFY: &str = r#"
import json, sys
from standardwebhooks.webhooks import Webhook
body = open(sys.argv[1], "rb").read()
headers = json.load(open(sys.argv[2]))
Webhook(sys.argv[3]).verify(body, headers)
"#;

/// Runs the reference verifier on what the sink received, for `secret`.
fn python_verifies(request: &Recorded, secret: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let body = dir.path().join("body");
    let headers = dir.path().join("headers.json");
    std::fs::write(&body, &request.body).expect("write the body");
    let header_map: serde_json::Map<String, serde_json::Value> = request
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.to_string(), json!(value.to_str().ok()?))))
        .collect();
    std::fs::write(&headers, serde_json::to_vec(&header_map).expect("json")).expect("write");
    let out = Command::new("python3")
        .arg("-c")
        .arg(VERIFY)
        .arg(&body)
        .arg(&headers)
        .arg(secret)
        .output()
        .expect("python3 runs");
    if out.status.success() { Ok(()) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
}

#[tokio::test]
async fn the_reference_library_verifies_every_active_secret() {
    if !standardwebhooks_available() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "the Python package standardwebhooks is not importable; CI must install it \
                 (python3 -m pip install standardwebhooks)"
            );
        }
        eprintln!(
            "\n**** SKIPPED: pip install standardwebhooks to run \
             the_reference_library_verifies_every_active_secret ****\n"
        );
        return;
    }
    let sink = Sink::start().await;
    let adapter = adapter();
    let (new, old) = (generate_signing_secret(), generate_signing_secret());
    let config = json!({"url": sink.url("/ok"), "signing_secret": new});
    deliver_once(&adapter, &rotating(config.clone(), &old, now_ms() + 60_000)).await.expect("delivered");
    deliver_once(&adapter, &rotating(config, &old, now_ms() - 1)).await.expect("delivered");
    let requests = sink.requests();
    for secret in [&new, &old] {
        python_verifies(&requests[0], secret).expect("verified during the rotation");
    }
    python_verifies(&requests[1], &new).expect("verified with the new secret");
    assert!(python_verifies(&requests[1], &old).is_err(), "the expired secret no longer signs");
}
