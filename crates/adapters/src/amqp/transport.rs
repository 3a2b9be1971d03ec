//! The `amqp` transport: one attempt as one persistent, mandatory publish on a channel in
//! confirm mode. The broker's ack is success, a nack is retried, a message returned as
//! unroutable fails for good (no queue is bound for its routing key).

use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, ConnectionProperties};
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::destination::Destination;
use switchyard_core::id::DestinationId;
use switchyard_core::transport::{DeliveryError, OutboundMessage, Receipt, Transport, ValidatedConfig};

use super::config::{self, AmqpConfig};
use crate::config_io;
use crate::connections::{Connection, Connections, check_broker_url, check_written_url};
use crate::identity::{TRACEPARENT, X_CAUSATION_ID, X_EVENT_ID, identity};
use crate::ssrf::UrlPolicy;

/// `delivery_mode` of a message the broker writes to disk.
const PERSISTENT: u8 = 2;

/// Delivers to `amqp` destinations over one connection (and one confirming channel) per
/// destination.
pub struct AmqpTransport {
    policy: UrlPolicy,
    connections: Connections<AmqpConnection>,
}

#[derive(Clone)]
struct AmqpConnection {
    connection: std::sync::Arc<lapin::Connection>,
    channel: Channel,
}

#[async_trait]
impl Connection for AmqpConnection {
    async fn close(self) {
        let _ = self.connection.close(200, ShortString::from("closing")).await;
    }
}

impl AmqpTransport {
    /// `policy` says which addresses brokers may be at (the SSRF guard).
    pub fn new(policy: UrlPolicy) -> Self {
        Self { policy, connections: Connections::default() }
    }

    async fn connect(
        &self,
        destination: &Destination,
        config: &AmqpConfig,
    ) -> Result<AmqpConnection, DeliveryError> {
        let mut url = config::parse_url(&config.url)
            .map_err(|reason| DeliveryError::permanent(format!("the destination's url {reason}")))?;
        let host = check_broker_url(self.policy, &url, config::DEFAULT_PORT).await?;
        if let Some(password) = &config.password {
            url.set_password(Some(password)).map_err(|()| {
                DeliveryError::permanent("the destination's password does not fit in its URL")
            })?;
        }
        let limit = Duration::from_millis(destination.connect_timeout_ms.max(1));
        let opened = async {
            let connection =
                lapin::Connection::connect(url.as_str(), ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok::<_, lapin::Error>(AmqpConnection { connection: std::sync::Arc::new(connection), channel })
        };
        match tokio::time::timeout(limit, opened).await {
            Ok(Ok(connection)) => Ok(connection),
            // The error may quote the URL, password included: name the host and the kind only.
            Ok(Err(error)) => Err(DeliveryError::retryable(format!(
                "could not connect to the AMQP broker at {host}: {}",
                describe(&error)
            ))),
            Err(_) => Err(DeliveryError::retryable(format!(
                "could not connect to the AMQP broker at {host} within {} ms",
                limit.as_millis()
            ))),
        }
    }
}

impl Default for AmqpTransport {
    fn default() -> Self {
        Self::new(UrlPolicy::default())
    }
}

#[async_trait]
impl Transport for AmqpTransport {
    async fn validate(&self, raw: Value) -> Result<ValidatedConfig, ValidationError> {
        let validated = config::validate(raw, self.policy)?;
        check_written_url(self.policy, &validated.config).await?;
        Ok(validated)
    }

    async fn deliver(&self, message: &OutboundMessage<'_>) -> Result<Receipt, DeliveryError> {
        let destination = message.destination;
        let config: AmqpConfig = config_io::stored(destination)?;
        let routing_key = config_io::name_for(
            "routing key",
            &config.routing_key,
            message.event,
            config::check_routing_key,
        )?;
        let payload = serde_json::to_vec(message.body)
            .map_err(|e| DeliveryError::permanent(format!("the body is not JSON: {e}")))?;
        let properties = properties(message);

        let connection =
            self.connections.get_or_open(destination, || self.connect(destination, &config)).await?;
        let options = BasicPublishOptions { mandatory: true, immediate: false };
        let exchange = config.exchange.as_str();
        let publish = async {
            connection
                .channel
                .basic_publish(exchange.into(), routing_key.as_str().into(), options, &payload, properties)
                .await?
                .await
        };
        let limit = Duration::from_millis(destination.timeout_ms.max(1));
        let target = format!("exchange {exchange:?} with routing key {routing_key:?}");
        match tokio::time::timeout(limit, publish).await {
            Ok(Ok(Confirmation::Ack(None))) => Ok(Receipt {
                status_code: None,
                response_body: Some(format!("confirmed by the broker: {target}")),
            }),
            Ok(Ok(Confirmation::Ack(Some(returned)))) => Err(DeliveryError::permanent(format!(
                "no queue is bound for routing key {routing_key:?} on exchange {exchange:?} (returned: {} {})",
                returned.reply_code, returned.reply_text
            ))),
            Ok(Ok(Confirmation::Nack(_))) => Err(DeliveryError::retryable(format!(
                "the broker refused to take the message (nack) for {target}"
            ))),
            Ok(Ok(Confirmation::NotRequested)) => {
                self.connections.forget(&destination.id).await;
                Err(DeliveryError::retryable("the channel was not in confirm mode; it is opened again"))
            }
            Ok(Err(error)) => {
                // A channel or connection error closes the channel: the next attempt opens anew.
                self.connections.forget(&destination.id).await;
                Err(DeliveryError::retryable(format!("publishing to {target} failed: {}", describe(&error))))
            }
            Err(_) => {
                self.connections.forget(&destination.id).await;
                Err(DeliveryError::retryable(format!(
                    "the broker did not confirm {target} within {} ms",
                    limit.as_millis()
                )))
            }
        }
    }

    async fn forget(&self, destination: &DestinationId) {
        self.connections.forget(destination).await;
    }

    async fn close(&self) {
        self.connections.close_all().await;
    }
}

/// The message's properties (SPEC §5): `message_id` = delivery id, `type`, `correlation_id`,
/// JSON content, persistent, the event's time, and the rest of the identity as headers.
fn properties(message: &OutboundMessage<'_>) -> BasicProperties {
    let event = message.event;
    let mut headers = FieldTable::default();
    for (name, value) in identity(message) {
        if matches!(name, X_EVENT_ID | X_CAUSATION_ID | TRACEPARENT) {
            headers.insert(ShortString::from(name), AMQPValue::LongString(LongString::from(value)));
        }
    }
    let seconds = u64::try_from(event.timestamp / 1000).unwrap_or_default();
    BasicProperties::default()
        .with_message_id(ShortString::from(message.delivery_id.as_str()))
        .with_type(ShortString::from(event.event_type.as_str()))
        .with_correlation_id(ShortString::from(event.metadata.correlation_id.as_str()))
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(PERSISTENT)
        .with_timestamp(seconds)
        .with_headers(headers)
}

/// What went wrong, without the URL the error may quote.
fn describe(error: &lapin::Error) -> String {
    let text = error.to_string();
    // lapin's messages name protocol replies ("NOT_FOUND - no exchange …"), not the URL; an
    // I/O error's message is the system's.
    if text.contains("amqp://") { "the connection failed".to_owned() } else { text }
}
