//! The services behind the API that every source shares: ingest now; the delivery workers,
//! relays and schedulers join here.

pub mod ingest;
pub mod schema;

pub use ingest::{BatchItem, IngestError, Ingestor};
