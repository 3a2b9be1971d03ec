//! The `amqp` source kind: consuming a RabbitMQ queue (AMQP 0-9-1) with manual acks. An event
//! is named by the message's `message_id` property (else the body's hash) and typed by its
//! `X-Event-Type` header (else its routing key); the `X-Ordering-Key` header orders it and
//! the `timestamp` property says when it was written.
//!
//! - `config`: the configuration (`url`, `queue`, `prefetch`, `batch_size`,
//!   `poll_interval_ms`), its rules and its secret (the URL's password).
//! - `consumer`: [`AmqpConsumer`], the connection, the subscription and its acks.

pub mod config;
mod consumer;

use async_trait::async_trait;
use lapin::types::ShortString;
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::source::Source;
use switchyard_core::source::pull::{Consumer, PullError, Puller};
use switchyard_core::transport::ValidatedConfig;

pub use self::config::AmqpSourceConfig;
pub use self::consumer::AmqpConsumer;

#[derive(Debug, Default)]
pub struct AmqpPuller;

impl AmqpPuller {
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl Puller for AmqpPuller {
    /// Checks the configuration, then that the broker takes the URL's credentials and that the
    /// queue exists (a passive declare).
    async fn validate(&self, raw: Value) -> Result<ValidatedConfig, ValidationError> {
        let config = config::parse(raw)?;
        let (connection, host) = consumer::connect(&config)
            .await
            .map_err(|reason| ValidationError::single("config.url", reason))?;
        let checked = check_queue(&connection, &host, &config).await;
        let closing = connection.close(200, ShortString::from("validated"));
        let _ = tokio::time::timeout(consumer::CONNECT_TIMEOUT, closing).await;
        checked?;
        config::split(&config)
    }

    async fn connect(&self, source: &Source) -> Result<Box<dyn Consumer>, PullError> {
        let config: AmqpSourceConfig = serde_json::from_value(source.full_config())
            .map_err(|_| PullError::new("the source's configuration is not a valid amqp configuration"))?;
        Ok(Box::new(AmqpConsumer::open(&config).await?))
    }
}

async fn check_queue(
    connection: &lapin::Connection,
    host: &str,
    config: &AmqpSourceConfig,
) -> Result<(), ValidationError> {
    let declared = async {
        let channel = connection.create_channel().await?;
        consumer::ready_messages(&channel, &config.queue).await
    };
    match tokio::time::timeout(consumer::CONNECT_TIMEOUT, declared).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) if consumer::is_not_found(&error) => Err(ValidationError::single(
            "config.queue",
            format!("names no queue in the virtual host at {host}: declare it first"),
        )),
        Ok(Err(error)) => Err(ValidationError::single(
            "config.queue",
            format!(
                "could not be checked at {host}: {}",
                consumer::describe(&error, config.password.as_deref())
            ),
        )),
        Err(_) => Err(ValidationError::single(
            "config.queue",
            format!("could not be checked at {host} within {} s", consumer::CONNECT_TIMEOUT.as_secs()),
        )),
    }
}
