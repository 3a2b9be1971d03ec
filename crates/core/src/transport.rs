//! The seam between the hub and the outside world: one [`Transport`] per destination kind
//! checks a destination's configuration and turns a delivery into a message of its protocol;
//! [`Transports`], keyed by kind, is all the engine and the API know of them.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::ValidationError;
use crate::destination::{Destination, DestinationKind};
use crate::event::Event;
use crate::id::{DeliveryId, DestinationId};

/// Everything an adapter needs to send one attempt.
#[derive(Debug, Clone, Copy)]
pub struct OutboundMessage<'a> {
    /// Also the receiver's idempotency key (`webhook-id`): the same on every attempt.
    pub delivery_id: &'a DeliveryId,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub event: &'a Event,
    /// What to send: the event's payload, or a subscription's transform of the event.
    pub body: &'a Value,
    pub destination: &'a Destination,
}

/// A delivered attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipt {
    pub status_code: Option<u16>,
    /// The start of the receiver's answer, for the attempt log.
    pub response_body: Option<String>,
}

/// Why an attempt failed, and whether another could succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    pub retryable: bool,
    /// How long the receiver asked us to wait (`Retry-After`).
    pub retry_after_ms: Option<u64>,
    pub status_code: Option<u16>,
    pub message: String,
    pub response_body: Option<String>,
}

impl DeliveryError {
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            retryable: true,
            retry_after_ms: None,
            status_code: None,
            message: message.into(),
            response_body: None,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self { retryable: false, ..Self::retryable(message) }
    }
}

/// A kind's configuration after validation, with its secrets split out.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedConfig {
    /// What may be shown: the configuration without its secrets.
    pub config: Value,
    /// Secret values keyed by their dotted path in the configuration; sealed at rest and never
    /// shown.
    pub secrets: Map<String, Value>,
}

/// One destination kind's protocol.
#[async_trait]
pub trait Transport: Send + Sync {
    /// Checks `config` against the kind's rules, fills in its defaults and splits out its
    /// secrets. Errors name fields from `config` down (`config.url`). Addresses the SSRF guard
    /// forbids, as written or as their names resolve now, are refused here.
    async fn validate(&self, config: Value) -> Result<ValidatedConfig, ValidationError>;

    /// A fresh secret to sign what this kind sends with, or `None` when it does not sign.
    fn new_signing_secret(&self) -> Option<String> {
        None
    }

    /// Sends one attempt and classifies how it went.
    async fn deliver(&self, message: &OutboundMessage<'_>) -> Result<Receipt, DeliveryError>;

    /// Closes the connection the transport keeps for `destination`, which was changed or
    /// deleted.
    async fn forget(&self, _destination: &DestinationId) {}

    /// Closes the connections the transport keeps, letting what they still send finish. Called
    /// once, after the engine has stopped.
    async fn close(&self) {}
}

/// The transports of the kinds this build delivers to. Built once at start-up; a kind without
/// one parses, but no destination of it can be written.
#[derive(Clone, Default)]
pub struct Transports {
    by_kind: HashMap<DestinationKind, Arc<dyn Transport>>,
}

impl Transports {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the transport of `kind`.
    pub fn with(mut self, kind: DestinationKind, transport: Arc<dyn Transport>) -> Self {
        self.by_kind.insert(kind, transport);
        self
    }

    /// The transport of `kind`, or `None` when this build cannot deliver to it.
    pub fn get(&self, kind: DestinationKind) -> Option<&dyn Transport> {
        self.by_kind.get(&kind).map(Arc::as_ref)
    }

    /// Validates a destination's `config` with its kind's transport (see
    /// [`Transport::validate`]); a kind without one is refused on `kind`.
    pub async fn validate(
        &self,
        kind: DestinationKind,
        config: Value,
    ) -> Result<ValidatedConfig, ValidationError> {
        match self.get(kind) {
            Some(transport) => transport.validate(config).await,
            None => Err(ValidationError::single("kind", self.unavailable(kind))),
        }
    }

    /// Closes the connection kept for `destination`, of `kind` (see [`Transport::forget`]).
    pub async fn forget(&self, kind: DestinationKind, destination: &DestinationId) {
        if let Some(transport) = self.get(kind) {
            transport.forget(destination).await;
        }
    }

    /// Closes every transport's connections (see [`Transport::close`]).
    pub async fn close(&self) {
        for transport in self.by_kind.values() {
            transport.close().await;
        }
    }

    /// Why a destination of `kind` cannot be written or delivered to.
    pub fn unavailable(&self, kind: DestinationKind) -> String {
        let mut available: Vec<String> = self.by_kind.keys().map(ToString::to_string).collect();
        available.sort();
        let choices = match available.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => "none".to_owned(),
        };
        format!("destinations of kind {kind} are not available in this release; use {choices}")
    }
}

impl std::fmt::Debug for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kinds: Vec<String> = self.by_kind.keys().map(ToString::to_string).collect();
        kinds.sort();
        f.debug_struct("Transports").field("kinds", &kinds).finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    struct Refusing;

    #[async_trait]
    impl Transport for Refusing {
        async fn validate(&self, _config: Value) -> Result<ValidatedConfig, ValidationError> {
            Err(ValidationError::single("config.url", "refused by the transport"))
        }

        async fn deliver(&self, _message: &OutboundMessage<'_>) -> Result<Receipt, DeliveryError> {
            Err(DeliveryError::permanent("never sent"))
        }
    }

    #[tokio::test]
    async fn a_kind_without_a_transport_is_refused_on_kind_naming_the_kinds_there_are() {
        let transports = Transports::new()
            .with(DestinationKind::Http, Arc::new(Refusing))
            .with(DestinationKind::Nats, Arc::new(Refusing));
        let refused = transports.validate(DestinationKind::Mqtt, json!({})).await.expect_err("refused");
        assert_eq!(refused.0.len(), 1);
        assert_eq!(refused.0[0].field, "kind");
        assert_eq!(
            refused.0[0].message,
            "destinations of kind mqtt are not available in this release; use http or nats"
        );
        // A kind with a transport is validated by it.
        let by_transport = transports.validate(DestinationKind::Http, json!({})).await.expect_err("refused");
        assert_eq!(by_transport.0[0].field, "config.url");
        assert!(Transports::new().unavailable(DestinationKind::Http).ends_with("use none"));
    }
}
