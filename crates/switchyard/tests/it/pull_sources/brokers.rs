//! `nats` and `amqp` sources of the real binary, killed with SIGKILL while messages keep
//! coming: every message published before, during and after the crash becomes exactly one
//! event, and the broker is left with nothing pending or unacknowledged.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use serde_json::{Value, json};

use crate::process::{Node, Scenario};
use crate::sink::{Behaviour, Sink};

const MESSAGES: usize = 600;
/// The node id of every start: the restarted node takes its own lease back at once.
const NODE: [(&str, &str); 1] = [("SWITCHYARD_ENGINE__NODE_ID", "reader-1")];

/// Starts a node with a source made of `config`, routed to a sink.
async fn node_reading(scenario: &Scenario, kind: &str, config: Value) -> (Node, Sink) {
    let sink = Sink::start(Behaviour::Status(200)).await;
    let node = scenario.start_with(&NODE).await;
    scenario.route_to(&node, &sink).await;
    scenario.post(&node, "/v1/sources", json!({"name": "broker", "kind": kind, "config": config})).await;
    (node, sink)
}

/// Kills `node` once the sink got some of the first messages; answers the node restarted.
async fn kill_mid_way_and_restart(
    scenario: &Scenario,
    mut node: Node,
    sink: &Sink,
    publish_while_down: impl Future<Output = ()>,
) -> Node {
    sink.wait_for(Duration::from_secs(60), |received| received.len() >= 50).await;
    node.child.kill().expect("SIGKILL is sent");
    node.child.wait().expect("the node is gone");
    publish_while_down.await;
    scenario.start_with(&NODE).await
}

/// Every message reached the sink as exactly one delivery.
async fn assert_each_message_delivered_once(sink: &Sink) {
    sink.wait_for_distinct(Duration::from_secs(90), MESSAGES).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = sink.received();
    let mut numbers: Vec<i64> = received.iter().map(|r| r.json()["i"].as_i64().expect("a number")).collect();
    numbers.sort_unstable();
    numbers.dedup();
    assert_eq!(numbers.len(), MESSAGES, "every message became an event");
    assert_eq!(sink.by_delivery().len(), MESSAGES, "one delivery per message: none became two events");
}

/// Waits up to 30 s until `pending()` is zero.
async fn wait_until_nothing_pending<F, Fut>(what: &str, pending: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = u64>,
{
    let started = Instant::now();
    loop {
        let n = pending().await;
        if n == 0 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{n} {what} still pending");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn body(i: usize) -> Vec<u8> {
    json!({"i": i}).to_string().into_bytes()
}

#[tokio::test]
async fn nats_messages_published_around_a_crash_become_events_exactly_once() {
    let Some(jetstream) = crate::nats::broker().await else { return };
    let (stream, prefix) = crate::nats::test_stream(&jetstream).await;
    let publish = |from: usize, to: usize| {
        let (jetstream, prefix) = (jetstream.clone(), prefix.clone());
        async move {
            for i in from..to {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", format!("m-{i}").as_str());
                headers.insert("X-Event-Type", "order.created");
                let subject = format!("{prefix}.orders");
                let ack = jetstream
                    .publish_with_headers(subject, headers, body(i).into())
                    .await
                    .expect("published");
                ack.await.expect("stored by the stream");
            }
        }
    };
    publish(0, MESSAGES / 2).await;

    let scenario = Scenario::new();
    let config = json!({"url": crate::nats::nats_url(), "stream": stream, "subject": format!("{prefix}.>"),
                        "batch_size": 20, "poll_interval_ms": 100, "ack_wait_ms": 2_000});
    let (node, sink) = node_reading(&scenario, "nats", config).await;
    let _restarted =
        kill_mid_way_and_restart(&scenario, node, &sink, publish(MESSAGES / 2, MESSAGES * 3 / 4)).await;
    publish(MESSAGES * 3 / 4, MESSAGES).await;

    assert_each_message_delivered_once(&sink).await;
    let types: Vec<String> = sink.received().iter().map(|r| r.header("x-event-type").to_owned()).collect();
    assert!(types.iter().all(|t| t == "order.created"), "the type is the X-Event-Type header's");
    let stream = jetstream.get_stream(&stream).await.expect("the stream");
    wait_until_nothing_pending("NATS messages", || {
        let stream = stream.clone();
        async move {
            let mut consumer =
                stream.get_consumer::<pull::Config>("switchyard").await.expect("the durable consumer");
            let info = consumer.info().await.expect("its info");
            info.num_pending + info.num_ack_pending as u64
        }
    })
    .await;
}

/// A durable queue of its own for one test.
async fn test_queue(channel: &Channel) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let name = format!("switchyard-it-source-{:x}{:x}", std::process::id(), now.as_nanos());
    let options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    channel
        .queue_declare(ShortString::from(name.as_str()), options, FieldTable::default())
        .await
        .expect("a queue");
    name
}

async fn ready_in(channel: &Channel, queue: &str) -> u64 {
    let options = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
    let queue = channel
        .queue_declare(ShortString::from(queue), options, FieldTable::default())
        .await
        .expect("the queue");
    u64::from(queue.message_count())
}

#[tokio::test]
async fn amqp_messages_published_around_a_crash_become_events_exactly_once() {
    let Some(channel) = crate::amqp::broker().await else { return };
    let queue = test_queue(&channel).await;
    let publish = |from: usize, to: usize| {
        let (channel, queue) = (channel.clone(), queue.clone());
        async move {
            for i in from..to {
                let mut headers = FieldTable::default();
                headers.insert(
                    ShortString::from("X-Event-Type"),
                    AMQPValue::LongString(LongString::from("order.created")),
                );
                let properties = BasicProperties::default()
                    .with_message_id(ShortString::from(format!("m-{i}").as_str()))
                    .with_headers(headers);
                let (exchange, key) = (ShortString::from(""), ShortString::from(queue.as_str()));
                channel
                    .basic_publish(exchange, key, BasicPublishOptions::default(), &body(i), properties)
                    .await
                    .expect("published");
            }
        }
    };
    publish(0, MESSAGES / 2).await;

    let scenario = Scenario::new();
    let config =
        json!({"url": crate::amqp::amqp_url(), "queue": queue, "prefetch": 20, "poll_interval_ms": 100});
    let (node, sink) = node_reading(&scenario, "amqp", config).await;
    let restarted =
        kill_mid_way_and_restart(&scenario, node, &sink, publish(MESSAGES / 2, MESSAGES * 3 / 4)).await;
    publish(MESSAGES * 3 / 4, MESSAGES).await;

    assert_each_message_delivered_once(&sink).await;
    // Unacknowledged messages go back to the queue when their consumer's connection closes:
    // with the node gone, an empty queue means every message was acknowledged.
    drop(restarted);
    wait_until_nothing_pending("AMQP messages", || ready_in(&channel, &queue)).await;
}
