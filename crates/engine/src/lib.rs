//! The services behind the API: ingest, and the delivery engine that works the outbox.

pub mod attempt;
pub mod control;
pub mod dispatch;
mod fast;
mod gate;
pub mod ingest;
pub mod intake;
pub mod jq;
mod lease;
pub mod metrics;
pub mod operational;
pub mod pull;
pub mod recent;
pub mod retention;
pub mod schema;
pub mod shape;
pub mod shutdown;

pub use control::{Control, TestResult};
pub use dispatch::{Engine, Waker};
pub use fast::{FastLane, Reservation};
pub use ingest::{BatchItem, IngestError, Ingestor};
pub use intake::{IntakeError, Received, SourceActivity, SourceIntake, WebhookRequest};
pub use metrics::Metrics;
pub use pull::{PullSources, PullStatus};
pub use shutdown::{Shutdown, ShutdownTrigger};

/// How the engine of one node runs.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The owner name of this node's leases; `None`: a fresh `node-<uuid>`.
    pub node_id: Option<String>,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// Deliveries in flight at once to one destination; `None`: a quarter of `concurrency`.
    pub max_in_flight_per_destination: Option<usize>,
    /// How long a claimed delivery stays leased; after that another claim may take it.
    pub lease_ms: u64,
    /// Leases of a delivery in a row that may end without an outcome (the node running it
    /// stopped) before the next claim records it dead instead of running it again.
    pub max_unfinished_attempts: u32,
    /// Deliveries claimed per round trip to the store.
    pub batch_size: u32,
    /// Places in the fast queue: deliveries this node's ingest leases to it and hands over in
    /// memory, run without a claim; 0 turns the fast path off.
    pub fast_queue: usize,
    /// The longest the dispatcher sleeps without a wake-up (the safety net).
    pub poll_interval_ms: u64,
    /// How long in-flight deliveries may finish after shutdown is requested.
    pub shutdown_grace_ms: u64,
    pub retention_days: u32,
    /// Audit entries older than this many days are pruned.
    pub audit_retention_days: u32,
    pub prune_interval_ms: u64,
    /// Bounds of one run of a subscription's jq filter or transform.
    pub jq: jq::JqLimits,
    /// Events of pull sources, as the API's: only registered types (`ingest.require_registered_types`).
    pub require_registered_types: bool,
    /// The largest payload of an event read from a pull source (`limits.max_payload_bytes`).
    pub max_payload_bytes: usize,
    /// Whether the node publishes operational events (`switchyard.*`; see [`operational`]).
    pub operational_events: bool,
    /// How long dead deliveries of one destination after its first are gathered into one
    /// `switchyard.delivery.dead` event.
    pub dead_letter_alert_window_ms: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            node_id: None,
            concurrency: 512,
            max_in_flight_per_destination: None,
            lease_ms: 60_000,
            max_unfinished_attempts: 3,
            batch_size: 128,
            fast_queue: 4_096,
            poll_interval_ms: 1_000,
            shutdown_grace_ms: 30_000,
            retention_days: 30,
            audit_retention_days: 365,
            prune_interval_ms: 60_000,
            jq: jq::JqLimits::default(),
            require_registered_types: false,
            max_payload_bytes: 256 * 1024,
            operational_events: true,
            dead_letter_alert_window_ms: 60_000,
        }
    }
}

impl EngineSettings {
    /// The bound on deliveries in flight to one destination, so one that hangs cannot hold
    /// every slot: `max_in_flight_per_destination`, or a quarter of `concurrency`, never more
    /// than `concurrency` and at least 1.
    pub fn per_destination_limit(&self) -> usize {
        let concurrency = self.concurrency.max(1);
        self.max_in_flight_per_destination.unwrap_or(concurrency / 4).clamp(1, concurrency)
    }
}
