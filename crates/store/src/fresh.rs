//! Deliveries an ingest writes already leased to the node that ingests ([`FreshLease`]), so
//! it runs them without claiming them back; both backends decide which through [`Leasing`].

use switchyard_core::delivery::Delivery;
use switchyard_core::event::{IngestOutcome, NewEvent};
use switchyard_core::id::DeliveryId;
use switchyard_core::store::{FreshLease, Ingested};
use switchyard_core::subscription::Subscription;
use switchyard_core::time::Millis;

/// What one ingest call writes besides its events: which deliveries it leases (at most the
/// lease's `max`, never an ordered one), and whether it leaves any pending.
#[derive(Debug, Default)]
pub(crate) struct Leasing {
    lease: Option<FreshLease>,
    leased: Vec<Delivery>,
    subscriptions: Vec<Subscription>,
    /// Whether a delivery was written pending, for the claims.
    pending: bool,
}

impl Leasing {
    pub(crate) fn new(lease: Option<FreshLease>) -> Self {
        Self { lease, ..Self::default() }
    }

    /// The delivery of `event` to `subscription`, if it is to be written leased; `None` when
    /// it is to be written pending. A delivery `for_claims` is never leased here: an ordered
    /// one (whether it may go depends on the others of its key, which the claim checks), or
    /// one of a paused destination (which claims pass over until it is resumed).
    pub(crate) fn lease(
        &mut self,
        event: &NewEvent,
        subscription: &Subscription,
        for_claims: bool,
        now: Millis,
    ) -> Option<&Delivery> {
        let lease = match &self.lease {
            Some(lease) if !for_claims && self.leased.len() < lease.max => lease,
            _ => {
                self.pending = true;
                return None;
            }
        };
        let delivery = Delivery::leased_at_creation(DeliveryId::generate(), event, subscription, lease, now);
        if !self.subscriptions.iter().any(|known| known.id == subscription.id) {
            self.subscriptions.push(subscription.clone());
        }
        self.leased.push(delivery);
        self.leased.last()
    }

    /// Whether a delivery was left pending, for the claims to take.
    pub(crate) fn left_pending(&self) -> bool {
        self.pending
    }

    pub(crate) fn answer(self, outcomes: Vec<IngestOutcome>) -> Ingested {
        Ingested {
            outcomes,
            routed: self.pending,
            leased: self.leased,
            leased_subscriptions: self.subscriptions,
        }
    }
}
