//! The SSRF guard: private destinations are refused when written and when connected to,
//! unless `security.allow_private_destinations` allows them.

use serde_json::json;
use switchyard_adapters::UrlPolicy;
use switchyard_adapters::http::{HttpAdapter, HttpSettings};
use switchyard_core::ValidationError;
use switchyard_core::transport::{Transport, ValidatedConfig};

use super::{Sink, adapter, deliver_once, destination, expect_err};

const SETTING: &str = "security.allow_private_destinations";

fn guarded() -> HttpAdapter {
    HttpAdapter::new(HttpSettings::default(), UrlPolicy::PublicOnly)
}

/// Validates `config` as a destination write does, under `policy`.
async fn written(config: serde_json::Value, policy: UrlPolicy) -> Result<ValidatedConfig, ValidationError> {
    HttpAdapter::new(HttpSettings::default(), policy).validate(config).await
}

#[tokio::test]
async fn private_urls_are_refused_when_written_unless_allowed() {
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9000/hook",
        "http://10.0.0.1/hook",
        "http://localhost:9000/hook",
    ] {
        let config = json!({"url": url});
        let err = written(config.clone(), UrlPolicy::PublicOnly).await.expect_err(url);
        assert_eq!(err.0.len(), 1, "{url}: {err:?}");
        assert_eq!(err.0[0].field, "config.url", "{url}");
        assert!(err.0[0].message.contains(SETTING), "{url}: {}", err.0[0].message);
        written(config, UrlPolicy::AllowPrivate).await.expect(url);
    }
}

#[tokio::test]
async fn a_private_token_url_is_refused_when_written() {
    let config = json!({
        "url": "https://hooks.example.com/in",
        "auth": {
            "type": "oauth2_client_credentials",
            "token_url": "http://169.254.169.254/token",
            "client_id": "hub",
            "client_secret": "s3cret"
        }
    });
    let err = written(config, UrlPolicy::PublicOnly).await.expect_err("refused");
    assert_eq!(err.0.len(), 1, "{err:?}");
    assert_eq!(err.0[0].field, "config.auth.token_url");
}

#[tokio::test]
async fn a_public_name_that_does_not_resolve_is_accepted() {
    // Nothing resolves `.invalid` (RFC 6761); the connect-time check still applies later.
    let config = json!({"url": "https://hooks.switchyard.invalid/in"});
    written(config, UrlPolicy::PublicOnly).await.expect("accepted");
}

#[tokio::test]
async fn a_stored_private_destination_is_refused_at_connect_time_for_good() {
    let sink = Sink::start().await;
    let port = sink.url("").rsplit(':').next().map(str::to_owned).unwrap_or_default();
    // Stored while private destinations were allowed; the node now runs with the guard on.
    for url in [sink.url("/ok"), format!("http://localhost:{port}/ok"), format!("http://[::1]:{port}/ok")] {
        let dest = destination(json!({"url": url}));
        let err = expect_err(deliver_once(&guarded(), &dest).await);
        assert!(!err.retryable, "{url}: retrying reaches the same address");
        assert!(err.message.starts_with("refused to connect to "), "{url}: {}", err.message);
        assert!(err.message.contains(SETTING), "{url}: {}", err.message);
        assert_eq!(err.status_code, None);
    }
    assert!(sink.requests().is_empty(), "nothing reached the sink");
    // Allowed, the same destination is delivered to.
    deliver_once(&adapter(), &destination(json!({"url": sink.url("/ok")}))).await.expect("delivered");
}

#[tokio::test]
async fn a_private_token_url_is_refused_at_connect_time() {
    let sink = Sink::start().await;
    let dest = destination(json!({
        "url": "https://hooks.switchyard.invalid/in",
        "auth": {
            "type": "oauth2_client_credentials",
            "token_url": sink.url("/token"),
            "client_id": "hub",
            "client_secret": "s3cret"
        }
    }));
    let err = expect_err(deliver_once(&guarded(), &dest).await);
    assert!(!err.retryable);
    assert!(err.message.contains(SETTING), "{}", err.message);
    assert!(sink.token_requests().is_empty(), "no token was asked for");
}
