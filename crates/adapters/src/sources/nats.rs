//! The `nats` source kind: a JetStream durable pull consumer on a stream, filtered by a
//! subject. An event is named by the message's `Nats-Msg-Id` header (else the body's hash) and
//! typed by its `X-Event-Type` header (else its subject); `X-Ordering-Key` orders it.
//!
//! - `config`: the configuration (`url`, `subject`, `stream`, `durable`, `auth`, `batch_size`,
//!   `poll_interval_ms`, `ack_wait_ms`), its rules and its secrets.
//! - `consumer`: [`NatsConsumer`], the connection and the consumer's reads and acks.

pub mod config;
mod consumer;

use async_nats::Client;
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};
use async_nats::jetstream::{self, ErrorCode};
use async_trait::async_trait;
use serde_json::Value;
use switchyard_core::ValidationError;
use switchyard_core::error::Violations;
use switchyard_core::source::Source;
use switchyard_core::source::pull::{Consumer, PullError, Puller};
use switchyard_core::transport::ValidatedConfig;

pub use self::config::NatsSourceConfig;
pub use self::consumer::NatsConsumer;

#[derive(Debug, Default)]
pub struct NatsPuller;

impl NatsPuller {
    pub fn new() -> Self {
        Self
    }
}

#[async_trait]
impl Puller for NatsPuller {
    /// Checks the configuration, then that the server answers, the stream exists and takes the
    /// subject, and that a durable consumer of that name, if there is one, is a pull consumer
    /// of the same subject.
    async fn validate(&self, raw: Value) -> Result<ValidatedConfig, ValidationError> {
        let config = config::parse(raw)?;
        let (client, host) = consumer::connect(&config)
            .await
            .map_err(|reason| ValidationError::single("config.url", reason))?;
        let checked = check_stream(&client, &host, &config).await;
        let _ = tokio::time::timeout(consumer::CONNECT_TIMEOUT, client.drain()).await;
        checked?;
        config::split(&config)
    }

    async fn connect(&self, source: &Source) -> Result<Box<dyn Consumer>, PullError> {
        let config: NatsSourceConfig = serde_json::from_value(source.full_config())
            .map_err(|_| PullError::new("the source's configuration is not a valid nats configuration"))?;
        Ok(Box::new(NatsConsumer::open(&config).await?))
    }
}

async fn check_stream(client: &Client, host: &str, config: &NatsSourceConfig) -> Result<(), ValidationError> {
    let context = jetstream::new(client.clone());
    let stream = match context.get_stream(&config.stream).await {
        Ok(stream) => stream,
        Err(error) => {
            return Err(match error.kind() {
                GetStreamErrorKind::JetStream(api) if api.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                    ValidationError::single(
                        "config.stream",
                        format!("names no stream on NATS at {host}: create it first"),
                    )
                }
                _ => ValidationError::single(
                    "config.url",
                    format!("JetStream at {host} did not answer (is it enabled?): {error}"),
                ),
            });
        }
    };
    let mut v = Violations::default();
    let subjects = &stream.cached_info().config.subjects;
    if !subjects.is_empty() && !subjects.iter().any(|taken| config::is_within(&config.subject, taken)) {
        v.push(
            "config.subject",
            format!("is not among the subjects of stream {:?} ({})", config.stream, subjects.join(", ")),
        );
    }
    match stream.consumer_info(&config.durable).await {
        Ok(info) if info.config.deliver_subject.is_some() => v.push(
            "config.durable",
            format!("names a push consumer of stream {:?}; name a pull consumer or a new one", config.stream),
        ),
        Ok(info) if info.config.filter_subject != config.subject => v.push(
            "config.durable",
            format!(
                "names a consumer of stream {:?} filtered by {:?}, not by the subject; name another",
                config.stream, info.config.filter_subject
            ),
        ),
        Ok(_) => {}
        Err(error) if is_absent(error.kind()) => {}
        Err(error) => v.push("config.durable", format!("could not be looked up: {error}")),
    }
    v.into_result()
}

/// Whether a consumer look-up found no consumer (it is created when the source connects).
fn is_absent(kind: ConsumerInfoErrorKind) -> bool {
    match kind {
        ConsumerInfoErrorKind::NotFound => true,
        ConsumerInfoErrorKind::JetStream(api) => api.error_code() == ErrorCode::CONSUMER_NOT_FOUND,
        _ => false,
    }
}
