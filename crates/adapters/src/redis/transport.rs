//! The `redis` transport: one attempt as one `XADD` to a stream, trimmed to about `max_len`
//! entries; the entry id it answers is the success. Streams do not deduplicate: a delivery
//! repeated after a crash is a second entry with the same `delivery_id` field.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError};
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::destination::Destination;
use switchyard_core::id::DestinationId;
use switchyard_core::transport::{DeliveryError, OutboundMessage, Receipt, Transport, ValidatedConfig};

use super::config::{self, RedisAuth, RedisConfig};
use crate::config_io;
use crate::connections::{Connection, Connections, check_broker_url, check_written_url};
use crate::identity::{TRACEPARENT, X_CAUSATION_ID, X_CORRELATION_ID, X_EVENT_ID, X_EVENT_TYPE, identity};
use crate::ssrf::UrlPolicy;

/// Delivers to `redis` destinations over one multiplexed connection per destination.
pub struct RedisTransport {
    policy: UrlPolicy,
    connections: Connections<RedisConnection>,
}

#[derive(Clone)]
struct RedisConnection(MultiplexedConnection);

#[async_trait]
impl Connection for RedisConnection {
    /// Dropping the last handle closes the connection; commands in flight finish first.
    async fn close(self) {}
}

impl RedisTransport {
    /// `policy` says which addresses servers may be at (the SSRF guard).
    pub fn new(policy: UrlPolicy) -> Self {
        Self { policy, connections: Connections::default() }
    }

    async fn connect(
        &self,
        destination: &Destination,
        config: &RedisConfig,
    ) -> Result<RedisConnection, DeliveryError> {
        let mut url = config::parse_url(&config.url)
            .map_err(|reason| DeliveryError::permanent(format!("the destination's url {reason}")))?;
        let host = check_broker_url(self.policy, &url, config::DEFAULT_PORT).await?;
        if let Some(RedisAuth::UserPassword { username, password }) = &config.auth {
            let credentials = url.set_username(username).and_then(|()| url.set_password(Some(password)));
            credentials.map_err(|()| {
                DeliveryError::permanent("the destination's credentials do not fit in its URL")
            })?;
        }
        let client = redis::Client::open(url.as_str()).map_err(|e| {
            DeliveryError::permanent(format!("the destination's url is not usable: {}", describe(&e)))
        })?;
        let settings = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(destination.connect_timeout_ms.max(1))))
            .set_response_timeout(Some(Duration::from_millis(destination.timeout_ms.max(1))));
        client
            .get_multiplexed_async_connection_with_config(&settings)
            .await
            .map(RedisConnection)
            // The error may quote the URL, credentials included: name the host only.
            .map_err(|e| {
                DeliveryError::retryable(format!("could not connect to Redis at {host}: {}", describe(&e)))
            })
    }
}

impl Default for RedisTransport {
    fn default() -> Self {
        Self::new(UrlPolicy::default())
    }
}

#[async_trait]
impl Transport for RedisTransport {
    async fn validate(&self, raw: Value) -> Result<ValidatedConfig, ValidationError> {
        let validated = config::validate(raw, self.policy)?;
        check_written_url(self.policy, &validated.config).await?;
        Ok(validated)
    }

    async fn deliver(&self, message: &OutboundMessage<'_>) -> Result<Receipt, DeliveryError> {
        let destination = message.destination;
        let config: RedisConfig = config_io::stored(destination)?;
        let stream = config_io::name_for("stream", &config.stream, message.event, config::check_key)?;
        let payload = serde_json::to_string(message.body)
            .map_err(|e| DeliveryError::permanent(format!("the body is not JSON: {e}")))?;

        let mut command = redis::cmd("XADD");
        command.arg(&stream).arg("MAXLEN").arg("~").arg(config.max_len).arg("*");
        command.arg("delivery_id").arg(message.delivery_id.as_str());
        for (name, value) in identity(message) {
            command.arg(field_name(name)).arg(value);
        }
        command.arg("payload").arg(payload);

        let connection =
            self.connections.get_or_open(destination, || self.connect(destination, &config)).await?;
        let mut handle = connection.0;
        match command.query_async::<String>(&mut handle).await {
            Ok(entry) => {
                Ok(Receipt { status_code: None, response_body: Some(format!("entry {entry} of {stream}")) })
            }
            Err(error) if error.code() == Some("WRONGTYPE") => {
                Err(DeliveryError::permanent(format!("the key {stream} holds something other than a stream")))
            }
            Err(error) => {
                if error.is_io_error() || error.is_connection_dropped() || error.is_timeout() {
                    self.connections.forget(&destination.id).await;
                }
                Err(DeliveryError::retryable(format!("adding to {stream} failed: {}", describe(&error))))
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

/// The stream field that carries an identity header (SPEC §5).
fn field_name(header: &str) -> &'static str {
    match header {
        X_EVENT_TYPE => "event_type",
        X_EVENT_ID => "event_id",
        X_CORRELATION_ID => "correlation_id",
        X_CAUSATION_ID => "causation_id",
        TRACEPARENT => "traceparent",
        _ => "identity",
    }
}

/// What went wrong, without the URL the error may quote.
fn describe(error: &RedisError) -> String {
    match (error.code(), error.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_owned(),
        _ if error.is_timeout() => "timed out".to_owned(),
        _ if error.is_connection_refusal() => "connection refused".to_owned(),
        _ => format!("{:?}", error.kind()),
    }
}
