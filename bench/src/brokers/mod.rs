//! `--kind nats|amqp|redis|mqtt`: `e2e` and `fanout` deliver to a broker instead of the HTTP
//! sink. Beside Switchyard, a bare client of the same broker publishes the same messages,
//! each waiting for the broker's acknowledgement, in the same run: the broker's ceiling. A
//! subscriber in the harness counts Switchyard's messages by delivery id.

mod amqp;
mod mqtt;
mod nats;
mod redis;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use crate::latency::{self, Latencies, SENT_AT_KEY};
use crate::load::LoadResult;
use crate::scenarios::Kind;
use crate::servers::Counts;

/// Where the benchmark publishes: a stream, an exchange and its queue, a key or a topic tree
/// of this name.
pub const NAME: &str = "switchyard-bench";

/// The broker under test.
pub enum Broker {
    Nats(nats::Nats),
    Amqp(amqp::Amqp),
    Redis(redis::Redis),
    Mqtt(mqtt::Mqtt),
}

impl Broker {
    /// The broker of `kind` at `url`; `None` for `http`.
    pub async fn connect(kind: Kind, url: &str) -> anyhow::Result<Option<Broker>> {
        Ok(Some(match kind {
            Kind::Http => return Ok(None),
            Kind::Nats => Broker::Nats(nats::Nats::connect(url).await?),
            Kind::Amqp => Broker::Amqp(amqp::Amqp::connect(url).await?),
            Kind::Redis => Broker::Redis(redis::Redis::connect(url).await?),
            Kind::Mqtt => Broker::Mqtt(mqtt::Mqtt::connect(url).await?),
        }))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Broker::Nats(_) => "NATS",
            Broker::Amqp(_) => "AMQP",
            Broker::Redis(_) => "Redis",
            Broker::Mqtt(_) => "MQTT",
        }
    }

    /// Empties the broker's side of the benchmark (made anew where it holds messages).
    pub async fn reset(&self) -> anyhow::Result<()> {
        match self {
            Broker::Nats(b) => b.fresh_stream().await,
            Broker::Amqp(b) => b.reset().await,
            Broker::Redis(b) => b.reset().await,
            Broker::Mqtt(_) => Ok(()),
        }
    }

    /// The ceiling: `connections` publishers of messages like Switchyard's, each waiting for
    /// its acknowledgement, for `duration`.
    pub async fn bare_publish(&self, connections: usize, duration: Duration) -> anyhow::Result<LoadResult> {
        match self {
            Broker::Nats(b) => b.bare_publish(connections, duration).await,
            Broker::Amqp(b) => b.bare_publish(connections, duration).await,
            Broker::Redis(b) => b.bare_publish(connections, duration).await,
            Broker::Mqtt(b) => b.bare_publish(connections, duration).await,
        }
    }

    /// Counts Switchyard's messages into `counts` as they arrive, by delivery id.
    pub async fn watch(&self, counts: Arc<Counts>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        match self {
            Broker::Nats(b) => b.watch(counts).await,
            Broker::Amqp(b) => b.watch(counts).await,
            Broker::Redis(b) => b.watch(counts).await,
            Broker::Mqtt(b) => b.watch(counts).await,
        }
    }

    /// The destination Switchyard delivers to (`{"kind", "config"}`).
    pub fn destination(&self, url: &str) -> Value {
        match self {
            Broker::Nats(_) => nats::destination(url),
            Broker::Amqp(_) => amqp::destination(url),
            Broker::Redis(_) => redis::destination(url),
            Broker::Mqtt(_) => mqtt::destination(url),
        }
    }

    /// The messages the broker holds, where it can say (a stream's length); `None` where they
    /// were consumed or not kept.
    pub async fn stored(&self) -> anyhow::Result<Option<u64>> {
        match self {
            Broker::Nats(b) => b.messages().await.map(Some),
            Broker::Redis(b) => b.length().await.map(Some),
            Broker::Amqp(_) | Broker::Mqtt(_) => Ok(None),
        }
    }
}

/// The default URL of each kind's local service.
pub fn default_url(kind: Kind) -> &'static str {
    match kind {
        Kind::Http => "",
        Kind::Nats => "nats://127.0.0.1:4222",
        Kind::Amqp => "amqp://guest:guest@127.0.0.1:5672/%2f",
        Kind::Redis => "redis://127.0.0.1:6379",
        Kind::Mqtt => "mqtt://127.0.0.1:1883",
    }
}

/// The payload the bare client publishes as its `n`th message: Switchyard's for event `e-n`.
fn payload(n: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"n":{n},"customer":"c-{}","amount_cents":4200,"currency":"EUR","{SENT_AT_KEY}":{}}}"#,
        n % 977,
        latency::now_us()
    ))
}

/// Runs `connections` publishers for `duration`; each calls `publish` with the next message
/// number and waits for it (true: acknowledged).
async fn publish_for<F, Fut>(connections: usize, duration: Duration, publish: F) -> anyhow::Result<LoadResult>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut publishers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (publish, next) = (publish.clone(), Arc::clone(&next));
        publishers.push(tokio::spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            while started.elapsed() < duration {
                let began = Instant::now();
                if publish(next.fetch_add(1, Ordering::Relaxed)).await {
                    latencies.push(u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX));
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for publisher in publishers {
        let (some, failed) = publisher.await?;
        latencies.extend(some);
        errors += failed;
    }
    let elapsed = started.elapsed();
    Ok(LoadResult {
        requests: latencies.len() as u64 + errors,
        errors,
        elapsed,
        latencies: Latencies::from_micros(latencies),
    })
}
