//! The `Adapter` trait: one implementation per destination kind turns a delivery into a
//! request to the outside world and says how it went.

use async_trait::async_trait;
use serde_json::Value;

use crate::destination::Destination;
use crate::event::Event;
use crate::id::DeliveryId;

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

#[async_trait]
pub trait Adapter: Send + Sync {
    async fn deliver(&self, message: &OutboundMessage<'_>) -> Result<Receipt, DeliveryError>;
}
