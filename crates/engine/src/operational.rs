//! Operational events: the hub publishes what happens to it (a circuit that opens or closes, a
//! delivery that goes dead, a pull source that keeps failing) into itself, through the same
//! [`Ingestor`] as any event, with `source` `switchyard`, so ordinary subscriptions route them.
//!
//! Where such a thing is noticed (a worker, a source's reader, a webhook intake) an
//! [`Operational`] queues a notice without waiting; one [`Publisher`] task per node turns
//! notices into events, stored only when a subscription routes their type. Nothing
//! about an operational event's own deliveries raises another: neither its dead deliveries
//! nor a circuit change its attempt made.
//!
//! Delivery is at most once: a circuit change is committed with the attempt that made it and
//! then queued in memory, so a node that dies in between, or a queue that is full, loses the
//! event (the circuit's state stays visible in the API, the metrics and the status report).

mod dead_letters;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use switchyard_core::circuit::CircuitState;
use switchyard_core::delivery::{Delivery, NextStep};
use switchyard_core::event::{
    Event, EventId, EventInput, EventInputMetadata, EventType, IngestContext, IngestOutcome,
};
use switchyard_core::flow::CircuitChange;
use switchyard_core::id::{DeliveryId, DestinationId, SourceId, SubscriptionId};
use switchyard_core::operational::{
    self as names, CircuitClosed, CircuitOpened, DeliveriesDead, SourceFailing,
};
use switchyard_core::page::ListRequest;
use switchyard_core::store::{Store, StoreError, StoreResult};
use switchyard_core::subscription::SubscriptionFilter;
use switchyard_core::time::{self, Millis, now_millis};
use tokio::sync::mpsc;

use self::dead_letters::{DeadLetters, Report};
use crate::attempt::Settled;
use crate::ingest::{IngestError, Ingestor};
use crate::recent::{RECENT_FOR, Recent};
use crate::shutdown::Shutdown;

/// Notices waiting for the publisher, at most; past it, new ones are dropped (and logged):
/// the hub's own alerts never hold up its deliveries.
const QUEUE: usize = 1_024;
const SUBSCRIPTIONS_PER_PAGE: u32 = 100;

/// A delivery recorded dead, as its worker saw it.
#[derive(Debug, Clone)]
pub(crate) struct DeadDelivery {
    pub delivery_id: DeliveryId,
    pub event_id: EventId,
    pub subscription_id: SubscriptionId,
    pub destination_id: DestinationId,
    pub last_error: Option<String>,
    pub attempt_count: u32,
    pub at: Millis,
    /// Its event, when the worker had it; the publisher reads it otherwise.
    pub event: Option<Arc<Event>>,
}

/// A pull source that just started failing.
#[derive(Debug, Clone)]
pub(crate) struct FailingSource {
    pub source_id: SourceId,
    pub name: String,
    pub kind: &'static str,
    pub error: String,
    pub failures: u32,
}

enum Notice {
    Circuit { change: CircuitChange, last_error: Option<String> },
    Dead(DeadDelivery),
    SourceFailing(FailingSource),
}

impl Notice {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Circuit { change, .. } if change.state == CircuitState::Closed => names::CIRCUIT_CLOSED,
            Self::Circuit { .. } => names::CIRCUIT_OPENED,
            Self::Dead(_) => names::DELIVERY_DEAD,
            Self::SourceFailing(_) => names::SOURCE_FAILING,
        }
    }
}

/// Where this node's workers and readers report what operators hear of. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Operational {
    /// `None`: operational events are off.
    notices: Option<mpsc::Sender<Notice>>,
}

impl Operational {
    /// Reports what the recorded attempt `settled` at `delivery` did: the change it made to
    /// its destination's circuit (`circuit`), and its delivery going dead. Nothing is reported
    /// of an operational event's own attempts, so that no alert causes another: a destination
    /// that receives only operational events never alerts about itself.
    pub(crate) fn attempt_recorded(
        &self,
        delivery: &Delivery,
        settled: &Settled,
        circuit: Option<CircuitChange>,
        at: Millis,
    ) {
        if settled.event.as_deref().is_some_and(names::is_operational) {
            return;
        }
        if let Some(change) = circuit {
            self.tell(Notice::Circuit { change, last_error: settled.attempt.error.clone() });
        }
        if settled.next == NextStep::Dead {
            self.tell(Notice::Dead(DeadDelivery {
                delivery_id: delivery.id.clone(),
                event_id: delivery.event_id.clone(),
                subscription_id: delivery.subscription_id.clone(),
                destination_id: delivery.destination_id.clone(),
                last_error: settled.attempt.error.clone(),
                attempt_count: settled.attempt.number,
                at,
                event: settled.event.clone(),
            }));
        }
    }

    pub(crate) fn source_failing(&self, failing: FailingSource) {
        self.tell(Notice::SourceFailing(failing));
    }

    fn tell(&self, notice: Notice) {
        let Some(notices) = &self.notices else { return };
        if let Err(mpsc::error::TrySendError::Full(notice)) = notices.try_send(notice) {
            let event_type = notice.event_type();
            tracing::warn!(
                event_type,
                "operational events come faster than they are published; one is dropped"
            );
        }
    }
}

/// What the publisher needs to know.
#[derive(Debug, Clone)]
pub struct PublisherSettings {
    pub node_id: String,
    /// How long dead deliveries of one destination after its first are gathered into one event.
    pub dead_letter_window_ms: u64,
    pub max_payload_bytes: usize,
}

/// The task that publishes this node's operational events.
pub struct Publisher {
    store: Arc<dyn Store>,
    ingestor: Ingestor,
    settings: PublisherSettings,
    notices: mpsc::Receiver<Notice>,
    dead_letters: DeadLetters,
    /// Whether any subscription routes each operational type, as read a moment ago.
    routed: Recent<EventType, bool>,
}

impl Publisher {
    /// The publisher, and the handle that feeds it.
    pub fn new(
        store: Arc<dyn Store>,
        ingestor: Ingestor,
        settings: PublisherSettings,
    ) -> (Self, Operational) {
        let (queue, notices) = mpsc::channel(QUEUE);
        let dead_letters = DeadLetters::new(settings.dead_letter_window_ms);
        let routed = Recent::new(RECENT_FOR);
        let publisher = Self { store, ingestor, settings, notices, dead_letters, routed };
        (publisher, Operational { notices: Some(queue) })
    }

    /// Publishes notices until `stop`; then what is queued, and the dead deliveries its
    /// windows hold, so a graceful stop loses none.
    pub async fn run(mut self, mut stop: Shutdown) {
        loop {
            let wait = self.dead_letters.next_due_at().map(|at| (at - now_millis()).max(0));
            let window_ends = tokio::time::sleep(Duration::from_millis(wait.unwrap_or(0) as u64));
            tokio::select! {
                notice = self.notices.recv() => match notice {
                    Some(notice) => self.handle(notice).await,
                    None => break,
                },
                () = window_ends, if wait.is_some() => {}
                () = stop.requested() => break,
            }
            for report in self.dead_letters.due(now_millis()) {
                self.publish_dead(report).await;
            }
        }
        while let Ok(notice) = self.notices.try_recv() {
            self.handle(notice).await;
        }
        for report in self.dead_letters.drain() {
            self.publish_dead(report).await;
        }
    }

    async fn handle(&mut self, notice: Notice) {
        match notice {
            Notice::Circuit { change, last_error } => self.publish_circuit(change, last_error).await,
            Notice::Dead(mut dead) => {
                if dead.event.is_none() {
                    dead.event = self.read_event(&dead.event_id).await;
                }
                if dead.event.as_deref().is_some_and(names::is_operational) {
                    return;
                }
                let now = now_millis();
                for report in self.dead_letters.due(now) {
                    self.publish_dead(report).await;
                }
                if let Some(report) = self.dead_letters.dead(dead, now) {
                    self.publish_dead(report).await;
                }
            }
            Notice::SourceFailing(failing) => {
                let payload = SourceFailing {
                    source_id: failing.source_id.to_string(),
                    source_name: failing.name,
                    kind: failing.kind.to_owned(),
                    error: failing.error,
                    consecutive_failures: failing.failures,
                    node_id: self.settings.node_id.clone(),
                };
                self.publish(names::SOURCE_FAILING, None, now_millis(), None, &payload).await;
            }
        }
    }

    async fn publish_circuit(&self, change: CircuitChange, last_error: Option<String>) {
        let destination_name = self.destination_name(&change.destination_id).await;
        let destination_id = change.destination_id.to_string();
        // Named after the opening, so that the same change published twice is one event.
        let opening = change.opened_at.unwrap_or(change.at);
        match change.state {
            CircuitState::Open => {
                let payload = CircuitOpened {
                    destination_name,
                    reason: change.reason,
                    last_error,
                    opened_at: change.opened_at,
                    next_probe_at: change.retry_at,
                    cooldown_ms: change.cooldown_ms,
                    window_attempts: change.window_attempts,
                    window_failed: change.window_failed,
                    destination_id: destination_id.clone(),
                };
                let id = format!("circuit_opened:{destination_id}:{opening}");
                self.publish(names::CIRCUIT_OPENED, Some(id), change.at, None, &payload).await;
            }
            CircuitState::Closed => {
                let payload = CircuitClosed {
                    destination_name,
                    opened_at: change.opened_at,
                    closed_at: change.at,
                    open_for_ms: change.opened_at.and_then(|at| u64::try_from(change.at - at).ok()),
                    reason: change.reason,
                    destination_id: destination_id.clone(),
                };
                let id = format!("circuit_closed:{destination_id}:{opening}");
                self.publish(names::CIRCUIT_CLOSED, Some(id), change.at, None, &payload).await;
            }
            CircuitState::HalfOpen => {}
        }
    }

    async fn publish_dead(&self, report: Report) {
        let last = &report.last;
        let payload = DeliveriesDead {
            destination_id: last.destination_id.to_string(),
            destination_name: self.destination_name(&last.destination_id).await,
            count: report.count,
            delivery_ids: report.delivery_ids.iter().map(ToString::to_string).collect(),
            delivery_id: last.delivery_id.to_string(),
            event_id: last.event_id.to_string(),
            event_type: last.event.as_ref().map(|event| event.event_type.to_string()),
            subscription_id: last.subscription_id.to_string(),
            last_error: last.last_error.clone(),
            attempt_count: last.attempt_count,
            first_dead_at: report.first_dead_at,
            last_dead_at: last.at,
        };
        let cause = Some(last.event_id.as_str());
        self.publish(names::DELIVERY_DEAD, None, last.at, cause, &payload).await;
    }

    /// Ingests one operational event, if a subscription routes its type (a hub nobody asked
    /// for alerts stores none); a failure is logged, never retried (at most once).
    async fn publish(
        &self,
        event_type: &str,
        event_id: Option<String>,
        at: Millis,
        causation_id: Option<&str>,
        payload: &impl Serialize,
    ) {
        if !self.is_routed(event_type).await {
            tracing::debug!(event_type, "no subscription routes this operational event; it is not stored");
            return;
        }
        let payload = match serde_json::to_value(payload) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, event_type, "an operational event could not be written as JSON");
                return;
            }
        };
        let input = EventInput {
            event_id,
            event_type: Some(event_type.to_owned()),
            timestamp: Some(time::format_rfc3339(at)),
            payload: Some(payload),
            metadata: Some(EventInputMetadata {
                correlation_id: None,
                causation_id: causation_id.map(str::to_owned),
            }),
            ordering_key: None,
        };
        let ctx = IngestContext {
            source: names::source(),
            correlation_id: None,
            traceparent: None,
            request_id: None,
            principal: None,
            headers: None,
            received_at: now_millis(),
            max_payload_bytes: self.settings.max_payload_bytes,
        };
        match self.ingestor.ingest_one(input, &ctx).await {
            Ok(IngestOutcome::Created(event)) => {
                tracing::info!(event_type, event_id = %event.event_id, "published an operational event");
            }
            Ok(_) => tracing::debug!(event_type, "the operational event was published before"),
            Err(IngestError::Invalid(error)) => {
                tracing::warn!(%error, event_type, "an operational event was refused (was its event type changed?)");
            }
            Err(IngestError::Store(error)) => {
                tracing::warn!(%error, event_type, "an operational event could not be stored; it is lost");
            }
        }
    }

    /// Whether an enabled subscription routes `event_type`; when the subscriptions cannot be
    /// read, the event is published anyway.
    async fn is_routed(&self, event_type: &str) -> bool {
        let event_type = EventType::from_trusted(event_type);
        let load = || async {
            for page in 1.. {
                let request = ListRequest::Page { page, per_page: SUBSCRIPTIONS_PER_PAGE };
                let listing = self.store.list_subscriptions(&SubscriptionFilter::default(), request).await?;
                if listing.items.iter().any(|s| s.routes(&event_type)) {
                    return Ok(true);
                }
                if listing.items.len() < SUBSCRIPTIONS_PER_PAGE as usize {
                    break;
                }
            }
            Ok::<_, StoreError>(false)
        };
        self.routed.get_or_load(&event_type, |_| true, load).await.unwrap_or_else(|error| {
            tracing::warn!(%error, "reading the subscriptions failed; the operational event is published anyway");
            true
        })
    }

    async fn destination_name(&self, id: &DestinationId) -> Option<String> {
        match self.store.get_destination(id).await {
            Ok(destination) => destination.map(|d| d.name),
            Err(error) => {
                tracing::warn!(%error, destination_id = %id, "reading a destination's name failed");
                None
            }
        }
    }

    async fn read_event(&self, id: &EventId) -> Option<Arc<Event>> {
        match self.store.get_event(id).await {
            Ok(event) => event.map(Arc::new),
            Err(error) => {
                tracing::warn!(%error, event_id = %id, "reading a dead delivery's event failed");
                None
            }
        }
    }
}

/// Registers the operational event types with their schemas, so `GET /v1/event-types` lists
/// them and `ingest.require_registered_types` lets them in. Idempotent, and safe when several
/// nodes start at once: a type already there with the same schema is left as it is; one whose
/// schema differs (an older release's) is brought up to date.
pub async fn register_event_types(store: &dyn Store) -> StoreResult<()> {
    for definition in names::definitions(now_millis()) {
        let stored = match store.get_event_type(&definition.name).await? {
            Some(stored) => stored,
            None => match store.create_event_type(&definition).await {
                Ok(()) | Err(StoreError::Conflict(_)) => continue,
                Err(error) => return Err(error),
            },
        };
        if stored.schema == definition.schema {
            continue;
        }
        match store.update_event_type(&definition, stored.version).await {
            // Another node brought it up to date first.
            Ok(_) | Err(StoreError::VersionMismatch { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
