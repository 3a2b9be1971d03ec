//! One attempt at one delivery: load what it needs, hand it to the transport, decide what next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use switchyard_core::delivery::{Attempt, AttemptOutcome, Delivery, NextStep};
use switchyard_core::destination::Destination;
use switchyard_core::event::Event;
use switchyard_core::retry::{OutcomeClass, RetryDecision};
use switchyard_core::store::{Store, StoreError};
use switchyard_core::subscription::Subscription;
use switchyard_core::time::now_millis;
use switchyard_core::transport::{DeliveryError, OutboundMessage, Transports};

use crate::shape::{self, Shaped, Shaper};

/// Extra time granted past a destination's own timeout before the engine gives up on an
/// transport that does not return.
const ADAPTER_GRACE: Duration = Duration::from_secs(5);

/// What the dispatcher read for a whole batch and shares with its deliveries' attempts;
/// whatever is missing, the attempt reads itself.
#[derive(Debug, Default, Clone)]
pub struct Preloaded {
    pub destination: Option<Arc<Destination>>,
    pub subscription: Option<Arc<Subscription>>,
    /// The event as its ingest on this node stored it (the fast path).
    pub event: Option<Arc<Event>>,
}

/// The attempt made and where the delivery goes next.
pub struct Settled {
    pub attempt: Attempt,
    pub next: NextStep,
    /// The delivered event, if it still exists (and was read: a delivery given up is not).
    pub event: Option<Arc<Event>>,
}

/// The attempt that gives `delivery` up without running it: a permanent failure whose error
/// is `reason`, after which the delivery is dead like any other that failed for good.
pub fn given_up(delivery: &Delivery, reason: String) -> Settled {
    let attempt = Attempt {
        delivery_id: delivery.id.clone(),
        number: delivery.attempt_count + 1,
        started_at: now_millis(),
        duration_ms: 0,
        outcome: AttemptOutcome::Permanent,
        status_code: None,
        error: Some(reason),
        response_body: None,
    };
    Settled { attempt, next: NextStep::Dead, event: None }
}

/// Sends `delivery` once, with the body its subscription's jq makes (`shape`). Never fails:
/// every problem, a failing program included, becomes a recorded attempt, so a worker cannot
/// crash on bad data; a filtered delivery gets a `filtered` attempt and is not sent.
pub async fn attempt(
    store: &dyn Store,
    transports: &Transports,
    shaper: &Shaper,
    delivery: &Delivery,
    preloaded: Preloaded,
) -> Result<Settled, StoreError> {
    let started_at = now_millis();
    let clock = Instant::now();
    let made = delivery.attempt_count + 1;
    let event = match preloaded.event {
        Some(event) => Some(event),
        None => store.get_event(&delivery.event_id).await?.map(Arc::new),
    };
    let destination = match preloaded.destination {
        Some(destination) => Some(destination),
        None => store.get_destination(&delivery.destination_id).await?.map(Arc::new),
    };
    if let Some(event) = &event {
        let span = tracing::Span::current();
        span.record("correlation_id", event.metadata.correlation_id.as_str());
        if let Some(request_id) = &event.metadata.request_id {
            span.record("request_id", request_id.as_str());
        }
    }
    let (result, policy) = match (&event, &destination) {
        (None, _) => (Err(DeliveryError::permanent("the event no longer exists")), None),
        (_, None) => (Err(DeliveryError::permanent("the destination was deleted")), None),
        (Some(event), Some(destination)) => {
            match shape::body_for(store, shaper, delivery, preloaded.subscription, event).await? {
                Shaped::Filtered => {
                    let duration_ms = clock.elapsed().as_millis() as u64;
                    let attempt = shape::filtered(delivery, made, started_at, duration_ms);
                    return Ok(Settled { attempt, next: NextStep::Filtered, event: Some(Arc::clone(event)) });
                }
                Shaped::Failed(reason) => (Err(DeliveryError::permanent(reason)), None),
                Shaped::Deliver(body) => {
                    let result = match transports.get(destination.kind) {
                        None => Err(DeliveryError::permanent(format!(
                            "destinations of kind {} cannot be delivered by this node",
                            destination.kind
                        ))),
                        Some(transport) => {
                            let message = OutboundMessage {
                                delivery_id: &delivery.id,
                                attempt: made,
                                event,
                                body: &body,
                                destination,
                            };
                            let limit = Duration::from_millis(destination.timeout_ms) + ADAPTER_GRACE;
                            tokio::time::timeout(limit, transport.deliver(&message)).await.unwrap_or_else(
                                |_| Err(DeliveryError::retryable("the transport did not return in time")),
                            )
                        }
                    };
                    (result, Some(&destination.retry))
                }
            }
        }
    };
    let duration_ms = clock.elapsed().as_millis() as u64;
    let (outcome, status_code, error, response_body, next) = match result {
        Ok(receipt) => {
            (AttemptOutcome::Succeeded, receipt.status_code, None, receipt.response_body, NextStep::Succeeded)
        }
        Err(failure) => {
            let class = if failure.retryable { OutcomeClass::Retryable } else { OutcomeClass::Permanent };
            let jitter = rand::rng().random_range(-1.0..=1.0);
            let decision = match policy {
                Some(policy) => policy.after_failure(class, made, failure.retry_after_ms, jitter),
                None => RetryDecision::GiveUp,
            };
            let next = match decision {
                RetryDecision::RetryIn(ms) => NextStep::RetryAt(now_millis() + ms as i64),
                RetryDecision::GiveUp => NextStep::Dead,
            };
            let outcome =
                if failure.retryable { AttemptOutcome::Retryable } else { AttemptOutcome::Permanent };
            (outcome, failure.status_code, Some(failure.message), failure.response_body, next)
        }
    };
    let attempt = Attempt {
        delivery_id: delivery.id.clone(),
        number: made,
        started_at,
        duration_ms,
        outcome,
        status_code,
        error,
        response_body,
    };
    Ok(Settled { attempt, next, event })
}
