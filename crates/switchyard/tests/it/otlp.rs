//! OTLP export (the `otlp` feature): the spans of a request and of the delivery it causes reach
//! a collector, with the correlation id. Run with `cargo nextest run -p switchyard --features
//! otlp otlp::`; each test has its own process there, so the global subscriber is this test's.
#![cfg(feature = "otlp")]

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use switchyard::config::LogConfig;

use crate::helpers::spawn_app;
use crate::sink::{Behaviour, Sink};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn spans_with_the_correlation_id_reach_the_collector() {
    let collector = Sink::start(Behaviour::Status(200)).await;
    // As `main` does: the exporter's HTTP client needs the process's TLS provider.
    switchyard_adapters::install_crypto_provider();
    let log = LogConfig { otlp_endpoint: Some(collector.url.clone()), ..LogConfig::default() };
    switchyard::telemetry::init(&log).expect("the subscriber installs");

    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(204)).await;
    let destination = app.create_destination(&sink.url).await;
    app.create_subscription(&destination, &["order.*"]).await;
    let request = app
        .request(Method::POST, "/v1/events")
        .header("x-correlation-id", "checkout-otlp")
        .json(&json!({"event_id": "o-otlp", "event_type": "order.created", "payload": {}}));
    app.send(request).await.assert_status(201);
    sink.wait_for(Duration::from_secs(20), |r| !r.is_empty()).await;
    // The delivery's span closes once its attempt is recorded.
    let started = std::time::Instant::now();
    while app.get("/v1/deliveries?status=succeeded").await.data().as_array().is_none_or(Vec::is_empty) {
        assert!(started.elapsed() < Duration::from_secs(20), "the delivery never succeeded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::task::spawn_blocking(switchyard::telemetry::shutdown).await.expect("flushed");

    let exported = collector.received();
    assert!(!exported.is_empty(), "nothing was exported");
    assert!(exported.iter().all(|r| r.header("content-type") == "application/x-protobuf"));
    let body: Vec<u8> = exported.iter().flat_map(|r| r.body.to_vec()).collect();
    for needle in ["request", "delivery", "checkout-otlp", "o-otlp", "switchyard"] {
        assert!(contains(&body, needle.as_bytes()), "no {needle:?} in the exported spans");
    }
}
