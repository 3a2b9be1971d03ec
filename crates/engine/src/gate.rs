//! The gate between a claim and the sends. Each claimed delivery passes, in order:
//!
//! 1. isolation: a bound on this node's deliveries in flight per destination, so a destination
//!    that hangs holds at most that many of the node's slots and the others keep flowing;
//! 2. the destination's circuit breaker and rate limit, decided by the store
//!    ([`FlowStore::admit`]) so every node shares them.
//!
//! What may not go now is handed back to the store due when it may ([`FlowStore::defer_deliveries`]):
//! no attempt is recorded and its attempt budget is untouched. Deliveries wait; none fails here.
//!
//! The claim itself passes over paused destinations and those flow control blocks, so what
//! waits here is what the node's isolation bound holds, what a rate limit admits only in part,
//! and what a destination paused or blocked after it was claimed. Deliveries leased at their
//! ingest (the fast path) were never claimed: for them this is the only check. A claim cannot skip a destination that
//! is busy on this node, so while one is busy its backlog keeps coming back with every claim.
//! After a claim brought deliveries that found no slot, the next claims take only what the
//! destinations seen lately have slots for; a full claim, which may reach other destinations'
//! deliveries, is tried again [`EXPLORE_AFTER_MS`] later.
//!
//! [`FlowStore::admit`]: switchyard_core::flow::FlowStore::admit
//! [`FlowStore::defer_deliveries`]: switchyard_core::flow::FlowStore::defer_deliveries

use std::collections::HashMap;
use std::sync::Arc;

use switchyard_core::delivery::Delivery;
use switchyard_core::destination::Destination;
use switchyard_core::flow::{AdmitRequest, Deferral};
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::store::Store;
use switchyard_core::time::Millis;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a delivery waits when its destination has no free slot on this node.
const BUSY_WAIT_MS: Millis = 200;
/// After a claim brought deliveries with no slot, how long claims stay within the known
/// destinations' free slots.
const EXPLORE_AFTER_MS: Millis = 50;
/// How long a half-open probe's lease outlives its destination's timeout: past the engine's
/// own grace on a transport (5 s), so a slow probe is not mistaken for an abandoned one.
const PROBE_MARGIN_MS: Millis = 10_000;
/// How long deliveries wait when the store could not say whether they may go.
const WAIT_AFTER_ERROR_MS: Millis = 1_000;
/// How long a destination with nothing in flight is remembered.
const FORGET_AFTER_MS: Millis = 5_000;

/// A delivery cleared to be sent now.
pub(crate) struct Cleared {
    pub delivery: Delivery,
    /// Its slot among this node's deliveries in flight to the destination; hold it until the
    /// send returns.
    pub slot: OwnedSemaphorePermit,
    /// Whether it is its destination's half-open probe: its verdict may reopen the way for
    /// the deliveries that wait.
    pub probe: bool,
    /// Its destination as read to clear it, so the attempt need not read it again; `None`
    /// when that read found nothing or failed.
    pub destination: Option<Arc<Destination>>,
}

/// This node's view of one destination.
struct Lane {
    slots: Arc<Semaphore>,
    /// When a delivery of it was last claimed.
    seen_at: Millis,
}

pub(crate) struct Gate {
    store: Arc<dyn Store>,
    per_destination: usize,
    /// Destinations with deliveries in flight on this node, or claimed lately.
    lanes: HashMap<DestinationId, Lane>,
    /// Until when claims stay within the known destinations' free slots.
    cautious_until: Millis,
}

impl Gate {
    pub fn new(store: Arc<dyn Store>, per_destination: usize) -> Self {
        Self { store, per_destination: per_destination.max(1), lanes: HashMap::new(), cautious_until: 0 }
    }

    /// How many deliveries to claim at `now` when the node has `free` slots: all of them,
    /// unless a claim lately brought deliveries that found no slot; then what the known
    /// destinations have slots for (0 when none has: the dispatcher waits for one).
    pub fn claim_size(&self, free: usize, now: Millis) -> usize {
        if now >= self.cautious_until {
            return free;
        }
        let known: usize = self.lanes.values().map(|lane| lane.slots.available_permits()).sum();
        free.min(known)
    }

    /// When a full claim may be tried again, if claims are being kept small.
    pub fn cautious_until(&self, now: Millis) -> Option<Millis> {
        (self.cautious_until > now).then_some(self.cautious_until)
    }

    /// Sorts what `owner` claimed into what goes now and what waits, and hands the waiting
    /// ones back to the store. `lease_until` is the claim's lease, which bounds a probe's.
    pub async fn clear(
        &mut self,
        owner: &str,
        claimed: Vec<Delivery>,
        now: Millis,
        lease_until: Millis,
    ) -> Vec<Cleared> {
        let per_destination = self.per_destination;
        self.lanes.retain(|_, lane| {
            lane.slots.available_permits() < per_destination || now - lane.seen_at < FORGET_AFTER_MS
        });
        let mut cleared = Vec::with_capacity(claimed.len());
        let mut waiting = Vec::new();
        let mut busy = 0;
        for (destination_id, group) in by_destination(claimed) {
            busy +=
                self.clear_group(&destination_id, group, now, lease_until, &mut cleared, &mut waiting).await;
        }
        if busy > 0 {
            self.cautious_until = now + EXPLORE_AFTER_MS;
        }
        if !waiting.is_empty() {
            match self.store.defer_deliveries(owner, &waiting, now).await {
                Ok(deferred) => tracing::debug!(deferred, busy, "deliveries wait for their destination"),
                Err(error) => tracing::error!(
                    %error,
                    waiting = waiting.len(),
                    "handing waiting deliveries back failed; they are claimed again when their leases expire"
                ),
            }
        }
        cleared
    }

    /// Clears the deliveries of one destination; answers how many found no slot.
    async fn clear_group(
        &mut self,
        destination_id: &DestinationId,
        group: Vec<Delivery>,
        now: Millis,
        lease_until: Millis,
        cleared: &mut Vec<Cleared>,
        waiting: &mut Vec<Deferral>,
    ) -> usize {
        let per_destination = self.per_destination;
        let lane = self
            .lanes
            .entry(destination_id.clone())
            .or_insert_with(|| Lane { slots: Arc::new(Semaphore::new(per_destination)), seen_at: now });
        lane.seen_at = now;
        let mut seated = Vec::with_capacity(group.len());
        let mut busy = 0;
        for delivery in group {
            match lane.slots.clone().try_acquire_owned() {
                Ok(slot) => seated.push((delivery, slot)),
                Err(_) => {
                    busy += 1;
                    waiting.push(Deferral { delivery_id: delivery.id, until: now + BUSY_WAIT_MS });
                }
            }
        }
        if seated.is_empty() {
            tracing::debug!(%destination_id, "every slot of the destination is busy");
            return busy;
        }
        let destination = match self.store.get_destination(destination_id).await {
            Ok(Some(destination)) => destination,
            // Gone, or unreadable: the attempt records why it cannot be sent, or fails to load
            // the same way and leaves the lease to expire.
            Ok(None) | Err(_) => {
                cleared.extend(seated.into_iter().map(|(delivery, slot)| Cleared {
                    delivery,
                    slot,
                    probe: false,
                    destination: None,
                }));
                return busy;
            }
        };
        if !destination.enabled {
            // Paused since it was leased (or leased at ingest, which does not look): it waits
            // in the store, where claims pass over it until it is resumed.
            waiting.extend(seated.into_iter().map(|(d, _)| Deferral { delivery_id: d.id, until: now }));
            return busy;
        }
        let destination = Arc::new(destination);
        let candidates: Vec<DeliveryId> = seated.iter().map(|(d, _)| d.id.clone()).collect();
        let timeout = i64::try_from(destination.timeout_ms).unwrap_or(i64::MAX);
        let request = AdmitRequest {
            destination_id,
            candidates: &candidates,
            rate_limit: destination.rate_limit.as_ref(),
            probe_until: now.saturating_add(timeout).saturating_add(PROBE_MARGIN_MS).min(lease_until),
        };
        let admission = match self.store.admit(&request, now).await {
            Ok(admission) => admission,
            Err(error) => {
                tracing::error!(%error, %destination_id, "asking flow control failed; the deliveries wait");
                let until = now + WAIT_AFTER_ERROR_MS;
                waiting.extend(seated.into_iter().map(|(d, _)| Deferral { delivery_id: d.id, until }));
                return busy;
            }
        };
        if admission.probe {
            tracing::info!(%destination_id, delivery_id = %candidates[0], "circuit half-open: sending the probe");
        }
        for (i, (delivery, slot)) in seated.into_iter().enumerate() {
            if i < admission.admitted {
                cleared.push(Cleared {
                    delivery,
                    slot,
                    probe: admission.probe && i == 0,
                    destination: Some(Arc::clone(&destination)),
                });
            } else {
                let until = admission
                    .deferred
                    .get(i - admission.admitted)
                    .copied()
                    .unwrap_or(now + WAIT_AFTER_ERROR_MS);
                waiting.push(Deferral { delivery_id: delivery.id, until });
            }
        }
        busy
    }
}

/// The deliveries of each destination, destinations in the order they first appear and
/// deliveries in claim order.
fn by_destination(claimed: Vec<Delivery>) -> Vec<(DestinationId, Vec<Delivery>)> {
    let mut groups: Vec<(DestinationId, Vec<Delivery>)> = Vec::new();
    let mut index: HashMap<DestinationId, usize> = HashMap::new();
    for delivery in claimed {
        match index.get(&delivery.destination_id) {
            Some(&at) => groups[at].1.push(delivery),
            None => {
                index.insert(delivery.destination_id.clone(), groups.len());
                groups.push((delivery.destination_id.clone(), vec![delivery]));
            }
        }
    }
    groups
}
