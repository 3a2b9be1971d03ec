//! The `redis` transport against the real Redis server (`REDIS_URL`, by default
//! redis://127.0.0.1:6379): each test adds to keys of its own and reads back with the `redis`
//! crate what the transport added.

use std::collections::HashMap;

use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};
use switchyard_adapters::UrlPolicy;
use switchyard_adapters::redis::RedisTransport;
use switchyard_core::destination::{
    CircuitBreakerPolicy, DEFAULT_CONNECT_TIMEOUT_MS, Destination, DestinationKind, RetryPolicy,
};
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::transport::{DeliveryError, OutboundMessage, Receipt, Transport};

use crate::http::{body, event};

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

/// A key prefix of its own for one test.
fn prefix() -> String {
    format!("switchyard-test:{:016x}", rand::random::<u64>())
}

fn destination(config: Value) -> Destination {
    let validated = switchyard_adapters::redis::config::validate(config, UrlPolicy::AllowPrivate)
        .expect("a valid redis config");
    Destination {
        id: DestinationId::generate(),
        name: "streams".into(),
        kind: DestinationKind::Redis,
        config: validated.config,
        secrets: validated.secrets,
        timeout_ms: 5_000,
        connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
        retry: RetryPolicy::default(),
        rate_limit: None,
        circuit_breaker: CircuitBreakerPolicy::default(),
        enabled: true,
        version: 1,
        created_at: 0,
        updated_at: 0,
    }
}

async fn deliver(
    transport: &RedisTransport,
    destination: &Destination,
    delivery_id: &DeliveryId,
) -> Result<Receipt, DeliveryError> {
    let event = event();
    let body = body();
    let message = OutboundMessage { delivery_id, attempt: 1, event: &event, body: &body, destination };
    transport.deliver(&message).await
}

/// Every entry of `key`, oldest first, as (id, fields).
async fn entries(
    connection: &mut MultiplexedConnection,
    key: &str,
) -> Vec<(String, HashMap<String, String>)> {
    let raw: Vec<(String, Vec<String>)> =
        redis::cmd("XRANGE").arg(key).arg("-").arg("+").query_async(connection).await.expect("XRANGE");
    raw.into_iter()
        .map(|(id, flat)| (id, flat.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect()))
        .collect()
}

#[tokio::test]
async fn a_delivery_becomes_an_entry_with_its_identity_fields() {
    let Some(mut connection) = server().await else { return };
    let prefix = prefix();
    let transport = RedisTransport::new(UrlPolicy::AllowPrivate);
    let destination = destination(json!({"url": redis_url(), "stream": format!("{prefix}:{{event_type}}")}));
    let delivery = DeliveryId::generate();

    let receipt = deliver(&transport, &destination, &delivery).await.expect("added");
    let key = format!("{prefix}:order.created");
    let added = entries(&mut connection, &key).await;
    assert_eq!(added.len(), 1);
    let (id, fields) = &added[0];
    assert_eq!(receipt.response_body, Some(format!("entry {id} of {key}")));
    assert_eq!(fields["delivery_id"], delivery.as_str());
    assert_eq!(fields["event_id"], "ord-1001-created");
    assert_eq!(fields["event_type"], "order.created");
    assert_eq!(fields["correlation_id"], "corr-42");
    assert_eq!(fields["causation_id"], "cart-7-checked-out");
    assert!(fields["traceparent"].starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{fields:?}");
    assert_eq!(serde_json::from_str::<Value>(&fields["payload"]).expect("JSON"), body());

    // The same connection serves the next delivery.
    deliver(&transport, &destination, &DeliveryId::generate()).await.expect("added");
    assert_eq!(entries(&mut connection, &key).await.len(), 2);
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut connection).await.expect("DEL");
    transport.close().await;
}

#[tokio::test]
async fn a_key_that_is_not_a_stream_fails_for_good_and_an_unreachable_server_is_retried() {
    let Some(mut connection) = server().await else { return };
    let key = format!("{}:plain", prefix());
    let _: () = redis::cmd("SET").arg(&key).arg("a string").query_async(&mut connection).await.expect("SET");
    let transport = RedisTransport::new(UrlPolicy::AllowPrivate);
    let wrong = destination(json!({"url": redis_url(), "stream": key}));
    let err = deliver(&transport, &wrong, &DeliveryId::generate()).await.expect_err("not a stream");
    assert!(!err.retryable && err.message.contains("other than a stream"), "{err:?}");
    let _: () = redis::cmd("DEL").arg(&key).query_async(&mut connection).await.expect("DEL");

    // Nothing listens on port 1 of the loopback address.
    let closed = destination(json!({"url": "redis://127.0.0.1:1/0", "stream": "s"}));
    let err = deliver(&transport, &closed, &DeliveryId::generate()).await.expect_err("unreachable");
    assert!(err.retryable && err.message.contains("could not connect to Redis at 127.0.0.1:1"), "{err:?}");

    let guarded = RedisTransport::new(UrlPolicy::PublicOnly);
    let err = deliver(&guarded, &closed, &DeliveryId::generate()).await.expect_err("refused");
    assert!(!err.retryable && err.message.contains("refused to connect"), "{err:?}");
}
