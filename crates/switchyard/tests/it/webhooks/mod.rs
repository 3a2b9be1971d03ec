//! `POST /v1/sources/{id}/webhook`: what providers send, signed here the way each provider
//! documents it (written independently of the hub's verifier; Standard Webhooks by its Python
//! reference library), becomes one event, routed and delivered like any other; forgeries are
//! refused with nothing stored.
//!
//! - `providers`: GitHub, Stripe, Shopify and Standard Webhooks, accepted, deduplicated, forged.
//! - `schemes`: the generic schemes (`hmac`, `basic`, `api_key`, `none`) and `forward_headers`.
//! - `intake`: bodies, size and rate limits, unknown and disabled sources.
//! - `observed`: metrics, the status report's sources and blocker, and delivery end to end.

mod intake;
mod observed;
mod providers;
mod schemes;

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Sha256, Sha512};

use crate::helpers::{Answer, TestApp};

pub const GITHUB_SECRET: &str = "It's a Secret to Everybody";
pub const STRIPE_SECRET: &str = "whsec_stripe_secret_for_the_tests";
pub const SHOPIFY_SECRET: &str = "shpss_shopify_secret_for_the_tests";

/// Headers as a test writes them: name and value.
pub type Headers = Vec<(String, String)>;

pub fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
}

/// Creates an enabled webhook source with `config`; answers its id.
pub async fn create_source(app: &TestApp, name: &str, config: Value) -> String {
    let answer = app.post("/v1/sources", json!({"name": name, "kind": "webhook", "config": config})).await;
    answer.assert_status(201);
    answer.data()["id"].as_str().expect("an id").to_owned()
}

/// A provider's request to the source's public URL: no bearer token.
pub async fn webhook(app: &TestApp, source_id: &str, headers: &Headers, body: &[u8]) -> Answer {
    let mut request =
        app.client.post(app.url(&format!("/v1/sources/{source_id}/webhook"))).body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    app.send(request).await
}

/// Asserts a 401 `unauthorized` that says nothing about why (the same words for every forgery).
#[track_caller]
pub fn assert_refused(answer: &Answer, what: &str) {
    assert_eq!(answer.status.as_u16(), 401, "{what}: {}", answer.body);
    assert_eq!(answer.body["error"]["code"], "unauthorized", "{what}: {}", answer.body);
    assert_eq!(
        answer.body["error"]["message"], "the webhook's signature could not be verified",
        "{what}: the answer must not say which check failed"
    );
}

/// Asserts a 200 receipt for `event_id`.
#[track_caller]
pub fn assert_received(answer: &Answer, event_id: &str, duplicate: bool) {
    answer.assert_status(200);
    assert_eq!(answer.data(), &json!({"event_id": event_id, "duplicate": duplicate}), "{}", answer.body);
}

/// Reads the stored event and checks what a webhook made of it.
pub async fn assert_event(
    app: &TestApp,
    event_id: &str,
    event_type: &str,
    body: &[u8],
    source_id: &str,
) -> Value {
    let answer = app.get(&format!("/v1/events/{event_id}")).await;
    answer.assert_status(200);
    let event = answer.data().clone();
    assert_eq!(event["event_id"], event_id, "{event}");
    assert_eq!(event["event_type"], event_type, "{event}");
    let sent: Value = serde_json::from_slice(body).expect("the test's body is JSON");
    assert_eq!(event["payload"], sent, "the payload is the body");
    assert_eq!(event["source"], format!("webhook:{source_id}"), "{event}");
    assert!(event["published_by"].is_null(), "no API principal published it: {event}");
    event
}

pub async fn event_count(app: &TestApp) -> u64 {
    app.count("/v1/events").await
}

pub fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

pub fn hmac_sha512(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha512>::new_from_slice(key).expect("any key length");
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    format!("sha256={}", hex(&hmac_sha256(secret.as_bytes(), body)))
}

/// A GitHub delivery's headers, signed with `secret`.
pub fn github_headers(secret: &str, body: &[u8], event: &str, delivery: &str) -> Headers {
    headers(&[
        ("content-type", "application/json"),
        ("user-agent", "GitHub-Hookshot/044aadd"),
        ("x-github-event", event),
        ("x-github-delivery", delivery),
        ("x-github-hook-id", "292430182"),
        ("x-hub-signature-256", &github_signature(secret, body)),
    ])
}

/// Stripe: `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`, keyed with the
/// secret's text as the dashboard shows it.
pub fn stripe_mac(secret: &str, t: i64, body: &[u8]) -> String {
    let mut signed = format!("{t}.").into_bytes();
    signed.extend_from_slice(body);
    hex(&hmac_sha256(secret.as_bytes(), &signed))
}

pub fn stripe_headers(secret: &str, t: i64, body: &[u8]) -> Headers {
    let signature = format!("t={t},v1={}", stripe_mac(secret, t, body));
    headers(&[("content-type", "application/json; charset=utf-8"), ("stripe-signature", &signature)])
}

/// Shopify: `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>`.
pub fn shopify_signature(secret: &str, body: &[u8]) -> String {
    STANDARD.encode(hmac_sha256(secret.as_bytes(), body))
}

pub fn shopify_headers(secret: &str, body: &[u8], topic: &str, webhook_id: &str) -> Headers {
    headers(&[
        ("content-type", "application/json"),
        ("x-shopify-topic", topic),
        ("x-shopify-webhook-id", webhook_id),
        ("x-shopify-shop-domain", "example.myshopify.com"),
        ("x-shopify-hmac-sha256", &shopify_signature(secret, body)),
    ])
}

/// A Standard Webhooks secret: `whsec_` and `bytes` in base64.
pub fn whsec(bytes: &[u8]) -> String {
    format!("whsec_{}", STANDARD.encode(bytes))
}

const SIGN: &str = r#"
import datetime, sys
from standardwebhooks.webhooks import Webhook
at = datetime.datetime.fromtimestamp(int(sys.argv[3]), tz=datetime.timezone.utc)
print(Webhook(sys.argv[1]).sign(sys.argv[2], at, open(sys.argv[4], "rb").read().decode()), end="")
"#;

/// The reference library, or `None` (said loudly) when `python3` cannot import it outside CI.
/// In CI (`CI=true`) its absence fails the test: `scripts/test` installs it.
pub fn reference_signer(test: &str) -> Option<ReferenceSigner> {
    let available = Command::new("python3")
        .args(["-c", "import standardwebhooks.webhooks"])
        .output()
        .is_ok_and(|out| out.status.success());
    if available {
        return Some(ReferenceSigner);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the Python package standardwebhooks is not importable; CI must install it \
         (python3 -m pip install standardwebhooks)"
    );
    eprintln!("\n**** SKIPPED: pip install standardwebhooks to run {test} ****\n");
    None
}

/// Signs with the Standard Webhooks reference library (Python). The body goes as text, which
/// every version of its `sign` takes.
pub struct ReferenceSigner;

impl ReferenceSigner {
    /// `v1,<base64>` for `body` sent as message `msg_id` at `timestamp` (unix seconds).
    pub fn sign(&self, secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("body");
        std::fs::write(&path, body).expect("the body is written");
        let out = Command::new("python3")
            .arg("-c")
            .arg(SIGN)
            .arg(secret)
            .arg(msg_id)
            .arg(timestamp.to_string())
            .arg(&path)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "the reference library failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let signature = String::from_utf8(out.stdout).expect("UTF-8");
        assert!(signature.starts_with("v1,"), "{signature}");
        signature
    }

    /// The three Standard Webhooks headers of a message signed with `secret`.
    pub fn headers(&self, secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Headers {
        let signature = self.sign(secret, msg_id, timestamp, body);
        headers(&[
            ("content-type", "application/json"),
            ("webhook-id", msg_id),
            ("webhook-timestamp", &timestamp.to_string()),
            ("webhook-signature", &signature),
        ])
    }
}

/// `headers` with `name` replaced by `value` (or removed, for `None`).
pub fn with(mut headers: Headers, name: &str, value: Option<&str>) -> Headers {
    headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    if let Some(value) = value {
        headers.push((name.to_owned(), value.to_owned()));
    }
    headers
}
