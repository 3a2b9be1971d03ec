//! The `nats` source kind against the real NATS server with JetStream (`NATS_URL`, by default
//! nats://127.0.0.1:4222): each test makes a stream of its own, publishes to it with the
//! broker's own client, and reads it through the puller's consumer.

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use serde_json::{Value, json};
use switchyard_adapters::sources::nats::NatsPuller;
use switchyard_core::ValidationError;
use switchyard_core::id::SourceId;
use switchyard_core::source::pull::{Consumer, Pulled, Puller};
use switchyard_core::source::{Source, SourceKind};

use crate::nats::{broker, nats_url};

/// A stream of its own for one test, taking `<prefix>.>`.
struct TestStream {
    jetstream: jetstream::Context,
    name: String,
    prefix: String,
}

impl TestStream {
    async fn create(jetstream: &jetstream::Context) -> Self {
        let suffix = format!("{:016x}", rand::random::<u64>());
        let name = format!("SWITCHYARD_SOURCE_TEST_{suffix}");
        let prefix = format!("switchyard-source-test.{suffix}");
        jetstream
            .create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{prefix}.>")],
                ..Default::default()
            })
            .await
            .expect("a test stream");
        Self { jetstream: jetstream.clone(), name, prefix }
    }

    fn config(&self, extra: Value) -> Value {
        let mut config =
            json!({"url": nats_url(), "subject": format!("{}.>", self.prefix), "stream": self.name});
        if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
            config.extend(extra);
        }
        config
    }

    async fn publish(&self, subject: &str, headers: &[(&str, &str)], body: &str) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, *value);
        }
        let subject = format!("{}.{subject}", self.prefix);
        let ack =
            self.jetstream.publish_with_headers(subject, map, body.to_owned().into()).await.expect("sent");
        ack.await.expect("stored");
    }

    /// The durable consumer's messages not yet delivered plus those delivered and not acked.
    async fn outstanding(&self, durable: &str) -> u64 {
        let stream = self.jetstream.get_stream(&self.name).await.expect("the stream");
        let info = stream.consumer_info(durable).await.expect("the consumer's info");
        info.num_pending + info.num_ack_pending as u64
    }

    /// The pull requests waiting on the durable consumer.
    async fn waiting(&self, durable: &str) -> usize {
        let stream = self.jetstream.get_stream(&self.name).await.expect("the stream");
        stream.consumer_info(durable).await.expect("the consumer's info").num_waiting
    }

    async fn delete(self) {
        let _ = self.jetstream.delete_stream(&self.name).await;
    }
}

fn source(config: &Value, secrets: serde_json::Map<String, Value>) -> Source {
    Source {
        id: SourceId::generate(),
        name: "broker".into(),
        kind: SourceKind::Nats,
        config: config.clone(),
        secrets,
        enabled: true,
        version: 1,
        created_at: 0,
        updated_at: 0,
    }
}

async fn open(raw: Value) -> (Source, Box<dyn Consumer>) {
    let validated = NatsPuller::new().validate(raw).await.expect("a valid nats source");
    let source = source(&validated.config, validated.secrets);
    let consumer = NatsPuller::new().connect(&source).await.expect("a consumer");
    (source, consumer)
}

/// Batches read until `count` messages came, or the deadline, and the size of each. With `ack`, each batch is
/// acknowledged as the engine does: bodies that are not JSON objects as invalid.
async fn read(consumer: &mut Box<dyn Consumer>, count: usize, ack: bool) -> (Vec<Pulled>, Vec<usize>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut pulled, mut batches) = (Vec::new(), Vec::new());
    while pulled.len() < count && Instant::now() < deadline {
        let batch = consumer.next_batch().await.expect("a batch");
        if batch.is_empty() {
            continue;
        }
        batches.push(batch.len());
        if ack {
            let (valid, invalid): (Vec<&Pulled>, Vec<&Pulled>) = batch
                .iter()
                .partition(|p| serde_json::from_slice::<Value>(&p.body).is_ok_and(|v| v.is_object()));
            let positions = |of: Vec<&Pulled>| of.iter().map(|p| p.position).collect::<Vec<u64>>();
            consumer.acknowledge(&positions(valid), &positions(invalid)).await.expect("acknowledged");
        }
        pulled.extend(batch);
    }
    (pulled, batches)
}

fn fields_of(error: &ValidationError) -> Vec<&str> {
    error.0.iter().map(|e| e.field.as_str()).collect()
}

#[tokio::test]
async fn validation_fills_in_defaults_and_keeps_the_password_apart() {
    let Some(jetstream) = broker().await else { return };
    let stream = TestStream::create(&jetstream).await;
    let auth = json!({"auth": {"type": "user_password", "username": "hub", "password": "s3cret"}});
    let validated = NatsPuller::new().validate(stream.config(auth)).await.expect("valid");
    assert_eq!(validated.config["durable"], "switchyard");
    assert_eq!(validated.config["batch_size"], 100);
    assert_eq!(validated.config["poll_interval_ms"], 500);
    assert_eq!(validated.config["ack_wait_ms"], 30_000);
    assert_eq!(validated.config["auth"], json!({"type": "user_password", "username": "hub"}));
    assert_eq!(validated.secrets.get("auth.password"), Some(&json!("s3cret")));
    stream.delete().await;
}

#[tokio::test]
async fn validation_names_the_field_at_fault() {
    let Some(jetstream) = broker().await else { return };
    let stream = TestStream::create(&jetstream).await;
    let puller = NatsPuller::new();

    let unknown = puller.validate(stream.config(json!({"queue": "q"}))).await.expect_err("refused");
    assert_eq!(fields_of(&unknown), ["config.queue"]);

    let missing = json!({"stream": format!("{}_MISSING", stream.name)});
    let missing = puller.validate(stream.config(missing)).await.expect_err("refused");
    assert_eq!(fields_of(&missing), ["config.stream"]);

    let outside =
        puller.validate(stream.config(json!({"subject": "elsewhere.>"}))).await.expect_err("refused");
    assert_eq!(fields_of(&outside), ["config.subject"]);

    let closed =
        puller.validate(stream.config(json!({"url": "nats://127.0.0.1:1"}))).await.expect_err("refused");
    assert_eq!(fields_of(&closed), ["config.url"]);
    assert!(closed.0[0].message.contains("127.0.0.1:1"), "{closed:?}");

    // A durable of the same name filtering another subject belongs to someone else.
    let (_, consumer) = open(stream.config(json!({"subject": format!("{}.a", stream.prefix)}))).await;
    consumer.close().await;
    let taken = puller.validate(stream.config(json!({}))).await.expect_err("refused");
    assert_eq!(fields_of(&taken), ["config.durable"]);
    stream.delete().await;
}

/// Waits until the durable consumer has nothing pending or unacknowledged.
async fn drained(stream: &TestStream, durable: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if stream.outstanding(durable).await == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn batches_carry_ids_types_and_keys_and_acknowledged_ones_are_gone() {
    let Some(jetstream) = broker().await else { return };
    let stream = TestStream::create(&jetstream).await;
    let ids = ["evt_1", "evt_2", "evt_3", "evt_4"];
    for (i, id) in ids.iter().enumerate() {
        let body = json!({"n": i}).to_string();
        let key = format!("customer-{}", i % 2);
        let headers =
            [("Nats-Msg-Id", *id), ("X-Event-Type", "order.created"), ("X-Ordering-Key", key.as_str())];
        stream.publish("orders", &headers, &body).await;
    }
    // No headers: no id (the body's hash), the subject as the type; and not an event at all.
    stream.publish("orders.shipped", &[], "not json").await;

    let config = stream.config(json!({"batch_size": 2, "poll_interval_ms": 200}));
    let (_, mut consumer) = open(config).await;
    assert_eq!(consumer.backlog().await, Some(5), "all five wait for the consumer");
    let (pulled, batches) = read(&mut consumer, 5, true).await;
    assert_eq!(pulled.len(), 5);
    assert_eq!(batches, [2, 2, 1], "two a batch, as many as there are");
    for (i, message) in pulled.iter().take(4).enumerate() {
        assert_eq!(message.event_id.as_deref(), Some(ids[i]));
        assert_eq!(message.event_type.as_deref(), Some("order.created"));
        assert_eq!(message.ordering_key, Some(format!("customer-{}", i % 2)));
        assert_eq!(serde_json::from_slice::<Value>(&message.body).expect("JSON"), json!({"n": i}));
        let written_at = message.written_at.expect("the stream's timestamp");
        assert!((switchyard_core::time::now_millis() - written_at).abs() < 60_000, "{written_at}");
    }
    let last = &pulled[4];
    assert_eq!(last.event_id, None);
    assert_eq!(last.event_type, Some(format!("{}.orders.shipped", stream.prefix)));
    assert_eq!(last.ordering_key, None);
    assert_eq!(last.body, b"not json");

    assert!(drained(&stream, "switchyard").await, "every message acknowledged, the invalid one too");
    assert_eq!(consumer.backlog().await, Some(0));
    assert!(consumer.next_batch().await.expect("a batch").is_empty(), "nothing comes again");
    consumer.close().await;
    stream.delete().await;
}

#[tokio::test]
async fn a_batch_never_acknowledged_is_read_again_after_the_ack_wait() {
    let Some(jetstream) = broker().await else { return };
    let stream = TestStream::create(&jetstream).await;
    for id in ["evt_a", "evt_b", "evt_c"] {
        stream.publish("orders", &[("Nats-Msg-Id", id)], &json!({"id": id}).to_string()).await;
    }
    let config = stream.config(json!({"durable": "again", "ack_wait_ms": 1_000, "poll_interval_ms": 200}));

    let (source, mut first) = open(config).await;
    let (pulled, _) = read(&mut first, 3, false).await;
    let ids = |pulled: &[Pulled]| pulled.iter().map(|p| p.event_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&pulled), [Some("evt_a".into()), Some("evt_b".into()), Some("evt_c".into())]);
    first.close().await;
    assert_eq!(stream.outstanding("again").await, 3, "read, not acknowledged");

    let mut second = NatsPuller::new().connect(&source).await.expect("a consumer");
    let (again, _) = read(&mut second, 3, true).await;
    assert_eq!(ids(&again), ids(&pulled), "the same messages, once the ack wait passed");
    assert!(drained(&stream, "again").await);
    second.close().await;
    stream.delete().await;
}

#[tokio::test]
async fn a_waiting_read_answers_as_soon_as_a_message_comes() {
    let Some(jetstream) = broker().await else { return };
    let stream = TestStream::create(&jetstream).await;
    let (_, mut consumer) = open(stream.config(json!({"poll_interval_ms": 10_000}))).await;
    let publisher =
        TestStream { jetstream: jetstream.clone(), name: stream.name.clone(), prefix: stream.prefix.clone() };
    // Published once the read waits on the server, as its pull request.
    let published = tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(5);
        while publisher.waiting("switchyard").await == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        publisher.publish("orders", &[("Nats-Msg-Id", "evt_late")], "{}").await;
    });
    let started = Instant::now();
    let batch = consumer.next_batch().await.expect("a batch");
    assert!(started.elapsed() < Duration::from_secs(5), "answered long before the poll interval");
    assert_eq!(batch.iter().map(|p| p.event_id.as_deref()).collect::<Vec<_>>(), [Some("evt_late")]);
    published.await.expect("published");
    consumer.close().await;
    stream.delete().await;
}

#[tokio::test]
async fn a_deleted_stream_is_an_error_not_an_empty_batch() {
    let Some(jetstream) = broker().await else { return };
    let stream = TestStream::create(&jetstream).await;
    let (_, mut consumer) = open(stream.config(json!({"poll_interval_ms": 100}))).await;
    assert!(consumer.next_batch().await.expect("a batch").is_empty());
    jetstream.delete_stream(&stream.name).await.expect("deleted");
    let error = consumer.next_batch().await.expect_err("the consumer is gone");
    assert!(!error.0.is_empty());
    consumer.close().await;
}
