//! The dispatcher: claims due deliveries in batches under a lease and runs them concurrently,
//! bounded by a semaphore; woken by ingest, with a slow poll only as a safety net.

use std::sync::Arc;
use std::time::Duration;

use switchyard_adapters::Adapters;
use switchyard_core::delivery::Delivery;
use switchyard_core::store::Store;
use switchyard_core::time::now_millis;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::attempt::attempt;
use crate::retention;
use crate::shutdown::Shutdown;
use crate::{Control, EngineSettings};

/// Wakes the dispatcher when work may have become due (an ingest, a retry, a replay).
#[derive(Clone, Default)]
pub struct Waker(Arc<Notify>);

impl Waker {
    pub fn wake(&self) {
        // A stored permit means a wake-up between two waits is never lost.
        self.0.notify_one();
    }
}

/// The delivery engine of one node.
pub struct Engine {
    store: Arc<dyn Store>,
    adapters: Arc<Adapters>,
    settings: EngineSettings,
    waker: Waker,
    node_id: String,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, adapters: Arc<Adapters>, settings: EngineSettings) -> Self {
        let node_id = format!("node-{}", uuid::Uuid::now_v7().simple());
        Self { store, adapters, settings, waker: Waker::default(), node_id }
    }

    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub fn control(&self) -> Control {
        Control::new(self.store.clone(), self.adapters.clone(), self.waker.clone())
    }

    /// Runs until `shutdown`, then drains: in-flight deliveries get `shutdown_grace_ms` to
    /// finish; the leases of the rest are handed back so any node can take them at once.
    pub async fn run(self, shutdown: Shutdown) {
        let pruner =
            tokio::spawn(retention::run(self.store.clone(), self.settings.clone(), shutdown.clone()));
        let mut in_flight = JoinSet::new();
        self.dispatch(&mut in_flight, shutdown).await;
        self.drain(in_flight).await;
        let _ = pruner.await;
    }

    async fn dispatch(&self, in_flight: &mut JoinSet<()>, mut shutdown: Shutdown) {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let poll = Duration::from_millis(self.settings.poll_interval_ms.max(1));
        while !shutdown.is_requested() {
            while in_flight.try_join_next().is_some() {}
            let free = permits.available_permits().min(self.settings.batch_size as usize);
            if free == 0 {
                tokio::select! {
                    _ = shutdown.requested() => break,
                    _ = in_flight.join_next() => continue,
                }
            }
            let now = now_millis();
            let lease_until = now + self.settings.lease_ms as i64;
            let claimed =
                match self.store.claim_deliveries(&self.node_id, now, lease_until, free as u32).await {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::error!(%error, "claiming deliveries failed; retrying shortly");
                        tokio::select! {
                            _ = shutdown.requested() => break,
                            _ = tokio::time::sleep(poll) => continue,
                        }
                    }
                };
            if claimed.is_empty() {
                let wait = self.idle_wait(poll).await;
                tokio::select! {
                    _ = shutdown.requested() => break,
                    _ = self.waker.0.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                continue;
            }
            for delivery in claimed {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    // Unreachable while only this loop takes permits; the lease expires and
                    // the delivery is claimed again if it ever happens.
                    tracing::warn!(delivery_id = %delivery.id, "no free slot for a claimed delivery");
                    continue;
                };
                in_flight.spawn(run_one(
                    self.store.clone(),
                    self.adapters.clone(),
                    self.node_id.clone(),
                    delivery,
                    permit,
                ));
            }
        }
    }

    /// How long to sleep with nothing due: until the next retry falls due, at most `poll`.
    async fn idle_wait(&self, poll: Duration) -> Duration {
        match self.store.next_due_at().await {
            Ok(Some(due)) => Duration::from_millis((due - now_millis()).max(0) as u64).min(poll),
            Ok(None) => poll,
            Err(error) => {
                tracing::warn!(%error, "reading the next due time failed");
                poll
            }
        }
    }

    async fn drain(&self, mut in_flight: JoinSet<()>) {
        let grace = Duration::from_millis(self.settings.shutdown_grace_ms);
        let left = in_flight.len();
        if left > 0 {
            tracing::info!(
                in_flight = left,
                grace_ms = grace.as_millis() as u64,
                "draining in-flight deliveries"
            );
        }
        let drained =
            tokio::time::timeout(grace, async { while in_flight.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(unfinished = in_flight.len(), "the grace period ended with deliveries in flight");
            in_flight.abort_all();
            while in_flight.join_next().await.is_some() {}
        }
        match self.store.release_leases(&self.node_id, now_millis()).await {
            Ok(0) => {}
            Ok(released) => tracing::info!(released, "handed unfinished deliveries back"),
            Err(error) => tracing::error!(%error, "handing leases back failed; they expire on their own"),
        }
    }
}

async fn run_one(
    store: Arc<dyn Store>,
    adapters: Arc<Adapters>,
    owner: String,
    delivery: Delivery,
    permit: OwnedSemaphorePermit,
) {
    let span = tracing::info_span!("delivery", delivery_id = %delivery.id, event_id = %delivery.event_id, destination_id = %delivery.destination_id);
    settle(store, adapters, owner, delivery).instrument(span).await;
    drop(permit);
}

async fn settle(store: Arc<dyn Store>, adapters: Arc<Adapters>, owner: String, delivery: Delivery) {
    let settled = match attempt(store.as_ref(), &adapters, &delivery).await {
        Ok(settled) => settled,
        Err(error) => {
            tracing::error!(%error, "loading the delivery failed; its lease will expire and it will be retried");
            return;
        }
    };
    let next = settled.next;
    match store.record_attempt(&owner, &settled.attempt, next, now_millis()).await {
        Ok(true) => tracing::debug!(outcome = settled.attempt.outcome.as_str(), ?next, "attempt recorded"),
        Ok(false) => {
            tracing::warn!("the lease was lost before the attempt was recorded; another node owns it")
        }
        Err(error) => tracing::error!(%error, "recording the attempt failed; the delivery will be retried"),
    }
}
