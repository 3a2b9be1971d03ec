//! RabbitMQ: the topic exchange `switchyard-bench` and a queue of the same name bound to it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use serde_json::{Value, json};

use super::{NAME, payload, publish_for};
use crate::latency;
use crate::load::LoadResult;
use crate::servers::Counts;

pub struct Amqp {
    connection: Arc<Connection>,
    channel: Channel,
}

pub fn destination(url: &str) -> Value {
    json!({"kind": "amqp", "config": {"url": url, "exchange": NAME, "routing_key": "{event_type}"}})
}

impl Amqp {
    pub async fn connect(url: &str) -> anyhow::Result<Amqp> {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .context("connecting to the AMQP broker")?;
        let channel = connection.create_channel().await?;
        channel
            .exchange_declare(
                NAME.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel.queue_declare(NAME.into(), QueueDeclareOptions::default(), FieldTable::default()).await?;
        channel
            .queue_bind(
                NAME.into(),
                NAME.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Amqp { connection: Arc::new(connection), channel })
    }

    pub async fn reset(&self) -> anyhow::Result<()> {
        self.channel.queue_purge(NAME.into(), QueuePurgeOptions::default()).await?;
        Ok(())
    }

    /// Each message: persistent and mandatory with Switchyard's properties, on a channel of
    /// its publisher's in confirm mode, the broker's confirm awaited.
    pub async fn bare_publish(&self, connections: usize, duration: Duration) -> anyhow::Result<LoadResult> {
        let mut channels = Vec::with_capacity(connections);
        for _ in 0..connections {
            let channel = self.connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            channels.push(channel);
        }
        let channels = Arc::new(channels);
        let result = publish_for(connections, duration, move |n| {
            let channel = channels[n as usize % channels.len()].clone();
            async move {
                let properties = BasicProperties::default()
                    .with_message_id(ShortString::from(format!("bare-{n}")))
                    .with_type("bench.item".into())
                    .with_correlation_id(ShortString::from(format!("e-{n}")))
                    .with_content_type("application/json".into())
                    .with_delivery_mode(2);
                let options = BasicPublishOptions { mandatory: true, immediate: false };
                match channel
                    .basic_publish(NAME.into(), "bench.item".into(), options, &payload(n), properties)
                    .await
                {
                    Ok(confirm) => matches!(confirm.await, Ok(Confirmation::Ack(None))),
                    Err(_) => false,
                }
            }
        })
        .await;
        self.reset().await?;
        result
    }

    /// Consumes the queue, counting messages by `message_id`.
    pub async fn watch(&self, counts: Arc<Counts>) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let channel = self.connection.create_channel().await?;
        let options = BasicConsumeOptions { no_ack: true, ..Default::default() };
        let mut consumer =
            channel.basic_consume(NAME.into(), "counter".into(), options, FieldTable::default()).await?;
        Ok(tokio::spawn(async move {
            let _channel = channel;
            while let Some(Ok(delivery)) = consumer.next().await {
                let arrived_us = latency::now_us();
                if let Some(id) = delivery.properties.message_id() {
                    counts.record(id.as_str().as_bytes(), arrived_us, &delivery.data);
                }
            }
        }))
    }
}
