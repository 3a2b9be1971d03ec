//! Consuming a RabbitMQ queue: `basic.qos(prefetch)` and `basic.consume` with manual acks on a
//! channel of its own. Deliveries are handed over in the order they arrive; a batch is the
//! first one (waited for up to the poll interval) and whatever else has arrived, up to the
//! batch size. What is read and not acknowledged returns to the queue when the channel closes.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use lapin::message::{Delivery, DeliveryResult};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ConnectionProperties, ErrorKind};
use switchyard_core::source::pull::{Consumer, PullError, Pulled};
use tokio::sync::mpsc;

use super::config::AmqpSourceConfig;
use crate::amqp::config::DEFAULT_PORT;

/// How long connecting, and each request to the broker, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The headers a message names its event's type and ordering key by.
const EVENT_TYPE: &str = "X-Event-Type";
const ORDERING_KEY: &str = "X-Ordering-Key";

/// An open connection to the broker `config` names, and its `host:port` for messages.
pub async fn connect(config: &AmqpSourceConfig) -> Result<(lapin::Connection, String), String> {
    let url = config.connect_url()?;
    let host = format!("{}:{}", url.host_str().unwrap_or_default(), url.port().unwrap_or(DEFAULT_PORT));
    let connecting = lapin::Connection::connect(url.as_str(), ConnectionProperties::default());
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(connection)) => Ok((connection, host)),
        Ok(Err(error)) => Err(format!(
            "could not connect to the AMQP broker at {host}: {}",
            describe(&error, config.password.as_deref())
        )),
        Err(_) => Err(format!(
            "could not connect to the AMQP broker at {host} within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

/// Declares `queue` passively on `channel`: its ready messages, or the error (`NOT_FOUND`
/// closes the channel).
pub async fn ready_messages(channel: &Channel, queue: &str) -> Result<u32, lapin::Error> {
    let options = QueueDeclareOptions { passive: true, ..Default::default() };
    let queue = channel.queue_declare(ShortString::from(queue), options, FieldTable::default()).await?;
    Ok(queue.message_count())
}

/// Whether the broker answered that what was asked for does not exist.
pub fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(reply) if *reply.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
}

/// What went wrong, never with `password` in it.
pub fn describe(error: &lapin::Error, password: Option<&str>) -> String {
    let text = error.to_string();
    match password.filter(|p| !p.is_empty()) {
        Some(password) => text.replace(password, "***"),
        None => text,
    }
}

/// An open consumer of one queue.
pub struct AmqpConsumer {
    connection: lapin::Connection,
    channel: Channel,
    /// Cancels the subscription when dropped: held as long as the channel.
    _consumer: lapin::Consumer,
    deliveries: mpsc::UnboundedReceiver<DeliveryResult>,
    queue: String,
    host: String,
    batch_size: usize,
    poll_interval: Duration,
    /// The delivery tags of the last batch, by position.
    batch: Vec<u64>,
    /// Tags delivered on the channel and not yet acknowledged, oldest first.
    unacked: BTreeSet<u64>,
    /// A channel of its own for passive declares (a failed one closes its channel).
    inspector: Option<Channel>,
}

impl AmqpConsumer {
    pub async fn open(config: &AmqpSourceConfig) -> Result<Self, PullError> {
        let (connection, host) = connect(config).await.map_err(PullError::new)?;
        let queue = config.queue.clone();
        let subscribing = async {
            let channel = connection.create_channel().await?;
            let prefetch = u16::try_from(config.prefetch).unwrap_or(u16::MAX);
            channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
            let consumer = channel
                .basic_consume(
                    ShortString::from(queue.as_str()),
                    ShortString::from(""),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>((channel, consumer))
        };
        let (channel, consumer) = match tokio::time::timeout(CONNECT_TIMEOUT, subscribing).await {
            Ok(Ok(subscribed)) => subscribed,
            Ok(Err(error)) => {
                let _ = connection.close(200, ShortString::from("could not consume")).await;
                return Err(PullError::new(format!(
                    "could not consume queue {queue:?} at {host}: {}",
                    describe(&error, config.password.as_deref())
                )));
            }
            Err(_) => {
                return Err(PullError::new(format!(
                    "could not consume queue {queue:?} at {host} within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )));
            }
        };
        // Unbounded, but never holds more than `prefetch` deliveries: the broker sends no more
        // unacknowledged ones. The delegate is called in the order deliveries arrive.
        let (sender, deliveries) = mpsc::unbounded_channel();
        consumer.set_delegate(move |delivery: DeliveryResult| {
            let _ = sender.send(delivery);
            std::future::ready(())
        });
        Ok(Self {
            connection,
            channel,
            _consumer: consumer,
            deliveries,
            queue,
            host,
            batch_size: usize::try_from(config.batch_size()).unwrap_or(1).max(1),
            poll_interval: Duration::from_millis(config.poll_interval_ms),
            batch: Vec::new(),
            unacked: BTreeSet::new(),
            inspector: None,
        })
    }

    /// A delivery as the engine reads it, or why the subscription ended.
    fn take(&mut self, delivery: Option<DeliveryResult>, taken: &mut Vec<Pulled>) -> Result<(), PullError> {
        match delivery {
            Some(Ok(Some(delivery))) => {
                self.unacked.insert(delivery.delivery_tag);
                self.batch.push(delivery.delivery_tag);
                taken.push(pulled(taken.len(), &delivery));
                Ok(())
            }
            Some(Ok(None)) => Err(PullError::new(format!(
                "the broker at {} cancelled the subscription to queue {:?} (was it deleted?)",
                self.host, self.queue
            ))),
            Some(Err(error)) => Err(PullError::new(format!(
                "consuming queue {:?} at {} failed: {error}",
                self.queue, self.host
            ))),
            None => {
                Err(PullError::new(format!("the connection to the AMQP broker at {} is lost", self.host)))
            }
        }
    }

    async fn ack(&self, tag: u64, multiple: bool) -> Result<(), PullError> {
        self.channel.basic_ack(tag, BasicAckOptions { multiple }).await.map_err(|error| {
            PullError::new(format!("acknowledging to the AMQP broker at {} failed: {error}", self.host))
        })
    }
}

/// `delivery` at `position` of its batch.
fn pulled(position: usize, delivery: &Delivery) -> Pulled {
    let properties = &delivery.properties;
    let header = |name: &str| {
        let value = properties.headers().as_ref()?.inner().get(name)?;
        let text = match value {
            AMQPValue::LongString(text) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
            AMQPValue::ShortString(text) => text.as_str().to_owned(),
            _ => return None,
        };
        Some(text).filter(|text| !text.is_empty())
    };
    let routing_key = Some(delivery.routing_key.as_str().to_owned()).filter(|key| !key.is_empty());
    Pulled {
        position: position as u64,
        event_id: properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str().to_owned())
            .filter(|id| !id.is_empty()),
        event_type: header(EVENT_TYPE).or(routing_key),
        ordering_key: header(ORDERING_KEY),
        body: delivery.data.clone(),
        written_at: properties.timestamp().and_then(|seconds| i64::try_from(seconds).ok()?.checked_mul(1000)),
    }
}

#[async_trait]
impl Consumer for AmqpConsumer {
    async fn next_batch(&mut self) -> Result<Vec<Pulled>, PullError> {
        // Deliveries of an earlier batch not acknowledged return when the channel closes.
        self.batch.clear();
        let mut taken = Vec::new();
        let first = match tokio::time::timeout(self.poll_interval, self.deliveries.recv()).await {
            Ok(first) => first,
            Err(_) => {
                return if self.channel.status().connected() {
                    Ok(taken)
                } else {
                    Err(PullError::new(format!("the channel to the AMQP broker at {} is closed", self.host)))
                };
            }
        };
        self.take(first, &mut taken)?;
        while taken.len() < self.batch_size {
            match self.deliveries.try_recv() {
                Ok(delivery) => self.take(Some(delivery), &mut taken)?,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.take(None, &mut taken)?,
            }
        }
        Ok(taken)
    }

    async fn acknowledge(&mut self, committed: &[u64], invalid: &[u64]) -> Result<(), PullError> {
        let tags: BTreeSet<u64> = committed
            .iter()
            .chain(invalid)
            .filter_map(|&position| self.batch.get(usize::try_from(position).ok()?).copied())
            .filter(|tag| self.unacked.contains(tag))
            .collect();
        let Some(&last) = tags.last() else { return Ok(()) };
        // One `multiple` ack when the tags are all the unacknowledged ones up to the last.
        if self.unacked.range(..=last).eq(tags.iter()) {
            self.ack(last, true).await?;
        } else {
            for &tag in &tags {
                self.ack(tag, false).await?;
            }
        }
        self.unacked.retain(|tag| !tags.contains(tag));
        Ok(())
    }

    async fn backlog(&mut self) -> Option<u64> {
        let inspector = match self.inspector.take() {
            Some(channel) if channel.status().connected() => channel,
            _ => tokio::time::timeout(CONNECT_TIMEOUT, self.connection.create_channel()).await.ok()?.ok()?,
        };
        let count = tokio::time::timeout(CONNECT_TIMEOUT, ready_messages(&inspector, &self.queue))
            .await
            .ok()?
            .ok()?;
        self.inspector = Some(inspector);
        Some(u64::from(count))
    }

    async fn close(self: Box<Self>) {
        let closing = self.connection.close(200, ShortString::from("closing"));
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, closing).await;
    }
}
