//! Delivering to Redis Streams end to end (`REDIS_URL`, by default redis://127.0.0.1:6379): a
//! destination written through the API, an event published, the entry read back with the
//! `redis` crate.

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};

use crate::delivery::delivery_with_status;
use crate::helpers::spawn_app;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A connection to the test server, or `None` (said loudly) when it is unreachable outside
/// CI; under `CI=true` an unreachable server fails the test.
async fn server() -> Option<MultiplexedConnection> {
    let connected = async { redis::Client::open(redis_url())?.get_multiplexed_async_connection().await };
    match connected.await {
        Ok(connection) => Some(connection),
        Err(error) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("Redis at {} is unreachable under CI=true: {error}", redis_url())
        }
        Err(error) => {
            eprintln!(
                "SKIPPED: Redis at {} is unreachable ({error}); start it to run this test",
                redis_url()
            );
            None
        }
    }
}

#[tokio::test]
async fn a_published_event_becomes_an_entry_of_a_redis_stream() {
    let Some(mut connection) = server().await else { return };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let prefix = format!("switchyard-it:{:x}{:x}", std::process::id(), now.as_nanos());
    let app = spawn_app().await;
    let config = json!({"url": format!("{}/0", redis_url()), "stream": format!("{prefix}:{{event_type}}"), "max_len": 1000});
    let created =
        app.post("/v1/destinations", json!({"name": "streams", "kind": "redis", "config": config})).await;
    created.assert_status(201);
    assert_eq!(created.data()["config"]["max_len"], 1000);
    let destination = created.data()["id"].as_str().expect("an id").to_owned();
    app.create_subscription(&destination, &["order.*"]).await;
    let payload = json!({"order": 1001, "total": "12.50"});
    app.publish(json!({"event_id": "redis-1", "event_type": "order.created", "payload": payload}))
        .await
        .assert_status(201);

    let delivery = delivery_with_status(&app, "redis-1", "succeeded").await;
    let key = format!("{prefix}:order.created");
    let raw: Vec<(String, Vec<String>)> =
        redis::cmd("XRANGE").arg(&key).arg("-").arg("+").query_async(&mut connection).await.expect("XRANGE");
    assert_eq!(raw.len(), 1);
    let fields: HashMap<String, String> =
        raw[0].1.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
    assert_eq!(
        Some(fields["delivery_id"].as_str()),
        delivery["id"].as_str(),
        "the delivery id is the dedup key"
    );
    assert_eq!(fields["event_id"], "redis-1");
    assert_eq!(fields["event_type"], "order.created");
    assert_eq!(serde_json::from_str::<Value>(&fields["payload"]).expect("JSON"), payload);
    let attempt = &delivery["attempts"][0];
    assert!(attempt["response_body"].as_str().is_some_and(|b| b.contains(&raw[0].0)), "{attempt}");
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut connection).await.expect("DEL");
}
