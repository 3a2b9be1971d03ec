//! Reading a JetStream durable pull consumer: one pull request per batch (async-nats's
//! `fetch`, `no_wait` with an expiry), which waits up to the poll interval for the first
//! message and then ends with what the stream holds now, up to the batch size. Each message is
//! acknowledged alone; the messages of a batch never acknowledged are delivered again once the
//! consumer's ack wait has passed.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::{Client, ConnectOptions};
use async_trait::async_trait;
use futures_util::StreamExt;
use switchyard_core::source::pull::{Consumer, PullError, Pulled};

use super::config::NatsSourceConfig;
use crate::nats::config::{DEFAULT_PORT, NatsAuth, parse_url};

/// How long connecting, and each request to the server, may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much longer than the pull request's own expiry the client waits for its first answer.
const REQUEST_MARGIN: Duration = Duration::from_secs(2);

/// The headers a message names its event by.
const MESSAGE_ID: &str = "Nats-Msg-Id";
const EVENT_TYPE: &str = "X-Event-Type";
const ORDERING_KEY: &str = "X-Ordering-Key";

/// An open client of the server `config` names, and its `host:port` for messages.
pub async fn connect(config: &NatsSourceConfig) -> Result<(Client, String), String> {
    let url = parse_url(&config.url).map_err(|reason| format!("the url {reason}"))?;
    let host = format!("{}:{}", url.host_str().unwrap_or_default(), url.port().unwrap_or(DEFAULT_PORT));
    let options = match &config.auth {
        None => ConnectOptions::new(),
        Some(NatsAuth::Token { token }) => ConnectOptions::with_token(token.clone()),
        Some(NatsAuth::UserPassword { username, password }) => {
            ConnectOptions::with_user_and_password(username.clone(), password.clone())
        }
        Some(NatsAuth::Creds { creds }) => ConnectOptions::with_credentials(creds)
            .map_err(|_| "the creds are not a valid .creds file".to_owned())?,
    };
    if url.scheme() == "tls" {
        crate::install_crypto_provider();
    }
    let options = options.name("switchyard").connection_timeout(CONNECT_TIMEOUT);
    let address = format!("{}://{host}", url.scheme());
    match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), options.connect(address)).await {
        Ok(Ok(client)) => Ok((client, host)),
        Ok(Err(error)) => Err(format!("could not connect to NATS at {host}: {error}")),
        Err(_) => Err(format!("could not connect to NATS at {host} within {} s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// An open reader of one durable pull consumer.
pub struct NatsConsumer {
    client: Client,
    consumer: jetstream::consumer::Consumer<pull::Config>,
    batch_size: usize,
    poll_interval: Duration,
    host: String,
    /// The messages of the last batch by position, each taken when acknowledged.
    batch: Vec<Option<jetstream::Message>>,
}

impl NatsConsumer {
    /// Connects and creates (or updates) the durable consumer `config` names on its stream.
    pub async fn open(config: &NatsSourceConfig) -> Result<Self, PullError> {
        let (client, host) = connect(config).await.map_err(PullError::new)?;
        let context = jetstream::new(client.clone());
        let stream = context.get_stream(&config.stream).await.map_err(|error| {
            PullError::new(format!("could not open stream {:?} at {host}: {error}", config.stream))
        })?;
        let consumer = stream
            .create_consumer(pull::Config {
                durable_name: Some(config.durable.clone()),
                filter_subject: config.subject.clone(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_millis(config.ack_wait_ms),
                ..Default::default()
            })
            .await
            .map_err(|error| {
                PullError::new(format!(
                    "could not create or update the durable consumer {:?} on stream {:?}: {error}",
                    config.durable, config.stream
                ))
            })?;
        Ok(Self {
            client,
            consumer,
            batch_size: usize::try_from(config.batch_size).unwrap_or(1).max(1),
            poll_interval: Duration::from_millis(config.poll_interval_ms),
            host,
            batch: Vec::new(),
        })
    }

    /// Up to the batch size of messages, waiting up to the poll interval for the first; none
    /// when none came.
    async fn fetch(&self) -> Result<Vec<jetstream::Message>, PullError> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(self.batch_size)
            .expires(self.poll_interval)
            .messages()
            .await
            .map_err(|error| PullError::new(format!("pulling from NATS at {} failed: {error}", self.host)))?;
        // The server ends the batch when the stream holds no more (404) or when nothing came
        // before the request expired (408); silence may mean the consumer or its stream is
        // gone: only an answer about the consumer tells.
        let mut next = match tokio::time::timeout(self.poll_interval + REQUEST_MARGIN, batch.next()).await {
            Ok(first) => first,
            Err(_) => {
                return match self.consumer.get_info().await {
                    Ok(_) => Ok(Vec::new()),
                    Err(error) => Err(PullError::new(format!(
                        "JetStream at {} did not answer the pull request, nor say how the consumer is: {error}",
                        self.host
                    ))),
                };
            }
        };
        let mut messages = Vec::new();
        // The rest follow at once; the batch's own timer bounds a server that never ends it.
        while let Some(message) = next {
            match message {
                Ok(message) => messages.push(message),
                // Ends the batch; what was read is handed on, the error comes again next time.
                Err(_) if !messages.is_empty() => break,
                Err(error) => {
                    return Err(PullError::new(format!(
                        "JetStream at {} refused the pull request: {error}",
                        self.host
                    )));
                }
            }
            next = batch.next().await;
        }
        Ok(messages)
    }

    fn pulled(position: usize, message: &jetstream::Message) -> Pulled {
        let header = |name: &str| {
            message
                .headers
                .as_ref()
                .and_then(|headers| headers.get(name))
                .map(|value| value.as_str().to_owned())
                .filter(|value| !value.is_empty())
        };
        let written_at = message
            .info()
            .ok()
            .and_then(|info| i64::try_from(info.published.unix_timestamp_nanos() / 1_000_000).ok());
        Pulled {
            position: position as u64,
            event_id: header(MESSAGE_ID),
            event_type: header(EVENT_TYPE).or_else(|| Some(message.subject.to_string())),
            ordering_key: header(ORDERING_KEY),
            body: message.payload.to_vec(),
            written_at,
        }
    }

    fn check_connected(&self) -> Result<(), PullError> {
        match self.client.connection_state() {
            State::Connected => Ok(()),
            _ => Err(PullError::new(format!("the connection to NATS at {} is lost", self.host))),
        }
    }
}

#[async_trait]
impl Consumer for NatsConsumer {
    async fn next_batch(&mut self) -> Result<Vec<Pulled>, PullError> {
        // Messages of an earlier batch not acknowledged come again after the ack wait.
        self.batch.clear();
        self.check_connected()?;
        self.batch = self.fetch().await?.into_iter().map(Some).collect();
        Ok(self
            .batch
            .iter()
            .enumerate()
            .filter_map(|(position, message)| Some(Self::pulled(position, message.as_ref()?)))
            .collect())
    }

    async fn acknowledge(&mut self, committed: &[u64], invalid: &[u64]) -> Result<(), PullError> {
        let mut acked = 0;
        for &position in committed.iter().chain(invalid) {
            let slot = usize::try_from(position).ok().and_then(|position| self.batch.get_mut(position));
            let Some(message) = slot.and_then(Option::take) else { continue };
            message.ack().await.map_err(|error| {
                PullError::new(format!("acknowledging to NATS at {} failed: {error}", self.host))
            })?;
            acked += 1;
        }
        if acked > 0 {
            // The acknowledgements are written out before the batch counts as acknowledged.
            match tokio::time::timeout(CONNECT_TIMEOUT, self.client.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    return Err(PullError::new(format!(
                        "acknowledging to NATS at {} failed: {error}",
                        self.host
                    )));
                }
                Err(_) => {
                    return Err(PullError::new(format!(
                        "NATS at {} did not take the acknowledgements within {} s",
                        self.host,
                        CONNECT_TIMEOUT.as_secs()
                    )));
                }
            }
        }
        Ok(())
    }

    async fn backlog(&mut self) -> Option<u64> {
        let info = tokio::time::timeout(CONNECT_TIMEOUT, self.consumer.info()).await.ok()?.ok()?;
        Some(info.num_pending + u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX))
    }

    async fn close(self: Box<Self>) {
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, self.client.drain()).await;
    }
}
