//! The fast path: deliveries an ingest on this node wrote already leased to it
//! ([`FreshLease`]), handed to its dispatcher in memory with the event and subscription the
//! ingest held, so they are run without a claim and without reading them back.
//!
//! The queue is bounded by reservation: before an ingest, [`FastLane::reserve`] takes places
//! in it, and the ingest leases at most that many deliveries; what it does not lease, and
//! every delivery of an ordered subscription, is written `pending` for the claims, as is
//! everything once the queue is full. Places come back when the dispatcher takes a delivery
//! out, or, unused, when the reservation is dropped. The table stays the source of truth: a
//! queued delivery is leased in it and its lease renewed like a running one's, so if the node
//! dies its leases expire and a claim (on any node) takes the deliveries.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use switchyard_core::delivery::Delivery;
use switchyard_core::event::{Event, IngestOutcome};
use switchyard_core::id::SubscriptionId;
use switchyard_core::store::FreshLease;
use switchyard_core::subscription::Subscription;
use switchyard_core::time::now_millis;
use tokio::sync::{Notify, Semaphore};

use crate::lease::{Running, RunningGuard};

/// The most deliveries per event a reservation guesses (see [`FastLane::reserve`]).
const MAX_FANOUT_GUESS: usize = 16;

/// A delivery leased at its ingest, with what the ingest knew of it.
pub(crate) struct Handoff {
    pub delivery: Delivery,
    pub event: Arc<Event>,
    pub subscription: Option<Arc<Subscription>>,
    /// Keeps its lease renewed while it waits and runs.
    pub running: RunningGuard,
}

/// The in-memory queue between this node's ingest and its dispatcher. Cheap to clone.
#[derive(Clone)]
pub struct FastLane(Arc<Inner>);

struct Inner {
    capacity: usize,
    /// Free, unreserved places in the queue.
    room: Semaphore,
    queue: Mutex<VecDeque<Handoff>>,
    /// Told when deliveries are queued.
    queued: Notify,
    open: AtomicBool,
    owner: String,
    lease_ms: u64,
    running: Running,
    /// Deliveries per event the next reservation expects (learned from the last ingests).
    fanout: AtomicUsize,
}

/// Places taken in the queue for one ingest; those it does not fill go back when dropped.
pub struct Reservation {
    lane: FastLane,
    places: usize,
}

impl FastLane {
    /// A queue of `capacity` places (0: no fast path) for deliveries leased to `owner` for
    /// `lease_ms`, whose leases `running` renews.
    pub(crate) fn new(capacity: usize, owner: String, lease_ms: u64, running: Running) -> Self {
        Self(Arc::new(Inner {
            capacity,
            room: Semaphore::new(capacity.min(Semaphore::MAX_PERMITS)),
            queue: Mutex::new(VecDeque::new()),
            queued: Notify::new(),
            open: AtomicBool::new(capacity > 0),
            owner,
            lease_ms,
            running,
            fanout: AtomicUsize::new(1),
        }))
    }

    /// Places for the deliveries of an ingest of `events` events: as many as the last ingests
    /// made per event (at most [`MAX_FANOUT_GUESS`]), or what is left. `None` when the queue
    /// is full, disabled or closed: the ingest then leases nothing.
    pub fn reserve(&self, events: usize) -> Option<Reservation> {
        if !self.0.open.load(Ordering::Acquire) {
            return None;
        }
        let wanted = events.saturating_mul(self.0.fanout.load(Ordering::Relaxed));
        let places = wanted.min(self.0.room.available_permits());
        if places == 0 {
            return None;
        }
        let permits = self.0.room.try_acquire_many(u32::try_from(places).ok()?).ok()?;
        // The places travel with the reservation, then with each queued delivery.
        permits.forget();
        Some(Reservation { lane: self.clone(), places })
    }

    /// Takes up to `limit` queued deliveries, oldest first, freeing their places.
    pub(crate) fn take(&self, limit: usize) -> Vec<Handoff> {
        let taken: Vec<Handoff> = {
            let mut queue = self.queue();
            let count = limit.min(queue.len());
            queue.drain(..count).collect()
        };
        self.0.room.add_permits(taken.len());
        taken
    }

    /// Whether deliveries are queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.queue().is_empty()
    }

    /// Completes when deliveries may have been queued since the last call.
    pub(crate) async fn queued(&self) {
        self.0.queued.notified().await
    }

    /// Refuses further reservations, and waits (at most `patience`) for those taken to be
    /// filled or dropped; drops whatever is queued then. Their leases stay in the table for
    /// the node's hand-back (`release_leases`) or, failing that, their expiry.
    pub(crate) async fn close(&self, patience: Duration) {
        self.0.open.store(false, Ordering::Release);
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            drop(self.take(usize::MAX));
            if self.0.room.available_permits() >= self.0.capacity.min(Semaphore::MAX_PERMITS) {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(
                    "ingests still held places in the fast queue at shutdown; their leases expire"
                );
                return;
            }
            tokio::select! {
                _ = self.queued() => {}
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<Handoff>> {
        // Pushes and drains are single calls: a panicking holder leaves the queue whole.
        self.0.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Learns how many deliveries an ingest made per event: doubles the guess when a
    /// reservation was filled while more were left for the claims, else takes what was used.
    fn learn(&self, events: usize, places: usize, leased: usize, left_pending: bool) {
        let current = self.0.fanout.load(Ordering::Relaxed);
        let next = if leased == places && left_pending {
            current.saturating_mul(2)
        } else if leased < places && events > 0 {
            leased.div_ceil(events)
        } else {
            current
        };
        self.0.fanout.store(next.clamp(1, MAX_FANOUT_GUESS), Ordering::Relaxed);
    }
}

impl Reservation {
    /// The lease the ingest writes its deliveries under, from now.
    pub fn lease(&self) -> FreshLease {
        FreshLease {
            owner: self.lane.0.owner.clone(),
            lease_until: now_millis() + self.lane.0.lease_ms as i64,
            max: self.places,
        }
    }

    /// Queues what the ingest of `events` events leased under this reservation, with the
    /// events it created (`outcomes`) and the subscriptions it routed by; the rest of the
    /// places go back. `left_pending`: whether the ingest also wrote pending deliveries.
    pub fn hand_over(
        mut self,
        events: usize,
        leased: Vec<Delivery>,
        subscriptions: Vec<Subscription>,
        outcomes: &[IngestOutcome],
        left_pending: bool,
    ) {
        let lane = self.lane.clone();
        lane.learn(events, self.places, leased.len(), left_pending);
        if leased.is_empty() {
            return;
        }
        let subscriptions: Vec<(SubscriptionId, Arc<Subscription>)> =
            subscriptions.into_iter().map(|s| (s.id.clone(), Arc::new(s))).collect();
        let mut stored: Vec<Arc<Event>> = Vec::new();
        let handoffs: Vec<Handoff> = leased
            .into_iter()
            .filter_map(|delivery| {
                let event = match stored.iter().find(|e| e.event_id == delivery.event_id) {
                    Some(event) => Arc::clone(event),
                    None => {
                        let event = outcomes.iter().find_map(|outcome| match outcome {
                            IngestOutcome::Created(event) if event.event_id == delivery.event_id => {
                                Some(Arc::new(event.clone()))
                            }
                            _ => None,
                        })?;
                        stored.push(Arc::clone(&event));
                        event
                    }
                };
                let subscription = subscriptions
                    .iter()
                    .find(|(id, _)| *id == delivery.subscription_id)
                    .map(|(_, s)| Arc::clone(s));
                let running = lane.0.running.track(delivery.id.clone());
                Some(Handoff { delivery, event, subscription, running })
            })
            .collect();
        // A delivery without its event (which cannot be) is not queued; its lease expires and
        // a claim takes it.
        self.places -= handoffs.len().min(self.places);
        let count = handoffs.len();
        if lane.0.open.load(Ordering::Acquire) {
            lane.queue().extend(handoffs);
        } else {
            // Shutting down: the dispatcher takes nothing more; the places go back with the
            // handoffs dropped here, and `close` waits for them before the leases are handed
            // back.
            drop(handoffs);
            self.places += count;
        }
        lane.0.queued.notify_one();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.lane.0.room.add_permits(self.places);
        if self.places > 0 {
            // `close` may be waiting for these places.
            self.lane.0.queued.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use switchyard_core::event::{EventInput, EventSource, IngestContext, NewEvent};
    use switchyard_core::id::{DeliveryId, DestinationId};
    use switchyard_core::pattern::EventTypePattern;

    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn lane(capacity: usize) -> (FastLane, Running) {
        let running = Running::default();
        (FastLane::new(capacity, "node-a".into(), 60_000, running.clone()), running)
    }

    fn new_event(id: &str) -> NewEvent {
        let input: EventInput =
            switchyard_core::json::from_value(json!({"event_id": id, "event_type": "a.b", "payload": {}}))
                .expect("an event");
        let ctx = IngestContext {
            source: EventSource::api(),
            correlation_id: None,
            traceparent: None,
            request_id: None,
            principal: None,
            headers: None,
            received_at: NOW,
            max_payload_bytes: 1_024,
        };
        input.into_new_event(&ctx).expect("a valid event")
    }

    fn subscription() -> Subscription {
        Subscription {
            id: SubscriptionId::generate(),
            name: "s".into(),
            destination_id: DestinationId::generate(),
            event_types: vec![EventTypePattern::parse("#").expect("a pattern")],
            filter: None,
            transform: None,
            ordering: Default::default(),
            ordering_on_dead: Default::default(),
            enabled: true,
            version: 1,
            created_at: NOW,
            updated_at: NOW,
        }
    }

    /// What an ingest of `ids` leased under `reservation`, with its outcomes.
    fn ingested(
        reservation: &Reservation,
        ids: &[&str],
        per_event: usize,
    ) -> (Vec<Delivery>, Vec<Subscription>, Vec<IngestOutcome>) {
        let lease = reservation.lease();
        let subscriptions: Vec<Subscription> = (0..per_event).map(|_| subscription()).collect();
        let mut leased = Vec::new();
        let mut outcomes = Vec::new();
        for (seq, id) in ids.iter().enumerate() {
            let event = new_event(id);
            for s in &subscriptions {
                if leased.len() < lease.max {
                    leased.push(Delivery::leased_at_creation(DeliveryId::generate(), &event, s, &lease, NOW));
                }
            }
            outcomes.push(IngestOutcome::Created(event.stored(seq as i64 + 1, NOW)));
        }
        (leased, subscriptions, outcomes)
    }

    #[test]
    fn reservations_take_places_and_give_back_what_they_do_not_fill() {
        let (lane, running) = lane(10);
        let first = lane.reserve(4).expect("room");
        assert_eq!(first.places, 4, "one delivery per event until told otherwise");
        assert_eq!(first.lease().max, 4);
        assert_eq!(first.lease().owner, "node-a");
        let second = lane.reserve(100).expect("what is left");
        assert_eq!(second.places, 6);
        assert!(lane.reserve(1).is_none(), "the queue is full");
        drop(second);
        assert_eq!(lane.reserve(100).map(|r| r.places), Some(6), "unused places came back");

        // Three of the four places filled: the fourth comes back, the three wait in the queue.
        let (leased, subscriptions, outcomes) = ingested(&first, &["e1", "e2", "e3"], 1);
        first.hand_over(3, leased.clone(), subscriptions, &outcomes, false);
        assert_eq!(lane.0.room.available_permits(), 7);
        assert_eq!(running.snapshot().len(), 3, "queued deliveries have their leases renewed");
        let taken = lane.take(2);
        assert_eq!(taken.iter().map(|h| h.delivery.clone()).collect::<Vec<_>>(), leased[..2]);
        assert_eq!(taken[0].event.event_id.as_str(), "e1", "each with its event as stored");
        assert_eq!(taken[0].event.seq, 1);
        assert!(taken.iter().all(|h| h.subscription.is_some()));
        assert_eq!(lane.0.room.available_permits(), 9, "taking frees the places");
        drop(taken);
        assert_eq!(running.snapshot().len(), 1, "the one still queued");
    }

    #[test]
    fn a_filled_reservation_that_left_deliveries_pending_doubles_the_guess() {
        let (lane, _) = lane(1_000);
        let reservation = lane.reserve(2).expect("room");
        let (leased, subscriptions, outcomes) = ingested(&reservation, &["e1", "e2"], 3);
        assert_eq!(leased.len(), 2);
        reservation.hand_over(2, leased, subscriptions, &outcomes, true);
        assert_eq!(lane.reserve(2).map(|r| r.places), Some(4));
        // A reservation used in part sets the guess to what was used per event.
        let reservation = lane.reserve(2).expect("room");
        reservation.hand_over(2, Vec::new(), Vec::new(), &[], false);
        assert_eq!(lane.reserve(2).map(|r| r.places), Some(2));
    }

    #[tokio::test]
    async fn a_closed_lane_reserves_nothing_and_drops_what_it_held() {
        let (lane, running) = lane(10);
        let reservation = lane.reserve(2).expect("room");
        let (leased, subscriptions, outcomes) = ingested(&reservation, &["e1", "e2"], 1);
        reservation.hand_over(2, leased, subscriptions, &outcomes, false);
        let late = lane.reserve(1).expect("room");
        let closing = {
            let lane = lane.clone();
            tokio::spawn(async move { lane.close(Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        assert!(lane.reserve(1).is_none(), "closed");
        // An ingest that reserved before the close hands over after it: nothing is queued.
        let (leased, subscriptions, outcomes) = ingested(&late, &["e3"], 1);
        late.hand_over(1, leased, subscriptions, &outcomes, false);
        closing.await.expect("close returns once every place is back");
        assert!(lane.is_empty());
        assert!(running.snapshot().is_empty(), "the leases are left to the node's hand-back");
        assert_eq!(lane.0.room.available_permits(), 10);
    }

    #[test]
    fn a_lane_of_no_places_is_off() {
        let (lane, _) = lane(0);
        assert!(lane.reserve(1).is_none());
    }
}
