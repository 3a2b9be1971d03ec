//! What the API may ask of the engine: wake it, retry or replay deliveries, test a destination.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::json;
use switchyard_core::delivery::{Delivery, DeliveryFilter};
use switchyard_core::destination::Destination;
use switchyard_core::event::{Event, EventId, EventMetadata, EventSource, EventType};
use switchyard_core::id::DeliveryId;
use switchyard_core::store::{Store, StoreError};
use switchyard_core::time::now_millis;
use switchyard_core::transport::{OutboundMessage, Transports};

use crate::dispatch::Waker;
use crate::fast::FastLane;
use crate::metrics::Metrics;
use crate::operational::Operational;
use crate::pull::PullSources;

const REPLAY_BATCH: u32 = 500;
pub const PING_EVENT_TYPE: &str = "switchyard.ping";

#[derive(Clone)]
pub struct Control {
    store: Arc<dyn Store>,
    transports: Arc<Transports>,
    waker: Waker,
    running: Arc<AtomicBool>,
    metrics: Metrics,
    fast: FastLane,
    pulls: PullSources,
    operational: Operational,
}

/// How a test send to a destination went.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TestResult {
    pub success: bool,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
    pub response_body: Option<String>,
}

impl Control {
    pub fn new(
        store: Arc<dyn Store>,
        transports: Arc<Transports>,
        waker: Waker,
        running: Arc<AtomicBool>,
        metrics: Metrics,
        fast: FastLane,
        pulls: PullSources,
    ) -> Self {
        let operational = Operational::default();
        Self { store, transports, waker, running, metrics, fast, pulls, operational }
    }

    /// Reports what webhook sources do to `operational` (the engine's).
    pub fn with_operational(mut self, operational: Operational) -> Self {
        self.operational = operational;
        self
    }

    /// Where this node reports what operators hear of (operational events).
    pub fn operational(&self) -> Operational {
        self.operational.clone()
    }

    /// This node's pull sources: their pullers (which check configurations) and readers.
    pub fn pull_sources(&self) -> &PullSources {
        &self.pulls
    }

    /// The queue by which this node's ingest hands the deliveries it leases to its engine.
    pub fn fast_lane(&self) -> &FastLane {
        &self.fast
    }

    /// The transports of the kinds this node delivers to; the API validates destinations with
    /// them.
    pub fn transports(&self) -> &Transports {
        &self.transports
    }

    /// The node's metrics, shared by the engine and the API.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether the engine is taking work (false before it starts and once it stops).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    pub fn wake(&self) {
        self.waker.wake();
    }

    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// Makes one delivery due now with a fresh attempt budget.
    pub async fn retry(&self, id: &DeliveryId) -> Result<Option<Delivery>, StoreError> {
        let retried = self.store.retry_delivery(id, now_millis()).await?;
        if retried.is_some() {
            self.wake();
        }
        Ok(retried)
    }

    /// Counts the dead deliveries matching `filter` and replays them in the background, in
    /// batches; answers the count.
    pub async fn replay_dead(&self, filter: DeliveryFilter) -> Result<u64, StoreError> {
        let count = self.store.count_dead(&filter).await?;
        if count == 0 {
            return Ok(0);
        }
        let store = self.store.clone();
        let waker = self.waker.clone();
        tokio::spawn(async move {
            let mut replayed = 0;
            // Bounded by the count seen now, so deliveries that die again meanwhile are not
            // replayed in a loop.
            while replayed < count {
                match store
                    .replay_dead(&filter, now_millis(), REPLAY_BATCH.min((count - replayed) as u32))
                    .await
                {
                    Ok(0) => break,
                    Ok(rows) => {
                        replayed += rows;
                        waker.wake();
                    }
                    Err(error) => {
                        tracing::error!(%error, replayed, "replaying dead letters stopped");
                        return;
                    }
                }
            }
            tracing::info!(replayed, "dead letters replayed");
        });
        Ok(count)
    }

    /// Sends a `switchyard.ping` event to `destination` now, outside the outbox: nothing is
    /// stored and nothing is retried.
    pub async fn test_destination(&self, destination: &Destination) -> TestResult {
        let now = now_millis();
        let event_id = EventId::generate();
        let event = Event {
            event_id: event_id.clone(),
            event_type: EventType::from_trusted(PING_EVENT_TYPE),
            timestamp: now,
            payload: json!({"message": "a test delivery from Switchyard", "destination_id": destination.id}),
            metadata: EventMetadata {
                correlation_id: event_id.to_string(),
                causation_id: None,
                traceparent: None,
                request_id: None,
                headers: None,
            },
            ordering_key: None,
            source: EventSource::api(),
            received_at: now,
            published_by: None,
            content_hash: String::new(),
            seq: 0,
        };
        let delivery_id = DeliveryId::generate();
        let clock = Instant::now();
        let result = match self.transports.get(destination.kind) {
            None => Err(switchyard_core::transport::DeliveryError::permanent(format!(
                "destinations of kind {} cannot be delivered by this node",
                destination.kind
            ))),
            Some(transport) => {
                let message = OutboundMessage {
                    delivery_id: &delivery_id,
                    attempt: 1,
                    event: &event,
                    body: &event.payload,
                    destination,
                };
                transport.deliver(&message).await
            }
        };
        let duration_ms = clock.elapsed().as_millis() as u64;
        match result {
            Ok(receipt) => TestResult {
                success: true,
                status_code: receipt.status_code,
                duration_ms,
                error: None,
                response_body: receipt.response_body,
            },
            Err(error) => TestResult {
                success: false,
                status_code: error.status_code,
                duration_ms,
                error: Some(error.message),
                response_body: error.response_body,
            },
        }
    }
}
