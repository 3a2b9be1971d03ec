//! The services behind the API: ingest, and the delivery engine that works the outbox.

pub mod attempt;
pub mod control;
pub mod dispatch;
pub mod ingest;
pub mod retention;
pub mod schema;
pub mod shutdown;

pub use control::{Control, TestResult};
pub use dispatch::{Engine, Waker};
pub use ingest::{BatchItem, IngestError, Ingestor};
pub use shutdown::{Shutdown, ShutdownTrigger};

/// How the engine of one node runs.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// How long a claimed delivery stays leased; after that another claim may take it.
    pub lease_ms: u64,
    /// Deliveries claimed per round trip to the store.
    pub batch_size: u32,
    /// The longest the dispatcher sleeps without a wake-up (the safety net).
    pub poll_interval_ms: u64,
    /// How long in-flight deliveries may finish after shutdown is requested.
    pub shutdown_grace_ms: u64,
    pub retention_days: u32,
    pub prune_interval_ms: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            concurrency: 512,
            lease_ms: 60_000,
            batch_size: 128,
            poll_interval_ms: 1_000,
            shutdown_grace_ms: 30_000,
            retention_days: 30,
            prune_interval_ms: 60_000,
        }
    }
}
