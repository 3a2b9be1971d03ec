//! What operators see of a source (its metric, its line in `GET /v1/status`, a `source_failing`
//! blocker while its provider's signatures fail) and what subscribers get: a webhook's event
//! routed to a destination and delivered, signed by the hub.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use prometheus_parse::{Scrape, Value as Sample};
use serde_json::{Value, json};

use super::{
    GITHUB_SECRET, assert_received, assert_refused, create_source, github_headers, hmac_sha256, webhook,
    whsec,
};
use crate::helpers::{TestApp, spawn_app};
use crate::sink::{Behaviour, Sink};

const DEADLINE: Duration = Duration::from_secs(20);

async fn scrape(app: &TestApp) -> Scrape {
    let response = app.client.get(app.url("/metrics")).send().await.expect("a scrape");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("a body");
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("Prometheus text format")
}

/// `switchyard_source_requests_total{source, outcome}`; 0 when the series does not exist.
fn requests(scrape: &Scrape, source: &str, outcome: &str) -> f64 {
    let sample = scrape.samples.iter().find(|s| {
        s.metric == "switchyard_source_requests_total"
            && s.labels.get("source") == Some(source)
            && s.labels.get("outcome") == Some(outcome)
    });
    match sample.map(|s| &s.value) {
        None => 0.0,
        Some(Sample::Counter(v) | Sample::Untyped(v)) => *v,
        Some(other) => panic!("not a counter: {other:?}"),
    }
}

#[tokio::test]
async fn requests_are_counted_by_source_and_outcome() {
    let app = spawn_app().await;
    let config = json!({"verification": {"type": "github", "secret": GITHUB_SECRET},
                        "rate_limit": {"per_second": 1, "burst": 4}});
    let id = create_source(&app, "github", config).await;
    let quiet =
        create_source(&app, "quiet", json!({"verification": {"type": "github", "secret": "q"}})).await;
    let body = br#"{"zen":"x"}"#;
    let good = github_headers(GITHUB_SECRET, body, "push", "metered-1");

    assert_received(&webhook(&app, &id, &good, body).await, "metered-1", false);
    assert_received(&webhook(&app, &id, &good, body).await, "metered-1", true);
    for n in 0..2 {
        let forged = github_headers("wrong", body, "push", &format!("forged-{n}"));
        assert_refused(&webhook(&app, &id, &forged, body).await, "a forgery");
    }
    let not_json = b"not json";
    let sent = github_headers(GITHUB_SECRET, not_json, "push", "metered-2");
    webhook(&app, &id, &sent, not_json).await.assert_error(400, "validation_error");
    // Three of the 4 tokens are gone (verified requests take one, duplicate and invalid ones
    // too; forgeries none): the flood gets the rest of the burst, then refusals.
    let mut limited = 0;
    for n in 0..4 {
        let sent = github_headers(GITHUB_SECRET, body, "push", &format!("flood-{n}"));
        if webhook(&app, &id, &sent, body).await.status == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 1, "the burst of 4 ran out");

    let scrape = scrape(&app).await;
    assert_eq!(requests(&scrape, &id, "accepted"), f64::from(5 - limited), "accepted");
    assert_eq!(requests(&scrape, &id, "duplicate"), 1.0, "duplicate");
    assert_eq!(requests(&scrape, &id, "unauthorized"), 2.0, "unauthorized");
    assert_eq!(requests(&scrape, &id, "invalid"), 1.0, "invalid");
    assert_eq!(requests(&scrape, &id, "rate_limited"), f64::from(limited), "rate_limited");
    for outcome in ["accepted", "duplicate", "unauthorized", "invalid", "rate_limited"] {
        assert_eq!(requests(&scrape, &quiet, outcome), 0.0, "{outcome} of a source that received nothing");
    }
}

async fn status(app: &TestApp) -> Value {
    let answer = app.get("/v1/status").await;
    answer.assert_status(200);
    answer.data().clone()
}

fn source_line<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["source_id"] == id)
        .unwrap_or_else(|| panic!("the source is listed: {report}"))
}

fn failing_blockers(report: &Value) -> Vec<Value> {
    report["blockers"]
        .as_array()
        .expect("blockers")
        .iter()
        .filter(|b| b["kind"] == "source_failing")
        .cloned()
        .collect()
}

#[tokio::test]
async fn status_lists_sources_and_a_source_failing_verification_is_a_blocker_until_one_passes() {
    let app = spawn_app().await;
    let id = create_source(
        &app,
        "GitHub org",
        json!({"verification": {"type": "github", "secret": GITHUB_SECRET}}),
    )
    .await;
    let report = status(&app).await;
    let line = source_line(&report, &id);
    assert_eq!(line["name"], "GitHub org");
    assert_eq!(line["kind"], "webhook");
    assert_eq!(line["enabled"], true);
    assert_eq!(line["verification"], "github");
    assert!(line["last_request_at"].is_null(), "no request yet: {line}");
    assert_eq!(line["activity"]["accepted"], 0);
    assert_eq!(line["activity"]["failing"], false);
    assert!(!report.to_string().contains(GITHUB_SECRET), "the report shows no secret");

    let body = br#"{"zen":"x"}"#;
    assert_received(
        &webhook(&app, &id, &github_headers(GITHUB_SECRET, body, "push", "st-0"), body).await,
        "st-0",
        false,
    );
    let forged =
        |n: usize| github_headers("rotated at the provider", body, "push", &format!("st-forged-{n}"));
    for n in 0..4 {
        assert_refused(&webhook(&app, &id, &forged(n), body).await, "a forgery");
    }
    let report = status(&app).await;
    assert!(failing_blockers(&report).is_empty(), "4 refusals are not yet failing: {report}");
    assert_eq!(source_line(&report, &id)["activity"]["failing"], false);

    assert_refused(&webhook(&app, &id, &forged(4), body).await, "the fifth forgery in a row");
    let report = status(&app).await;
    let line = source_line(&report, &id);
    assert_eq!(line["activity"]["accepted"], 1, "{line}");
    assert_eq!(line["activity"]["unauthorized"], 5, "{line}");
    assert_eq!(line["activity"]["failing"], true, "{line}");
    assert!(line["activity"]["last_rejection"].as_str().is_some_and(|r| !r.is_empty()), "{line}");
    assert!(line["last_request_at"].as_str().is_some_and(|at| at.ends_with('Z')), "{line}");
    let blockers = failing_blockers(&report);
    assert_eq!(blockers.len(), 1, "{report}");
    assert_eq!(blockers[0]["source_id"], id.as_str());
    assert!(blockers[0]["destination_id"].is_null(), "{report}");
    assert!(blockers[0]["reason"].as_str().is_some_and(|r| r.contains("GitHub org")), "{report}");

    // One delivery that verifies: the provider and the hub agree again.
    assert_received(
        &webhook(&app, &id, &github_headers(GITHUB_SECRET, body, "push", "st-1"), body).await,
        "st-1",
        false,
    );
    let report = status(&app).await;
    assert!(failing_blockers(&report).is_empty(), "{report}");
    assert_eq!(source_line(&report, &id)["activity"]["failing"], false);
    assert_eq!(source_line(&report, &id)["activity"]["accepted"], 2);
}

/// Whether `request` carries a Standard Webhooks `v1` signature made with `secret`.
fn signed_by_the_hub(request: &crate::sink::Received, secret: &str) -> bool {
    let key = STANDARD.decode(secret.trim_start_matches("whsec_")).expect("base64");
    let mut signed =
        format!("{}.{}.", request.header("webhook-id"), request.header("webhook-timestamp")).into_bytes();
    signed.extend_from_slice(&request.body);
    let expected = format!("v1,{}", STANDARD.encode(hmac_sha256(&key, &signed)));
    request.header("webhook-signature").split(' ').any(|s| s == expected)
}

#[tokio::test]
async fn a_github_push_is_delivered_to_a_subscribed_destination_signed_by_the_hub() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(204)).await;
    let signing_secret = whsec(b"end-to-end signing secret 32 b!!");
    let destination = app
        .post(
            "/v1/destinations",
            json!({"name": "ci", "kind": "http", "config": {"url": sink.url, "signing_secret": signing_secret}}),
        )
        .await;
    destination.assert_status(201);
    let destination = destination.data()["id"].as_str().expect("an id").to_owned();
    app.create_subscription(&destination, &["github.*"]).await;
    let id =
        create_source(&app, "github", json!({"verification": {"type": "github", "secret": GITHUB_SECRET}}))
            .await;

    let body =
        br#"{"ref":"refs/heads/main","after":"59b20b8d","repository":{"full_name":"octocat/Hello-World"}}"#;
    let delivery = "e2e00000-cc78-11e3-81ab-4c9367dc0958";
    let sent = github_headers(GITHUB_SECRET, body, "push", delivery);
    assert_received(&webhook(&app, &id, &sent, body).await, delivery, false);

    let received = sink.wait_for(DEADLINE, |r| !r.is_empty()).await;
    let request = &received[0];
    assert_eq!(
        serde_json::from_slice::<Value>(&request.body).expect("JSON"),
        serde_json::from_slice::<Value>(body).expect("JSON")
    );
    assert_eq!(request.header("x-event-type"), "github.push");
    assert_eq!(request.header("x-event-id"), delivery);
    assert!(
        signed_by_the_hub(request, &signing_secret),
        "the hub's signature verifies: {:?}",
        request.headers
    );
    assert!(
        !signed_by_the_hub(request, &whsec(b"some other secret of 32 bytes!!!")),
        "a check that can fail"
    );
    let timestamp: i64 = request.header("webhook-timestamp").parse().expect("unix seconds");
    assert!((timestamp - super::now_secs()).abs() < 60, "a fresh timestamp: {timestamp}");

    // A redelivery from GitHub is a duplicate: delivered once.
    assert_received(&webhook(&app, &id, &sent, body).await, delivery, true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.received().len(), 1, "a duplicate is not delivered again");
}
