//! The `amqp` source kind against the real RabbitMQ (`AMQP_URL`, by default
//! amqp://guest:guest@127.0.0.1:5672/%2f): each test declares a queue of its own (bound to an
//! exchange of its own), publishes to it with `lapin`, and reads it through the puller's
//! consumer.

use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use serde_json::{Value, json};
use switchyard_adapters::sources::amqp::AmqpPuller;
use switchyard_core::ValidationError;
use switchyard_core::id::SourceId;
use switchyard_core::source::pull::{Consumer, Pulled, Puller};
use switchyard_core::source::{Source, SourceKind};

use crate::amqp::{amqp_url, broker};

/// A queue of its own for one test, bound to a topic exchange of its own with `#`. The queue
/// expires a minute after its last use, should a test end before deleting it.
struct TestQueue {
    channel: Channel,
    exchange: String,
    name: String,
}

impl TestQueue {
    async fn declare(channel: &Channel) -> Self {
        let suffix = format!("{:016x}", rand::random::<u64>());
        let (exchange, name) =
            (format!("switchyard-source-test-{suffix}"), format!("switchyard-source-test-{suffix}"));
        let options = ExchangeDeclareOptions { auto_delete: true, ..Default::default() };
        channel
            .exchange_declare(
                ShortString::from(exchange.as_str()),
                ExchangeKind::Topic,
                options,
                FieldTable::default(),
            )
            .await
            .expect("an exchange");
        let mut arguments = FieldTable::default();
        arguments.insert(ShortString::from("x-expires"), AMQPValue::LongInt(60_000));
        channel
            .queue_declare(ShortString::from(name.as_str()), QueueDeclareOptions::default(), arguments)
            .await
            .expect("a queue");
        channel
            .queue_bind(
                ShortString::from(name.as_str()),
                ShortString::from(exchange.as_str()),
                ShortString::from("#"),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bound");
        Self { channel: channel.clone(), exchange, name }
    }

    fn config(&self, extra: Value) -> Value {
        let mut config = json!({"url": amqp_url(), "queue": self.name});
        if let (Some(config), Value::Object(extra)) = (config.as_object_mut(), extra) {
            config.extend(extra);
        }
        config
    }

    async fn publish(&self, routing_key: &str, properties: BasicProperties, body: &str) {
        self.channel
            .basic_publish(
                ShortString::from(self.exchange.as_str()),
                ShortString::from(routing_key),
                BasicPublishOptions::default(),
                body.as_bytes(),
                properties,
            )
            .await
            .expect("published");
    }

    /// Messages ready in the queue (not those delivered and not acknowledged).
    async fn ready(&self) -> u32 {
        let options = QueueDeclareOptions { passive: true, ..Default::default() };
        let queue = self
            .channel
            .queue_declare(ShortString::from(self.name.as_str()), options, FieldTable::default())
            .await
            .expect("the queue");
        queue.message_count()
    }

    /// Waits until `ready` messages are in the queue; answers how many there were at the end.
    async fn wait_for_ready(&self, ready: u32) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let now = self.ready().await;
            if now == ready || Instant::now() > deadline {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn delete(self) {
        let _ = self
            .channel
            .queue_delete(ShortString::from(self.name.as_str()), QueueDeleteOptions::default())
            .await;
    }
}

fn properties(id: Option<&str>, headers: &[(&str, &str)]) -> BasicProperties {
    let mut table = FieldTable::default();
    for (name, value) in headers {
        table.insert(ShortString::from(*name), AMQPValue::LongString(LongString::from(*value)));
    }
    let properties = BasicProperties::default().with_headers(table).with_timestamp(1_700_000_000);
    match id {
        Some(id) => properties.with_message_id(ShortString::from(id)),
        None => properties,
    }
}

fn source(config: &Value, secrets: serde_json::Map<String, Value>) -> Source {
    Source {
        id: SourceId::generate(),
        name: "rabbit".into(),
        kind: SourceKind::Amqp,
        config: config.clone(),
        secrets,
        enabled: true,
        version: 1,
        created_at: 0,
        updated_at: 0,
    }
}

async fn open(raw: Value) -> (Source, Box<dyn Consumer>) {
    let validated = AmqpPuller::new().validate(raw).await.expect("a valid amqp source");
    let source = source(&validated.config, validated.secrets);
    let consumer = AmqpPuller::new().connect(&source).await.expect("a consumer");
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
async fn validation_fills_in_defaults_and_moves_the_password_to_a_secret() {
    let Some(channel) = broker().await else { return };
    let queue = TestQueue::declare(&channel).await;
    let validated = AmqpPuller::new().validate(queue.config(json!({"prefetch": 20}))).await.expect("valid");
    let url = validated.config["url"].as_str().expect("a url");
    assert!(!url.contains(":guest@"), "{url}");
    assert_eq!(validated.secrets.get("password"), Some(&json!("guest")));
    assert_eq!(validated.config["prefetch"], 20);
    assert_eq!(validated.config["batch_size"], 20, "the prefetch when not given");
    assert_eq!(validated.config["poll_interval_ms"], 500);
    queue.delete().await;
}

#[tokio::test]
async fn validation_names_the_field_at_fault_and_never_the_password() {
    let Some(channel) = broker().await else { return };
    let queue = TestQueue::declare(&channel).await;
    let puller = AmqpPuller::new();

    let unknown = puller.validate(queue.config(json!({"exchange": "e"}))).await.expect_err("refused");
    assert_eq!(fields_of(&unknown), ["config.exchange"]);

    let missing = puller.validate(queue.config(json!({"queue": format!("{}-missing", queue.name)}))).await;
    assert_eq!(fields_of(&missing.expect_err("refused")), ["config.queue"]);

    let too_big = puller.validate(queue.config(json!({"prefetch": 5, "batch_size": 6}))).await;
    assert_eq!(fields_of(&too_big.expect_err("refused")), ["config.batch_size"]);

    let mut wrong = url::Url::parse(&amqp_url()).expect("a url");
    wrong.set_password(Some("n0t-the-pa55word")).expect("a password");
    let refused = puller.validate(queue.config(json!({"url": wrong.as_str()}))).await.expect_err("refused");
    assert_eq!(fields_of(&refused), ["config.url"]);
    assert!(!refused.0[0].message.contains("n0t-the-pa55word"), "{refused:?}");
    assert!(refused.0[0].message.contains("could not connect"), "{refused:?}");

    let closed = puller.validate(queue.config(json!({"url": "amqp://guest:guest@127.0.0.1:1/%2f"}))).await;
    assert_eq!(fields_of(&closed.expect_err("refused")), ["config.url"]);
    queue.delete().await;
}

#[tokio::test]
async fn batches_carry_ids_types_and_keys_and_acknowledged_ones_are_gone() {
    let Some(channel) = broker().await else { return };
    let queue = TestQueue::declare(&channel).await;
    let ids = ["evt_1", "evt_2", "evt_3", "evt_4"];
    for (i, id) in ids.iter().enumerate() {
        let key = format!("customer-{}", i % 2);
        let headers = [("X-Event-Type", "order.created"), ("X-Ordering-Key", key.as_str())];
        queue.publish("orders.any", properties(Some(id), &headers), &json!({"n": i}).to_string()).await;
    }
    // No id (the body's hash), the routing key as the type; and not an event at all.
    queue.publish("orders.shipped", BasicProperties::default(), "not json").await;
    assert_eq!(queue.wait_for_ready(5).await, 5);

    let (_, mut consumer) = open(queue.config(json!({"prefetch": 2, "poll_interval_ms": 200}))).await;
    let (pulled, batches) = read(&mut consumer, 5, true).await;
    assert_eq!(pulled.len(), 5);
    assert!(batches.iter().all(|&size| size <= 2), "at most two a batch: {batches:?}");
    for (i, message) in pulled.iter().take(4).enumerate() {
        assert_eq!(message.event_id.as_deref(), Some(ids[i]));
        assert_eq!(message.event_type.as_deref(), Some("order.created"));
        assert_eq!(message.ordering_key, Some(format!("customer-{}", i % 2)));
        assert_eq!(serde_json::from_slice::<Value>(&message.body).expect("JSON"), json!({"n": i}));
        assert_eq!(message.written_at, Some(1_700_000_000_000));
    }
    let last = &pulled[4];
    assert_eq!(last.event_id, None);
    assert_eq!(last.event_type.as_deref(), Some("orders.shipped"));
    assert_eq!((last.ordering_key.as_deref(), last.written_at), (None, None));
    assert_eq!(last.body, b"not json");

    assert_eq!(consumer.backlog().await, Some(0));
    consumer.close().await;
    // Nothing was left unacknowledged, the invalid one included: nothing returns to the queue.
    assert_eq!(queue.ready().await, 0);
    let (_, mut again) = open(queue.config(json!({"poll_interval_ms": 200}))).await;
    assert!(again.next_batch().await.expect("a batch").is_empty(), "nothing comes again");
    again.close().await;
    queue.delete().await;
}

#[tokio::test]
async fn the_backlog_counts_what_waits_beyond_the_prefetch() {
    let Some(channel) = broker().await else { return };
    let queue = TestQueue::declare(&channel).await;
    for n in 0..5 {
        queue.publish("orders", properties(None, &[]), &json!({"n": n}).to_string()).await;
    }
    assert_eq!(queue.wait_for_ready(5).await, 5);
    let (_, mut consumer) = open(queue.config(json!({"prefetch": 2, "poll_interval_ms": 200}))).await;
    let (pulled, _) = read(&mut consumer, 2, false).await;
    assert_eq!(pulled.len(), 2);
    assert_eq!(consumer.backlog().await, Some(3), "two sent ahead, three waiting");
    consumer.close().await;
    queue.delete().await;
}

#[tokio::test]
async fn a_batch_never_acknowledged_returns_when_the_consumer_closes() {
    let Some(channel) = broker().await else { return };
    let queue = TestQueue::declare(&channel).await;
    for id in ["evt_a", "evt_b", "evt_c"] {
        queue.publish("orders", properties(Some(id), &[]), &json!({"id": id}).to_string()).await;
    }
    assert_eq!(queue.wait_for_ready(3).await, 3);
    let ids = |pulled: &[Pulled]| pulled.iter().map(|p| p.event_id.clone()).collect::<Vec<_>>();

    let (source, mut first) = open(queue.config(json!({"poll_interval_ms": 200}))).await;
    let (pulled, _) = read(&mut first, 3, false).await;
    assert_eq!(ids(&pulled), [Some("evt_a".into()), Some("evt_b".into()), Some("evt_c".into())]);
    first.close().await;

    let mut second = AmqpPuller::new().connect(&source).await.expect("a consumer");
    let (again, _) = read(&mut second, 3, true).await;
    assert_eq!(ids(&again), ids(&pulled), "the same messages, at once");
    second.close().await;
    assert_eq!(queue.wait_for_ready(0).await, 0);
    queue.delete().await;
}

#[tokio::test]
async fn a_deleted_queue_is_an_error_not_an_empty_batch() {
    let Some(channel) = broker().await else { return };
    let queue = TestQueue::declare(&channel).await;
    let (_, mut consumer) = open(queue.config(json!({"poll_interval_ms": 100}))).await;
    assert!(consumer.next_batch().await.expect("a batch").is_empty());
    channel
        .queue_delete(ShortString::from(queue.name.as_str()), QueueDeleteOptions::default())
        .await
        .expect("deleted");
    let error = consumer.next_batch().await.expect_err("the subscription is gone");
    assert!(error.0.contains("cancelled"), "{error}");
    consumer.close().await;
}
