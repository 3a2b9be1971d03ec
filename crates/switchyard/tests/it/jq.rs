//! Subscriptions' jq `filter` and `transform` end to end: checked when written, applied
//! before each send, and failing safely when they fail at run time.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::sink::{Behaviour, Sink};

const DEADLINE: Duration = Duration::from_secs(20);

async fn destination(app: &TestApp, url: &str) -> String {
    let answer = app
        .post(
            "/v1/destinations",
            json!({"name": "sink", "kind": "http", "config": {"url": url},
                   "retry": {"max_attempts": 3, "initial_delay_ms": 50, "jitter": 0.0}}),
        )
        .await;
    answer.assert_status(201);
    answer.data()["id"].as_str().expect("an id").to_owned()
}

/// A subscription to every event type with the given extra fields.
fn subscription(destination: &str, extra: Value) -> Value {
    let mut body = json!({"name": "shaped", "destination_id": destination, "event_types": ["#"]});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

async fn subscribe(app: &TestApp, destination: &str, extra: Value) -> String {
    let answer = app.post("/v1/subscriptions", subscription(destination, extra)).await;
    answer.assert_status(201);
    answer.data()["id"].as_str().expect("an id").to_owned()
}

/// Polls the only delivery of `event_id` until it has `status`; answers it with its attempts.
async fn delivery_with_status(app: &TestApp, event_id: &str, status: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let event = app.get(&format!("/v1/events/{event_id}")).await;
        let first = event.data()["deliveries"].as_array().and_then(|d| d.first());
        if let Some(delivery) = first.filter(|d| d["status"] == status) {
            let id = delivery["id"].as_str().expect("an id");
            return app.get(&format!("/v1/deliveries/{id}")).await.data().clone();
        }
        assert!(started.elapsed() < DEADLINE, "{event_id} never became {status}: {}", event.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_transform_reshapes_the_body_the_sink_receives() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(200)).await;
    let destination = destination(&app, &sink.url).await;
    let transform = "{order: .event.payload.id, type: .event.event_type, key: .event.ordering_key, \
                     lines: [.event.payload.lines[] | {sku, qty}], total: (.event.payload.lines | map(.qty) | add)}";
    subscribe(&app, &destination, json!({"transform": transform})).await;
    app.publish(json!({"event_id": "o-1", "event_type": "order.created", "ordering_key": "c-9",
                       "payload": {"id": 41, "secret": "not for them",
                                   "lines": [{"sku": "a", "qty": 2, "price": 3}, {"sku": "b", "qty": 1, "price": 9}]}}))
        .await
        .assert_status(201);

    let received = sink.wait_for(DEADLINE, |r| !r.is_empty()).await;
    assert_eq!(
        received[0].json(),
        json!({"order": 41, "type": "order.created", "key": "c-9",
               "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}], "total": 3})
    );
    assert_eq!(received[0].header("x-event-id"), "o-1", "the headers still name the event");
    delivery_with_status(&app, "o-1", "succeeded").await;
}

#[tokio::test]
async fn a_filter_drops_what_it_should_and_the_delivery_says_so() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(200)).await;
    let destination = destination(&app, &sink.url).await;
    subscribe(&app, &destination, json!({"filter": ".event.payload.total > 100"})).await;
    for (id, total) in [("small", 5), ("odd", -1), ("big", 500)] {
        app.publish(json!({"event_id": id, "event_type": "order.created", "payload": {"total": total}}))
            .await
            .assert_status(201);
    }
    app.publish(json!({"event_id": "untyped", "event_type": "order.created", "payload": {"total": "many"}}))
        .await
        .assert_status(201);

    let filtered = delivery_with_status(&app, "small", "filtered").await;
    assert_eq!(filtered["attempt_count"], 1);
    assert_eq!(filtered["last_error"], Value::Null);
    let attempts = filtered["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["outcome"], "filtered");
    assert_eq!(attempts[0]["status_code"], Value::Null);
    delivery_with_status(&app, "odd", "filtered").await;
    // A string compares above any number in jq: the filter is true, so it is delivered.
    delivery_with_status(&app, "untyped", "succeeded").await;
    delivery_with_status(&app, "big", "succeeded").await;
    // Every delivery is settled now: exactly the two the filter let through were sent.
    let mut sent: Vec<String> = sink.received().iter().map(|r| r.json()["total"].to_string()).collect();
    sent.sort();
    assert_eq!(sent, ["\"many\"", "500"]);
    assert_eq!(app.count("/v1/deliveries?status=filtered").await, 2);
    assert_eq!(app.count("/v1/dead-letters").await, 0, "filtered is not a failure");
    let retry = format!("/v1/deliveries/{}/retry", filtered["id"].as_str().expect("an id"));
    app.post(&retry, json!({})).await.assert_error(409, "conflict");
}

#[tokio::test]
async fn invalid_jq_is_a_400_naming_the_field_and_nothing_is_stored() {
    let app = spawn_app().await;
    let destination = destination(&app, "http://127.0.0.1:9/hook").await;
    for (field, program, says) in [
        ("filter", ".event | {a: .b", "expected closing brace"),
        ("transform", ".event.payload | frobnicate(1)", "undefined filter frobnicate/1 at character 18"),
        ("filter", "", "is empty"),
        ("transform", "$ENV.SECRET", "undefined variable $ENV"),
    ] {
        let answer =
            app.post("/v1/subscriptions", subscription(&destination, json!({ field: program }))).await;
        answer.assert_error(400, "validation_error");
        let details = answer.body["error"]["details"].as_array().expect("details");
        assert_eq!(details.len(), 1, "{}", answer.body);
        assert_eq!(details[0]["field"], field);
        let message = details[0]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{message:?} should say {says:?}");
    }
    // Both wrong at once, with another mistake: every problem is named.
    let both = app
        .post(
            "/v1/subscriptions",
            json!({"name": "", "destination_id": destination, "event_types": ["#"], "filter": "if",
                   "transform": "[1,"}),
        )
        .await;
    both.assert_error(400, "validation_error");
    let mut fields = both.detail_fields();
    fields.sort();
    assert_eq!(fields, ["filter", "name", "transform"]);
    assert_eq!(app.count("/v1/subscriptions").await, 0, "nothing is stored");

    // Updates are checked the same way and leave the stored subscription as it was.
    let id = subscribe(&app, &destination, json!({"filter": "true"})).await;
    let path = format!("/v1/subscriptions/{id}");
    app.patch(&path, json!({"transform": "."})).await.assert_status(200);
    app.patch(&path, json!({"filter": ".["})).await.assert_error(400, "validation_error");
    app.put(&path, subscription(&destination, json!({"transform": "map("})))
        .await
        .assert_error(400, "validation_error");
    let stored = app.get(&path).await;
    assert_eq!((&stored.data()["filter"], &stored.data()["transform"]), (&json!("true"), &json!(".")));
    assert_eq!(stored.data()["version"], 2);
}

#[tokio::test]
async fn a_failing_program_sends_the_delivery_dead_with_the_error_and_others_keep_flowing() {
    let app = spawn_app().await;
    let sink = Sink::start(Behaviour::Status(200)).await;
    let destination = destination(&app, &sink.url).await;
    let sub = |kind: &str| format!("{kind}.happened");
    let route = |pattern: &str, extra: Value| {
        let mut extra = extra;
        extra["event_types"] = json!([pattern]);
        extra
    };
    subscribe(
        &app,
        &destination,
        route(&sub("raises"), json!({"transform": ".event.payload.x | error(\"boom\")"})),
    )
    .await;
    subscribe(&app, &destination, route(&sub("mistyped"), json!({"filter": ".event.payload.name / 0"})))
        .await;
    subscribe(&app, &destination, route(&sub("endless"), json!({"transform": "[range(1e9)]"}))).await;
    subscribe(&app, &destination, route(&sub("plain"), json!({}))).await;

    for kind in ["raises", "mistyped", "endless"] {
        app.publish(json!({"event_id": kind, "event_type": sub(kind), "payload": {"x": 1, "name": "n"}}))
            .await
            .assert_status(201);
    }
    for n in 0..3 {
        app.publish(
            json!({"event_id": format!("plain-{n}"), "event_type": sub("plain"), "payload": {"n": n}}),
        )
        .await
        .assert_status(201);
    }

    let raised = delivery_with_status(&app, "raises", "dead").await;
    assert_eq!(raised["last_error"], "the transform failed: boom");
    let attempts = raised["attempts"].as_array().expect("attempts");
    assert_eq!(
        (attempts.len(), &attempts[0]["outcome"]),
        (1, &json!("permanent")),
        "no retry: it cannot pass"
    );
    let mistyped = delivery_with_status(&app, "mistyped", "dead").await;
    let error = mistyped["last_error"].as_str().unwrap_or("");
    assert!(error.starts_with("the filter failed: ") && error.contains("cannot"), "{error}");
    let endless = delivery_with_status(&app, "endless", "dead").await;
    let error = endless["last_error"].as_str().unwrap_or("");
    assert!(
        error.starts_with("the transform failed: it ")
            && (error.contains("budget") || error.contains("time limit")),
        "{error}"
    );

    // The worker is fine: the plain events arrive, and nothing else did.
    let received = sink.wait_for(DEADLINE, |r| r.len() >= 3).await;
    let mut bodies: Vec<Value> = received.iter().map(|r| r.json()).collect();
    bodies.sort_by_key(|b| b["n"].as_u64());
    assert_eq!(bodies, [json!({"n": 0}), json!({"n": 1}), json!({"n": 2})]);
    assert_eq!(app.count("/v1/dead-letters").await, 3);
    app.publish(json!({"event_id": "after", "event_type": sub("plain"), "payload": {"n": 3}}))
        .await
        .assert_status(201);
    sink.wait_for(DEADLINE, |r| r.len() >= 4).await;

    // Fixed and replayed, a dead letter runs the new version.
    let listed = app.get("/v1/subscriptions?per_page=100").await;
    let raises_sub = listed
        .data()
        .as_array()
        .expect("subscriptions")
        .iter()
        .find(|s| s["event_types"][0] == sub("raises"))
        .and_then(|s| s["id"].as_str())
        .expect("the subscription")
        .to_owned();
    app.patch(&format!("/v1/subscriptions/{raises_sub}"), json!({"transform": "{fixed: .event.payload.x}"}))
        .await
        .assert_status(200);
    app.post(&format!("/v1/deliveries/{}/retry", raised["id"].as_str().expect("an id")), json!({}))
        .await
        .assert_status(200);
    let received = sink.wait_for(DEADLINE, |r| r.iter().any(|r| r.json() == json!({"fixed": 1}))).await;
    assert_eq!(received.len(), 5);
}

/// A figure of this process's memory from `/proc/self/status` (`VmRSS`, `VmHWM`), in KiB.
fn memory_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

#[tokio::test]
async fn hostile_transforms_go_dead_with_the_reason_and_the_server_stays_up_and_small() {
    let app = spawn_app().await;
    let resident_before = memory_kib("VmRSS:");
    let sink = Sink::start(Behaviour::Status(200)).await;
    let destination = destination(&app, &sink.url).await;
    let hostile = [
        (
            "deepjson",
            r#"("[" * 500000 + "]" * 500000) | fromjson | tojson | length"#,
            "nested deeper than 512",
        ),
        ("deepvalue", "reduce range(300000) as $i ([]; [.]) | tojson", "nested deeper than 512"),
        ("bomb", r#""a" * 2000000000 | length"#, "memory budget of 16777216 bytes"),
    ];
    for (kind, transform, _) in hostile {
        let extra = json!({"transform": transform, "event_types": [format!("{kind}.happened")]});
        subscribe(&app, &destination, extra).await;
    }
    subscribe(&app, &destination, json!({"event_types": ["plain.happened"]})).await;
    for (kind, _, _) in hostile {
        app.publish(json!({"event_id": kind, "event_type": format!("{kind}.happened"), "payload": {}}))
            .await
            .assert_status(201);
    }

    for (kind, _, reason) in hostile {
        let dead = delivery_with_status(&app, kind, "dead").await;
        let error = dead["last_error"].as_str().unwrap_or("");
        assert!(error.starts_with("the transform failed: ") && error.contains(reason), "{kind}: {error}");
    }
    // Still up, and still delivering.
    app.publish(json!({"event_id": "after", "event_type": "plain.happened", "payload": {"n": 1}}))
        .await
        .assert_status(201);
    let received = sink.wait_for(DEADLINE, |r| !r.is_empty()).await;
    assert_eq!(received[0].json(), json!({"n": 1}));
    let grown_mib = memory_kib("VmHWM:").saturating_sub(resident_before) / 1024;
    assert!(grown_mib < 300, "the process grew by {grown_mib} MiB at its peak");
}
