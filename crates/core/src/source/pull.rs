//! The seam to the sources the hub reads from rather than being called by: an application's
//! outbox table, a NATS JetStream consumer, a RabbitMQ queue. One [`Puller`] per kind checks a
//! configuration and opens a [`Consumer`]; the engine drives the consumer: it reads a batch,
//! commits the batch's events, and only then acknowledges it, so a crash in between reads the
//! same messages again, and their ids make them duplicates.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{Source, SourceKind};
use crate::ValidationError;
use crate::time::Millis;
use crate::transport::ValidatedConfig;

/// One message read and not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// Where the consumer knows it from; handed back to [`Consumer::acknowledge`].
    pub position: u64,
    /// The id it names (a row's id, `Nats-Msg-Id`, `message_id`); `None`: the SHA-256 of the body.
    pub event_id: Option<String>,
    /// The type it names (a row's `type`, `X-Event-Type`, else the subject or routing key).
    pub event_type: Option<String>,
    /// Events of one key reach ordered subscriptions in the order read.
    pub ordering_key: Option<String>,
    /// The payload as read; the engine parses it (a body that is not a JSON object is invalid).
    pub body: Vec<u8>,
    /// When it was written at its origin, if the origin says (a row's `created_at`): the lag.
    pub written_at: Option<Millis>,
}

/// Why a consumer could not read or acknowledge. The engine reconnects with backoff and shows
/// the message in the status report; it never names a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PullError(pub String);

impl PullError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// An open reader of one source, driven by one task at a time.
#[async_trait]
pub trait Consumer: Send {
    /// The next messages, at most the source's batch size; waits for some up to the source's
    /// poll interval and answers an empty batch if none came.
    async fn next_batch(&mut self) -> Result<Vec<Pulled>, PullError>;

    /// Called once per batch, after the events of `committed` are committed. `invalid` are
    /// the messages that are not events: a broker acknowledges them too (never redelivered
    /// forever); an outbox leaves such rows in place and reads past them.
    async fn acknowledge(&mut self, committed: &[u64], invalid: &[u64]) -> Result<(), PullError>;

    /// Messages waiting at the origin, if it can say cheaply (rows not yet relayed).
    async fn backlog(&mut self) -> Option<u64> {
        None
    }

    /// Lets go of the connection; messages read and not acknowledged return to the origin.
    async fn close(self: Box<Self>) {}
}

/// One pull kind: checks configurations and opens consumers.
#[async_trait]
pub trait Puller: Send + Sync {
    /// Checks `config` as written, fills in defaults and splits out secrets. Errors name fields
    /// from `config` down. What can be checked by reaching the origin (the database answers,
    /// the table and its columns exist) is checked here.
    async fn validate(&self, config: Value) -> Result<ValidatedConfig, ValidationError>;

    /// Opens a consumer of `source`, whose configuration (with secrets) was validated.
    async fn connect(&self, source: &Source) -> Result<Box<dyn Consumer>, PullError>;
}

/// The pullers of the kinds this build reads from. A pull kind without one parses, but no
/// source of it can be written.
#[derive(Clone, Default)]
pub struct Pullers {
    by_kind: HashMap<SourceKind, Arc<dyn Puller>>,
}

impl Pullers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, kind: SourceKind, puller: Arc<dyn Puller>) -> Self {
        self.by_kind.insert(kind, puller);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }

    pub fn get(&self, kind: SourceKind) -> Option<&Arc<dyn Puller>> {
        self.by_kind.get(&kind)
    }
}
