//! Pull sources (`outbox`, `nats`, `amqp`): the hub reads them rather than being called.
//!
//! Every node runs a reader per enabled pull source ([`reader`]); a reader reads only while it
//! holds the source's lease in the store, so one node at a time reads a source and another
//! takes over within [`SOURCE_LEASE_MS`] of its death. The set of readers follows the stored
//! sources: a scan every second starts readers for new or changed sources and stops those of
//! sources deleted, disabled or changed.

mod reader;
mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchyard_core::id::SourceId;
use switchyard_core::page::ListRequest;
use switchyard_core::source::Source;
use switchyard_core::source::pull::Pullers;
use switchyard_core::store::{Store, StoreResult};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use reader::SOURCE_LEASE_MS;
use status::{BatchCounts, Statuses};
pub use status::{PULL_FAILING_AFTER, PullStatus};

use crate::ingest::Ingestor;
use crate::metrics::Metrics;
use crate::operational::Operational;
use crate::shutdown::Shutdown;

/// How often the stored sources are compared with the running readers.
const SCAN_EVERY: Duration = Duration::from_secs(1);
const SOURCES_PER_PAGE: u32 = 100;

/// What the readers of one node share.
#[derive(Clone)]
pub(crate) struct Shared {
    store: Arc<dyn Store>,
    ingestor: Arc<Ingestor>,
    metrics: Metrics,
    node_id: String,
    max_payload_bytes: usize,
    statuses: Statuses,
    /// Told when a reader starts failing (`switchyard.source.failing`).
    operational: Operational,
}

impl Shared {
    fn counted(&self, source: &Source, counts: BatchCounts, lag_ms: i64) {
        let id = source.id.as_str();
        for (outcome, n) in
            [("accepted", counts.accepted), ("duplicate", counts.duplicate), ("invalid", counts.invalid)]
        {
            self.metrics.source_events(id, outcome, n);
        }
        if source.kind == switchyard_core::source::SourceKind::Outbox {
            self.metrics.source_lag(id, lag_ms);
        }
    }
}

/// The pull sources of one node: the pullers of each kind, and the readers running.
#[derive(Clone)]
pub struct PullSources {
    pullers: Pullers,
    shared: Shared,
}

/// A reader running, and what it was started for.
struct Running {
    version: i64,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl PullSources {
    pub fn new(
        store: Arc<dyn Store>,
        pullers: Pullers,
        ingestor: Ingestor,
        node_id: String,
        max_payload_bytes: usize,
        operational: Operational,
    ) -> Self {
        let metrics = ingestor.metrics().cloned().unwrap_or_default();
        let shared = Shared {
            store,
            ingestor: Arc::new(ingestor),
            metrics,
            node_id,
            max_payload_bytes,
            statuses: Statuses::default(),
            operational,
        };
        Self { pullers, shared }
    }

    /// The pullers by kind, which also check a pull source's configuration when it is written.
    pub fn pullers(&self) -> &Pullers {
        &self.pullers
    }

    /// What each pull source's reader on this node is doing, by source id.
    pub fn status(&self) -> HashMap<SourceId, PullStatus> {
        self.shared.statuses.snapshot()
    }

    /// Runs the readers until `shutdown`; then stops them, each handing its lease back.
    pub async fn run(self, mut shutdown: Shutdown) {
        if self.pullers.is_empty() {
            // Nothing to read: no scan of the sources every second for nothing.
            return;
        }
        let mut running: HashMap<SourceId, Running> = HashMap::new();
        loop {
            match self.enabled_sources().await {
                Ok(sources) => self.reconcile(&mut running, sources).await,
                Err(error) => {
                    tracing::warn!(%error, "listing the pull sources failed; the readers keep running")
                }
            }
            tokio::select! {
                () = shutdown.requested() => break,
                () = tokio::time::sleep(SCAN_EVERY) => {}
            }
        }
        for (_, reader) in running.drain() {
            stop(reader).await;
        }
    }

    /// Every enabled pull source of a kind this build reads.
    async fn enabled_sources(&self) -> StoreResult<Vec<Source>> {
        let mut all = Vec::new();
        for page in 1.. {
            let request = ListRequest::Page { page, per_page: SOURCES_PER_PAGE };
            let listing = self.shared.store.list_sources(request).await?;
            let last = listing.items.len() < SOURCES_PER_PAGE as usize;
            all.extend(
                listing
                    .items
                    .into_iter()
                    .filter(|s| s.enabled && s.kind.is_pulled() && self.pullers.get(s.kind).is_some()),
            );
            if last {
                break;
            }
        }
        Ok(all)
    }

    async fn reconcile(&self, running: &mut HashMap<SourceId, Running>, sources: Vec<Source>) {
        let wanted: HashMap<SourceId, Source> = sources.into_iter().map(|s| (s.id.clone(), s)).collect();
        let gone: Vec<SourceId> = running
            .iter()
            .filter(|(id, reader)| {
                reader.task.is_finished() || wanted.get(*id).is_none_or(|s| s.version != reader.version)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(reader) = running.remove(&id) {
                stop(reader).await;
            }
            if !wanted.contains_key(&id) {
                self.shared.statuses.forget(&id);
            }
        }
        for (id, source) in wanted {
            if running.contains_key(&id) {
                continue;
            }
            let Some(puller) = self.pullers.get(source.kind).cloned() else { continue };
            let (stop, stopped) = watch::channel(false);
            let version = source.version;
            let reader = reader::Reader { shared: self.shared.clone(), source, puller, stop: stopped };
            running.insert(id, Running { version, stop, task: tokio::spawn(reader.run()) });
        }
    }
}

async fn stop(reader: Running) {
    let _ = reader.stop.send(true);
    if let Err(error) = reader.task.await
        && error.is_panic()
    {
        tracing::error!("a pull source's reader panicked: {error}");
    }
}
