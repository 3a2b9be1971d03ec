//! The outbox side of the store: claims under leases, attempts, dead letters and retention.
//! Time is passed explicitly everywhere, so nothing here sleeps.

use std::collections::BTreeSet;
use std::slice;
use std::sync::Arc;

use switchyard_core::delivery::{
    Attempt, AttemptOutcome, Delivery, DeliveryFilter, DeliveryStatus, NextStep,
};
use switchyard_core::destination::Destination;
use switchyard_core::event::{EventId, EventType};
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::page::{Cursor, ListRequest};
use switchyard_core::store::{Store, StoreError};
use switchyard_core::subscription::Subscription;
use switchyard_core::time::Millis;

use crate::support::{T0, TestDb, destination, event, subscription};

const LEASE: Millis = 60_000;

/// A destination (enabled unless `paused`) with one subscription taking every event type.
pub async fn route(store: &dyn Store, name: &str, paused: bool) -> (Destination, Subscription) {
    let mut dst = destination(name);
    dst.enabled = !paused;
    store.create_destination(&dst).await.unwrap();
    let sub = subscription(&dst.id, &["#"]);
    store.create_subscription(&sub).await.unwrap();
    (dst, sub)
}

/// Ingests one event per id at `now` and answers all their deliveries, in ingest order.
pub async fn ingest(store: &dyn Store, ids: &[&str], event_type: &str, now: Millis) -> Vec<Delivery> {
    let events = ids.iter().map(|id| event(id, event_type)).collect();
    store.ingest(events, now).await.unwrap();
    let mut deliveries = Vec::new();
    for id in ids {
        let id = EventId::parse(id).unwrap();
        deliveries.extend(store.deliveries_of_event(&id).await.unwrap());
    }
    deliveries
}

pub fn attempt(delivery: &DeliveryId, outcome: AttemptOutcome, started_at: Millis) -> Attempt {
    let code = match outcome {
        AttemptOutcome::Succeeded => Some(200),
        AttemptOutcome::Retryable => Some(503),
        AttemptOutcome::Permanent => Some(400),
        AttemptOutcome::Filtered => None,
    };
    Attempt {
        delivery_id: delivery.clone(),
        // The store numbers attempts; what the caller sends is ignored.
        number: 99,
        started_at,
        duration_ms: 12,
        outcome,
        status_code: code,
        error: code.filter(|_| outcome != AttemptOutcome::Succeeded).map(|code| format!("HTTP {code}")),
        response_body: code.map(|code| format!("body {code}")),
    }
}

/// The outcome of an attempt that moves a delivery to `next`.
pub fn outcome_of(next: NextStep) -> AttemptOutcome {
    match next {
        NextStep::Succeeded => AttemptOutcome::Succeeded,
        NextStep::RetryAt(_) => AttemptOutcome::Retryable,
        NextStep::Dead => AttemptOutcome::Permanent,
        NextStep::Filtered => AttemptOutcome::Filtered,
    }
}

fn ids(deliveries: &[Delivery]) -> Vec<DeliveryId> {
    deliveries.iter().map(|d| d.id.clone()).collect()
}

pub async fn get(store: &dyn Store, id: &DeliveryId) -> Delivery {
    store.get_delivery(id).await.unwrap().expect("the delivery")
}

/// Claims everything due at `now` for `owner` and records `next` for each.
async fn settle_all(store: &dyn Store, owner: &str, now: Millis, next: NextStep) -> usize {
    let claimed = store.claim_deliveries(owner, now, now + LEASE, 1_000).await.unwrap();
    let outcome = outcome_of(next);
    for d in &claimed {
        let recorded = store.record_attempt(owner, &attempt(&d.id, outcome, now), next, now).await.unwrap();
        assert!(recorded);
    }
    claimed.len()
}

pub async fn claims_lease_only_due_deliveries_up_to_the_limit(db: TestDb) {
    let store = db.store.as_ref();
    route(store, "d", false).await;
    let mut keyed = event("k1", "a.b");
    keyed.ordering_key = Some("customer-7".into());
    store.ingest(vec![keyed], T0).await.unwrap();
    let first = store.deliveries_of_event(&EventId::parse("k1").unwrap()).await.unwrap();
    let second = ingest(store, &["e2"], "a.b", T0 + 10).await;
    let later = ingest(store, &["e3"], "a.b", T0 + 20).await;

    let now = T0 + 10;
    let claimed = store.claim_deliveries("node-a", now, now + LEASE, 10).await.unwrap();
    assert_eq!(ids(&claimed), [first[0].id.clone(), second[0].id.clone()], "due ones, earliest first");
    for d in &claimed {
        assert_eq!(d.status, DeliveryStatus::InFlight);
        assert_eq!(d.lease_owner.as_deref(), Some("node-a"));
        assert_eq!(d.lease_expires_at, Some(now + LEASE));
        assert_eq!(d.updated_at, now);
        assert_eq!(d.attempt_count, 0);
        assert_eq!(&get(store, &d.id).await, d, "answered as stored");
    }
    assert_eq!(claimed[0].ordering_key.as_deref(), Some("customer-7"));
    assert_eq!(claimed[1].ordering_key, None);
    assert_eq!(get(store, &later[0].id).await.status, DeliveryStatus::Pending);

    // Live leases are not claimed again, by anyone.
    let again = store.claim_deliveries("node-b", now + 5, now + 5 + LEASE, 10).await.unwrap();
    assert!(again.is_empty(), "{again:?}");

    // The limit holds, and the earliest due goes first.
    ingest(store, &["e4", "e5", "e6"], "a.b", T0 + 30).await;
    let one = store.claim_deliveries("node-b", T0 + 30, T0 + 30 + LEASE, 1).await.unwrap();
    assert_eq!(ids(&one), ids(&later));
    let two = store.claim_deliveries("node-b", T0 + 30, T0 + 30 + LEASE, 2).await.unwrap();
    assert_eq!(two.len(), 2);
    assert!(store.claim_deliveries("node-b", T0 + 30, T0 + 30 + LEASE, 0).await.unwrap().is_empty());
    let rest = store.claim_deliveries("node-b", T0 + 30, T0 + 30 + LEASE, 5).await.unwrap();
    assert_eq!(rest.len(), 1, "six deliveries in all");
}

pub async fn claims_skip_paused_and_missing_destinations(db: TestDb) {
    let store = db.store.as_ref();
    let (live, _) = route(store, "live", false).await;
    let (paused, _) = route(store, "paused", true).await;
    let deliveries = ingest(store, &["e1"], "a.b", T0).await;
    assert_eq!(deliveries.len(), 2);

    let claimed = store.claim_deliveries("n", T0, T0 + LEASE, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|d| &d.destination_id).collect::<Vec<_>>(), [&live.id]);

    // Resuming the destination makes its backlog claimable.
    let mut resumed = paused.clone();
    resumed.enabled = true;
    store.update_destination(&resumed, 1).await.unwrap();
    let claimed = store.claim_deliveries("n", T0 + 1, T0 + 1 + LEASE, 10).await.unwrap();
    assert_eq!(claimed.iter().map(|d| &d.destination_id).collect::<Vec<_>>(), [&paused.id]);

    // A delivery whose destination is gone is never claimed.
    let (doomed, doomed_sub) = route(store, "doomed", false).await;
    let orphaned = ingest(store, &["e2"], "x.y", T0 + 2).await;
    store.delete_subscription(&doomed_sub.id).await.unwrap();
    store.delete_destination(&doomed.id).await.unwrap();
    let claimed = store.claim_deliveries("n", T0 + 2, T0 + 2 + LEASE, 10).await.unwrap();
    let orphan = orphaned.iter().find(|d| d.destination_id == doomed.id).expect("routed before the deletion");
    assert!(!ids(&claimed).contains(&orphan.id), "{claimed:?}");
    assert_eq!(claimed.len(), 2, "the other two destinations still claim");
    assert_eq!(get(store, &orphan.id).await.status, DeliveryStatus::Pending);
}

pub async fn expired_leases_are_reclaimed_and_live_ones_are_not(db: TestDb) {
    let store = db.store.as_ref();
    route(store, "d", false).await;
    let delivery = ingest(store, &["e1"], "a.b", T0).await.remove(0);

    let first = store.claim_deliveries("a", T0, T0 + 100, 10).await.unwrap();
    assert_eq!(ids(&first), slice::from_ref(&delivery.id));
    assert!(
        store.claim_deliveries("b", T0 + 99, T0 + 1_000, 10).await.unwrap().is_empty(),
        "the lease is live until it expires"
    );
    let reclaimed = store.claim_deliveries("b", T0 + 100, T0 + 1_000, 10).await.unwrap();
    assert_eq!(ids(&reclaimed), slice::from_ref(&delivery.id));
    assert_eq!(reclaimed[0].lease_owner.as_deref(), Some("b"));
    assert_eq!(reclaimed[0].lease_expires_at, Some(T0 + 1_000));

    // The worker that lost its lease cannot overwrite the new owner's work.
    let late = attempt(&delivery.id, AttemptOutcome::Succeeded, T0 + 50);
    assert!(!store.record_attempt("a", &late, NextStep::Succeeded, T0 + 150).await.unwrap());
    assert!(store.attempts_of(&delivery.id).await.unwrap().is_empty());
    assert_eq!(get(store, &delivery.id).await, reclaimed[0]);

    let current = attempt(&delivery.id, AttemptOutcome::Succeeded, T0 + 120);
    assert!(store.record_attempt("b", &current, NextStep::Succeeded, T0 + 160).await.unwrap());
    assert_eq!(store.attempts_of(&delivery.id).await.unwrap().len(), 1);
}

/// A destination that is paused with `n` deliveries due since `at`, which its only
/// subscription (`held.#`) routes no other event to.
async fn held_backlog(store: &dyn Store, n: usize, at: Millis) -> Destination {
    let mut paused = destination("paused");
    paused.enabled = false;
    store.create_destination(&paused).await.unwrap();
    store.create_subscription(&subscription(&paused.id, &["held.#"])).await.unwrap();
    let events = (0..n).map(|i| event(&format!("held-{i}"), "held.x")).collect();
    store.ingest(events, at).await.unwrap();
    paused
}

pub async fn claims_go_around_a_held_backlog_in_due_order(db: TestDb) {
    let store = db.store.as_ref();
    let paused = held_backlog(store, 50, T0).await;
    let (a, _) = route(store, "a", false).await;
    let (b, _) = route(store, "b", false).await;
    // Each event goes to both a and b, at times that interleave them once b's copies retry.
    let first = ingest(store, &["e1", "e2", "e3"], "a.b", T0 + 10).await;
    let of = |dst: &Destination| -> Vec<DeliveryId> {
        first.iter().filter(|d| d.destination_id == dst.id).map(|d| d.id.clone()).collect()
    };
    let (on_a, on_b) = (of(&a), of(&b));
    let taken = store.claim_deliveries("n", T0 + 10, T0 + LEASE, 10).await.unwrap();
    assert_eq!(taken.len(), 6, "the paused backlog is passed over");
    // b's retries fall due at +20, +22, +24; a's at +21, +23, +25.
    for (first_retry, ids) in [(T0 + 20, &on_b), (T0 + 21, &on_a)] {
        for (i, id) in ids.iter().enumerate() {
            let retry = NextStep::RetryAt(first_retry + 2 * i as Millis);
            let failed = attempt(id, AttemptOutcome::Retryable, T0 + 11);
            store.record_attempt("n", &failed, retry, T0 + 11).await.unwrap();
        }
    }
    assert_eq!(store.next_due_at(T0 + 15).await.unwrap(), Some(T0 + 20), "the paused rows do not count");

    // Due order across the destinations that may send, cut at the limit: b1 a1 b2 a2 b3 a3.
    let interleaved = [&on_b[0], &on_a[0], &on_b[1], &on_a[1], &on_b[2], &on_a[2]];
    let three = store.claim_deliveries("n", T0 + 30, T0 + LEASE, 3).await.unwrap();
    assert_eq!(ids(&three), interleaved[..3].iter().map(|id| (*id).clone()).collect::<Vec<_>>());
    let rest = store.claim_deliveries("n", T0 + 30, T0 + LEASE, 10).await.unwrap();
    assert_eq!(ids(&rest), interleaved[3..].iter().map(|id| (*id).clone()).collect::<Vec<_>>());
    assert!(store.claim_deliveries("n", T0 + 30, T0 + LEASE, 10).await.unwrap().is_empty());

    // Resumed, its backlog goes in the order it came.
    let mut resumed = paused.clone();
    resumed.enabled = true;
    store.update_destination(&resumed, 1).await.unwrap();
    assert_eq!(store.next_due_at(T0 + 40).await.unwrap(), Some(T0));
    let backlog = store.claim_deliveries("n", T0 + 40, T0 + LEASE, 100).await.unwrap();
    assert_eq!(backlog.len(), 50);
    assert!(backlog.iter().all(|d| d.destination_id == paused.id));
    let events: Vec<String> = backlog.iter().map(|d| d.event_id.as_str().to_owned()).collect();
    assert_eq!(events, (0..50).map(|i| format!("held-{i}")).collect::<Vec<_>>());
}

/// Destinations whose heads fall due at the same instant go in ingest order, whichever
/// destination was made first.
pub async fn claims_around_a_held_backlog_break_ties_by_ingest_order(db: TestDb) {
    let store = db.store.as_ref();
    held_backlog(store, 5, T0).await;
    let mut made = Vec::new();
    for (name, pattern) in [("first-made", "t.x"), ("second-made", "t.y")] {
        let dst = destination(name);
        store.create_destination(&dst).await.unwrap();
        store.create_subscription(&subscription(&dst.id, &[pattern])).await.unwrap();
        made.push(dst);
    }
    let earlier = ingest(store, &["y1"], "t.y", T0 + 10).await;
    ingest(store, &["x1"], "t.x", T0 + 10).await;
    let one = store.claim_deliveries("n", T0 + 10, T0 + LEASE, 1).await.unwrap();
    assert_eq!(ids(&one), ids(&earlier), "the earlier ingest, on the destination made second");
    let other = store.claim_deliveries("n", T0 + 10, T0 + LEASE, 1).await.unwrap();
    assert_eq!(other[0].destination_id, made[0].id);
}

pub async fn concurrent_claimers_never_share_a_delivery(db: TestDb) {
    claimers_race(db, false).await;
}

/// The race while a paused destination has due deliveries, so the claims go around it.
pub async fn concurrent_claimers_around_a_held_backlog_never_share_a_delivery(db: TestDb) {
    claimers_race(db, true).await;
}

async fn claimers_race(db: TestDb, held: bool) {
    if held {
        held_backlog(db.store.as_ref(), 20, T0 - 1).await;
    }
    // Three subscriptions × 100 events, on one destination or (when held) three.
    let (dst, _) = route(db.store.as_ref(), "d", false).await;
    for i in 0..2 {
        if held {
            route(db.store.as_ref(), &format!("d{i}"), false).await;
        } else {
            db.store.create_subscription(&subscription(&dst.id, &["#"])).await.unwrap();
        }
    }
    let names: Vec<String> = (0..100).map(|i| format!("e{i:03}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let all: BTreeSet<DeliveryId> =
        ingest(db.store.as_ref(), &names, "a.b", T0).await.into_iter().map(|d| d.id).collect();
    assert_eq!(all.len(), 300);

    let mut tasks = Vec::new();
    for owner in ["node-a", "node-b"] {
        let store: Arc<dyn Store> = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut rounds = 0;
            loop {
                let now = T0 + rounds;
                let claimed = store.claim_deliveries(owner, now, now + LEASE, 7).await?;
                if claimed.is_empty() {
                    return Ok::<_, StoreError>((mine, rounds));
                }
                for d in claimed {
                    assert_eq!(d.lease_owner.as_deref(), Some(owner));
                    let done = attempt(&d.id, AttemptOutcome::Succeeded, now);
                    let recorded = store.record_attempt(owner, &done, NextStep::Succeeded, now).await?;
                    assert!(recorded, "{owner} lost the lease of {}", d.id);
                    mine.push(d.id);
                }
                rounds += 1;
                tokio::task::yield_now().await;
            }
        }));
    }
    let mut seen = BTreeSet::new();
    let mut total_rounds = 0;
    for task in tasks {
        let (mine, rounds) = task.await.unwrap().unwrap();
        assert!(!mine.is_empty(), "both claimers took part");
        total_rounds += rounds;
        for id in mine {
            assert!(seen.insert(id.clone()), "{id} was claimed twice");
        }
    }
    assert_eq!(seen, all, "every delivery was claimed exactly once");
    assert!(total_rounds >= 300 / 7, "{total_rounds} rounds");
    for id in &all {
        let attempts = store_attempts(db.store.as_ref(), id).await;
        assert_eq!(attempts, [1], "{id}");
    }
}

async fn store_attempts(store: &dyn Store, id: &DeliveryId) -> Vec<u32> {
    store.attempts_of(id).await.unwrap().iter().map(|a| a.number).collect()
}

pub async fn attempts_move_the_delivery_and_are_numbered_across_retries(db: TestDb) {
    let store = db.store.as_ref();
    route(store, "d", false).await;
    let id = ingest(store, &["e1"], "a.b", T0).await.remove(0).id;

    // A retryable failure: pending again at the time given, the error kept.
    store.claim_deliveries("n", T0, T0 + LEASE, 1).await.unwrap();
    let failed = attempt(&id, AttemptOutcome::Retryable, T0 + 1);
    assert!(store.record_attempt("n", &failed, NextStep::RetryAt(T0 + 1_000), T0 + 20).await.unwrap());
    let d = get(store, &id).await;
    assert_eq!(d.status, DeliveryStatus::Pending);
    assert_eq!(d.next_attempt_at, Some(T0 + 1_000));
    assert_eq!(d.attempt_count, 1);
    assert_eq!(d.last_error.as_deref(), Some("HTTP 503"));
    assert_eq!((d.lease_owner, d.lease_expires_at), (None, None));
    assert_eq!(d.updated_at, T0 + 20);
    assert!(
        store.claim_deliveries("n", T0 + 999, T0 + LEASE, 1).await.unwrap().is_empty(),
        "not due before its retry time"
    );

    // A permanent failure: dead.
    let claimed = store.claim_deliveries("n", T0 + 1_000, T0 + 2_000, 1).await.unwrap();
    assert_eq!(ids(&claimed), slice::from_ref(&id));
    let permanent = attempt(&id, AttemptOutcome::Permanent, T0 + 1_001);
    assert!(store.record_attempt("n", &permanent, NextStep::Dead, T0 + 1_010).await.unwrap());
    let d = get(store, &id).await;
    assert_eq!((d.status, d.next_attempt_at, d.attempt_count), (DeliveryStatus::Dead, None, 2));
    assert_eq!(d.last_error.as_deref(), Some("HTTP 400"));

    // Retried by hand, then a success: numbering continues, the budget starts again.
    let retried = store.retry_delivery(&id, T0 + 5_000).await.unwrap().expect("the delivery");
    assert_eq!(
        (retried.status, retried.next_attempt_at, retried.attempt_count),
        (DeliveryStatus::Pending, Some(T0 + 5_000), 0)
    );
    assert_eq!(retried.last_error.as_deref(), Some("HTTP 400"), "kept");
    store.claim_deliveries("n", T0 + 5_000, T0 + 6_000, 1).await.unwrap();
    let succeeded = attempt(&id, AttemptOutcome::Succeeded, T0 + 5_001);
    assert!(store.record_attempt("n", &succeeded, NextStep::Succeeded, T0 + 5_050).await.unwrap());
    let d = get(store, &id).await;
    assert_eq!((d.status, d.next_attempt_at, d.attempt_count), (DeliveryStatus::Succeeded, None, 1));
    assert_eq!(d.last_error, None);
    assert_eq!((d.lease_owner, d.lease_expires_at), (None, None));

    let attempts = store.attempts_of(&id).await.unwrap();
    let expected: Vec<Attempt> = [failed, permanent, succeeded]
        .into_iter()
        .zip(1..)
        .map(|(a, number)| Attempt { number, ..a })
        .collect();
    assert_eq!(attempts, expected);
}

pub async fn record_attempt_needs_the_lease(db: TestDb) {
    let store = db.store.as_ref();
    route(store, "d", false).await;
    let deliveries = ingest(store, &["e1", "e2"], "a.b", T0).await;
    let claimed = store.claim_deliveries("owner", T0, T0 + LEASE, 1).await.unwrap();
    assert_eq!(ids(&claimed), [deliveries[0].id.clone()]);
    let leased_now = get(store, &deliveries[0].id).await;
    let unclaimed = get(store, &deliveries[1].id).await;
    assert_eq!(unclaimed.status, DeliveryStatus::Pending);

    for (owner, target) in [("intruder", &leased_now), ("owner", &unclaimed)] {
        let before = get(store, &target.id).await;
        let a = attempt(&target.id, AttemptOutcome::Succeeded, T0 + 1);
        assert!(
            !store.record_attempt(owner, &a, NextStep::Succeeded, T0 + 2).await.unwrap(),
            "{owner} holds no lease on {}",
            target.id
        );
        assert!(store.attempts_of(&target.id).await.unwrap().is_empty());
        assert_eq!(get(store, &target.id).await, before, "nothing written");
    }

    let a = attempt(&leased_now.id, AttemptOutcome::Succeeded, T0 + 1);
    assert!(store.record_attempt("owner", &a, NextStep::Succeeded, T0 + 2).await.unwrap());
    assert!(
        !store.record_attempt("owner", &a, NextStep::Succeeded, T0 + 3).await.unwrap(),
        "a settled delivery holds no lease any more"
    );
    assert_eq!(store_attempts(store, &leased_now.id).await, [1]);
}

pub async fn release_leases_hands_back_only_the_owners(db: TestDb) {
    let store = db.store.as_ref();
    route(store, "d", false).await;
    ingest(store, &["e1", "e2", "e3"], "a.b", T0).await;
    let mine = store.claim_deliveries("a", T0, T0 + LEASE, 2).await.unwrap();
    let theirs = store.claim_deliveries("b", T0, T0 + LEASE, 2).await.unwrap();
    assert_eq!((mine.len(), theirs.len()), (2, 1));

    assert_eq!(store.release_leases("a", T0 + 7).await.unwrap(), 2);
    for d in &mine {
        let d = get(store, &d.id).await;
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.next_attempt_at, Some(T0 + 7));
        assert_eq!((d.lease_owner, d.lease_expires_at), (None, None));
        assert_eq!((d.attempt_count, d.updated_at), (0, T0 + 7));
    }
    assert_eq!(get(store, &theirs[0].id).await, theirs[0], "untouched");
    assert_eq!(store.release_leases("a", T0 + 8).await.unwrap(), 0);

    let again = store.claim_deliveries("c", T0 + 7, T0 + LEASE, 10).await.unwrap();
    assert_eq!(
        ids(&again).into_iter().collect::<BTreeSet<_>>(),
        ids(&mine).into_iter().collect::<BTreeSet<_>>(),
        "released deliveries are due at once"
    );
}

pub async fn renewed_leases_outlive_their_first_expiry_and_only_the_named_ones_move(db: TestDb) {
    let store = db.store.as_ref();
    route(store, "d", false).await;
    ingest(store, &["e1", "e2", "e3"], "a.b", T0).await;
    let mine = store.claim_deliveries("a", T0, T0 + LEASE, 2).await.unwrap();
    let theirs = store.claim_deliveries("b", T0, T0 + LEASE, 1).await.unwrap();
    assert_eq!((mine.len(), theirs.len()), (2, 1));
    let (running, given_up) = (&mine[0], &mine[1]);

    // `a` renews what it still runs, and names `b`'s delivery too: only its own moves.
    let renewed_until = T0 + 3 * LEASE;
    let named = [running.id.clone(), theirs[0].id.clone()];
    assert_eq!(store.renew_leases("a", &named, renewed_until).await.unwrap(), 1);
    let renewed = get(store, &running.id).await;
    assert_eq!(renewed.status, DeliveryStatus::InFlight);
    assert_eq!(renewed.lease_owner.as_deref(), Some("a"));
    assert_eq!(renewed.lease_expires_at, Some(renewed_until));
    assert_eq!(get(store, &theirs[0].id).await, theirs[0], "untouched");
    assert_eq!(get(store, &given_up.id).await, *given_up, "not named, not renewed");
    assert_eq!(store.renew_leases("a", &[], renewed_until).await.unwrap(), 0);

    // Past the first lease, what was not renewed can be taken over; the renewed one cannot.
    let taken = store.claim_deliveries("c", T0 + LEASE + 1, T0 + 4 * LEASE, 10).await.unwrap();
    let taken: BTreeSet<_> = ids(&taken).into_iter().collect();
    assert_eq!(taken, BTreeSet::from([given_up.id.clone(), theirs[0].id.clone()]));
    assert_eq!(
        store.renew_leases("b", &[theirs[0].id.clone()], T0 + 5 * LEASE).await.unwrap(),
        0,
        "b lost its lease"
    );
}

pub async fn next_due_at_names_the_earliest_claimable_time(db: TestDb) {
    let store = db.store.as_ref();
    assert_eq!(store.next_due_at(T0).await.unwrap(), None, "an empty outbox");
    let (live, _) = route(store, "live", false).await;
    let (paused, _) = route(store, "paused", true).await;
    let deliveries = ingest(store, &["e1"], "a.b", T0 + 50).await;
    let early_paused = deliveries.iter().find(|d| d.destination_id == paused.id).unwrap();
    assert_eq!(early_paused.next_attempt_at, Some(T0 + 50));
    // A second route to the live destination, for a later event.
    let mut only_live = subscription(&live.id, &["only.live"]);
    only_live.name = "only live".into();
    store.create_subscription(&only_live).await.unwrap();
    assert_eq!(store.next_due_at(T0 + 50).await.unwrap(), Some(T0 + 50));

    let claimed = store.claim_deliveries("n", T0 + 60, T0 + 500, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        store.next_due_at(T0 + 60).await.unwrap(),
        Some(T0 + 500),
        "the lease's expiry; the paused destination's row does not count"
    );

    ingest(store, &["e2"], "only.live", T0 + 900).await;
    assert_eq!(store.next_due_at(T0 + 900).await.unwrap(), Some(T0 + 500));
    let failed = attempt(&claimed[0].id, AttemptOutcome::Retryable, T0 + 61);
    store.record_attempt("n", &failed, NextStep::RetryAt(T0 + 300), T0 + 70).await.unwrap();
    assert_eq!(store.next_due_at(T0 + 70).await.unwrap(), Some(T0 + 300));

    settle_all(store, "n", T0 + 1_000, NextStep::Succeeded).await;
    assert_eq!(store.next_due_at(T0 + 1_000).await.unwrap(), None, "only the paused destination has work");
}

/// Two destinations taking every event; answers the first's id and the deliveries of `o1`.
async fn listed(store: &dyn Store) -> (DestinationId, Vec<Delivery>) {
    let (a, _) = route(store, "a", false).await;
    route(store, "b", false).await;
    // Each event goes to both destinations.
    ingest(store, &["o1", "o2"], "order.created", T0).await;
    ingest(store, &["u1"], "user.created", T0 + 100).await;
    ingest(store, &["o3"], "order.created", T0 + 200).await;
    let of_o1 = store.deliveries_of_event(&EventId::parse("o1").unwrap()).await.unwrap();
    (a.id, of_o1)
}

async fn listing_ids(store: &dyn Store, filter: &DeliveryFilter) -> Vec<DeliveryId> {
    let listing = store.list_deliveries(filter, ListRequest::Page { page: 1, per_page: 100 }).await.unwrap();
    assert_eq!(listing.total, Some(listing.items.len() as u64));
    ids(&listing.items)
}

pub async fn delivery_listings_filter_and_page(db: TestDb) {
    let store = db.store.as_ref();
    let (a, by_event) = listed(store).await;
    let all = listing_ids(store, &DeliveryFilter::default()).await;
    assert_eq!(all.len(), 8, "four events × two destinations");
    let mut in_order = Vec::new();
    for event in ["o1", "o2", "u1", "o3"] {
        let id = EventId::parse(event).unwrap();
        in_order.extend(ids(&store.deliveries_of_event(&id).await.unwrap()));
    }
    assert_eq!(all, in_order, "creation order");

    // One dead, one in flight: a's first two due deliveries.
    let claimed = store.claim_deliveries("n", T0, T0 + LEASE, 2).await.unwrap();
    assert_eq!(ids(&claimed), all[..2]);
    let dead = &claimed[0];
    store
        .record_attempt("n", &attempt(&dead.id, AttemptOutcome::Permanent, T0), NextStep::Dead, T0)
        .await
        .unwrap();

    let by_status = |status| DeliveryFilter { status: Some(status), ..DeliveryFilter::default() };
    assert_eq!(listing_ids(store, &by_status(DeliveryStatus::Dead)).await, slice::from_ref(&dead.id));
    assert_eq!(listing_ids(store, &by_status(DeliveryStatus::InFlight)).await, [claimed[1].id.clone()]);
    assert_eq!(listing_ids(store, &by_status(DeliveryStatus::Pending)).await, all[2..]);
    assert!(listing_ids(store, &by_status(DeliveryStatus::Succeeded)).await.is_empty());

    let by_destination = DeliveryFilter { destination_id: Some(a.clone()), ..DeliveryFilter::default() };
    let of_a = listing_ids(store, &by_destination).await;
    assert_eq!(of_a.len(), 4);
    let subscription_of_a =
        by_event.iter().find(|d| d.destination_id == a).map(|d| d.subscription_id.clone());
    assert_eq!(
        listing_ids(
            store,
            &DeliveryFilter { subscription_id: subscription_of_a, ..DeliveryFilter::default() }
        )
        .await,
        of_a,
        "a has one subscription"
    );
    assert_eq!(
        listing_ids(
            store,
            &DeliveryFilter { event_id: Some(EventId::parse("o1").unwrap()), ..DeliveryFilter::default() }
        )
        .await,
        ids(&by_event)
    );
    let users = DeliveryFilter {
        event_type: Some(EventType::parse("user.created").unwrap()),
        ..DeliveryFilter::default()
    };
    assert_eq!(listing_ids(store, &users).await, all[4..6]);
    let window = DeliveryFilter { since: Some(T0 + 100), until: Some(T0 + 200), ..DeliveryFilter::default() };
    assert_eq!(listing_ids(store, &window).await, all[4..6], "since inclusive, until exclusive");
    let combined = DeliveryFilter {
        destination_id: Some(a),
        event_type: Some(EventType::parse("order.created").unwrap()),
        status: Some(DeliveryStatus::Pending),
        ..DeliveryFilter::default()
    };
    assert_eq!(listing_ids(store, &combined).await, [all[2].clone(), all[6].clone()]);

    // Numbered pages carry totals and a cursor; keyset pages continue from it.
    let page = store
        .list_deliveries(&DeliveryFilter::default(), ListRequest::Page { page: 2, per_page: 3 })
        .await
        .unwrap();
    assert_eq!(ids(&page.items), all[3..6]);
    assert_eq!(page.total, Some(8));
    let cursor = page.next_cursor.expect("more follow");
    let next = store
        .list_deliveries(&DeliveryFilter::default(), ListRequest::After { after: Some(cursor), per_page: 3 })
        .await
        .unwrap();
    assert_eq!(ids(&next.items), all[6..]);
    assert_eq!((next.total, next.next_cursor), (None, None));

    let mut walked = Vec::new();
    let mut after: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let page =
            store.list_deliveries(&by_destination, ListRequest::After { after, per_page: 2 }).await.unwrap();
        pages += 1;
        walked.extend(ids(&page.items));
        match page.next_cursor {
            Some(cursor) => after = Some(cursor),
            None => break,
        }
        assert!(pages < 10, "paging does not terminate");
    }
    assert_eq!(walked, of_a);
    assert_eq!(pages, 2, "an exact multiple ends without an empty page");
}

pub async fn retry_delivery_refuses_in_flight_and_succeeded(db: TestDb) {
    let store = db.store.as_ref();
    route(store, "d", false).await;
    let d = ingest(store, &["e1", "e2", "e3"], "a.b", T0).await;
    assert_eq!(store.retry_delivery(&DeliveryId::generate(), T0).await.unwrap(), None);

    // A pending one is simply made due now.
    let pending = store.retry_delivery(&d[2].id, T0 - 1_000).await.unwrap().unwrap();
    assert_eq!(pending.next_attempt_at, Some(T0 - 1_000));
    assert_eq!(pending.updated_at, T0 - 1_000);

    // Made due earliest, it is claimed first.
    let claimed = store.claim_deliveries("n", T0, T0 + LEASE, 2).await.unwrap();
    assert_eq!(ids(&claimed), [d[2].id.clone(), d[0].id.clone()]);
    let done = attempt(&d[0].id, AttemptOutcome::Succeeded, T0);
    store.record_attempt("n", &done, NextStep::Succeeded, T0).await.unwrap();

    // A dead one is revived.
    store.release_leases("n", T0).await.unwrap();
    assert_eq!(kill_all(store, T0 + 1).await, 2);
    let revived = store.retry_delivery(&d[1].id, T0 + 5).await.unwrap().unwrap();
    assert_eq!(
        (revived.status, revived.next_attempt_at, revived.attempt_count),
        (DeliveryStatus::Pending, Some(T0 + 5), 0)
    );
    store.claim_deliveries("n", T0 + 5, T0 + LEASE, 1).await.unwrap();

    for (id, words) in [(&d[1].id, "is in flight"), (&d[0].id, "has succeeded")] {
        let before = get(store, id).await;
        match store.retry_delivery(id, T0 + 10).await {
            Err(StoreError::Conflict(message)) => {
                assert!(message.contains(words), "{message}");
                assert!(message.contains(id.as_str()), "{message}");
            }
            other => panic!("expected a conflict for {id}, got {other:?}"),
        }
        assert_eq!(get(store, id).await, before, "nothing changed");
    }
}

/// Makes every due delivery dead with one attempt; answers how many.
async fn kill_all(store: &dyn Store, now: Millis) -> usize {
    settle_all(store, "reaper", now, NextStep::Dead).await
}

pub async fn replay_dead_honours_filters_and_limits(db: TestDb) {
    let store = db.store.as_ref();
    let (a, _) = route(store, "a", false).await;
    let (b, _) = route(store, "b", false).await;
    let names: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    ingest(store, &names, "a.b", T0).await;
    assert_eq!(kill_all(store, T0).await, 20);
    // One more of a's, still pending: replay leaves it alone.
    let pending = ingest(store, &["fresh"], "a.b", T0 + 1).await;

    let of_a = DeliveryFilter {
        destination_id: Some(a.id.clone()),
        // The status of the filter is ignored by dead-letter operations.
        status: Some(DeliveryStatus::Succeeded),
        ..DeliveryFilter::default()
    };
    assert_eq!(store.count_dead(&of_a).await.unwrap(), 10);
    assert_eq!(store.count_dead(&DeliveryFilter::default()).await.unwrap(), 20);
    assert_eq!(
        store.count_dead(&DeliveryFilter { until: Some(T0), ..DeliveryFilter::default() }).await.unwrap(),
        0
    );

    let mut batches = Vec::new();
    loop {
        let n = store.replay_dead(&of_a, T0 + 500, 3).await.unwrap();
        if n == 0 {
            break;
        }
        batches.push(n);
        assert!(batches.len() < 10, "replay does not terminate");
    }
    assert_eq!(batches, [3, 3, 3, 1]);
    assert_eq!(store.count_dead(&of_a).await.unwrap(), 0);
    let of_b = DeliveryFilter { destination_id: Some(b.id.clone()), ..DeliveryFilter::default() };
    assert_eq!(store.count_dead(&of_b).await.unwrap(), 10, "b's untouched");

    let replayed = store
        .list_deliveries(
            &DeliveryFilter { destination_id: Some(a.id.clone()), ..DeliveryFilter::default() },
            ListRequest::Page { page: 1, per_page: 100 },
        )
        .await
        .unwrap()
        .items;
    assert_eq!(replayed.len(), 11);
    for d in replayed.iter().filter(|d| d.id != pending[0].id) {
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.next_attempt_at, Some(T0 + 500));
        assert_eq!((d.attempt_count, d.updated_at), (0, T0 + 500));
        assert_eq!(d.last_error.as_deref(), Some("HTTP 400"), "kept");
        assert_eq!(store_attempts(store, &d.id).await, [1], "attempts kept");
    }
    assert_eq!(
        get(store, &pending[0].id).await.next_attempt_at,
        Some(T0 + 1),
        "a pending delivery is not replayed"
    );

    // Filters narrow the replay: by event, then by type and time.
    let one_event =
        DeliveryFilter { event_id: Some(EventId::parse("e3").unwrap()), ..DeliveryFilter::default() };
    assert_eq!(store.replay_dead(&one_event, T0 + 600, 100).await.unwrap(), 1);
    assert_eq!(store.count_dead(&of_b).await.unwrap(), 9);
    let wrong_type =
        DeliveryFilter { event_type: Some(EventType::parse("x.y").unwrap()), ..DeliveryFilter::default() };
    assert_eq!(store.replay_dead(&wrong_type, T0 + 600, 100).await.unwrap(), 0);
    let right_type = DeliveryFilter {
        event_type: Some(EventType::parse("a.b").unwrap()),
        since: Some(T0),
        ..DeliveryFilter::default()
    };
    assert_eq!(store.replay_dead(&right_type, T0 + 600, 0).await.unwrap(), 0);
    assert_eq!(store.replay_dead(&right_type, T0 + 600, 100).await.unwrap(), 9);
    assert_eq!(store.count_dead(&DeliveryFilter::default()).await.unwrap(), 0);
}

pub async fn prune_removes_only_old_finished_deliveries_and_orphaned_events(db: TestDb) {
    let store = db.store.as_ref();
    let old = T0;
    let before = T0 + 10_000;
    let recent = before + 1;
    // Two destinations taking `a.b`, so each such event has two deliveries.
    for name in ["one", "two"] {
        let dst = destination(name);
        store.create_destination(&dst).await.unwrap();
        store.create_subscription(&subscription(&dst.id, &["a.b"])).await.unwrap();
    }
    let old_ones = ingest(store, &["ok", "dead", "pending", "mixed", "late", "skipped"], "a.b", old).await;
    assert_eq!(old_ones.len(), 12);
    // Received long ago and routed nowhere.
    ingest(store, &["unrouted"], "z.z", old).await;
    let fresh = ingest(store, &["fresh"], "a.b", recent).await;

    let of = |name: &str| -> Vec<DeliveryId> {
        old_ones.iter().filter(|d| d.event_id.as_str() == name).map(|d| d.id.clone()).collect()
    };
    let mixed = of("mixed");
    let mut plan: Vec<(DeliveryId, NextStep, Millis)> = Vec::new();
    plan.extend(of("ok").into_iter().map(|id| (id, NextStep::Succeeded, old + 1)));
    plan.extend(of("dead").into_iter().map(|id| (id, NextStep::Dead, old + 1)));
    plan.extend(of("pending").into_iter().map(|id| (id, NextStep::RetryAt(recent + 1_000_000), old + 1)));
    plan.extend(of("skipped").into_iter().map(|id| (id, NextStep::Filtered, old + 1)));
    plan.push((mixed[0].clone(), NextStep::Succeeded, old + 1));
    plan.push((mixed[1].clone(), NextStep::Dead, old + 1));
    // Succeeded after the cutoff: kept, and so is its old event.
    plan.extend(of("late").into_iter().map(|id| (id, NextStep::Succeeded, recent)));

    let claimed = store.claim_deliveries("n", old, recent + LEASE, 100).await.unwrap();
    assert_eq!(claimed.len(), 12, "the fresh ones are not due yet");
    for (id, next, at) in &plan {
        let recorded =
            store.record_attempt("n", &attempt(id, outcome_of(*next), *at), *next, *at).await.unwrap();
        assert!(recorded, "{id}");
    }
    assert_eq!(settle_all(store, "n", recent, NextStep::Succeeded).await, 2);

    // Small batches until nothing is left to prune.
    let mut batches = Vec::new();
    loop {
        let n = store.prune(before, 2).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(n <= 4, "at most `limit` deliveries and `limit` events: {n}");
        batches.push(n);
        assert!(batches.len() < 20, "pruning does not terminate");
    }
    // Three old succeeded deliveries (ok ×2, mixed ×1), two filtered ones (skipped ×2) and
    // three events (ok, unrouted, skipped).
    assert_eq!(batches.iter().sum::<u64>(), 8, "{batches:?}");
    assert!(batches.len() >= 2, "the limit holds: {batches:?}");

    let exists = |name: &'static str| async move {
        store.get_event(&EventId::parse(name).unwrap()).await.unwrap().is_some()
    };
    assert!(!exists("ok").await);
    assert!(!exists("unrouted").await);
    assert!(!exists("skipped").await);
    for kept in ["dead", "pending", "mixed", "late", "fresh"] {
        assert!(exists(kept).await, "{kept} is kept");
    }
    for (id, next, at) in &plan {
        let found = store.get_delivery(id).await.unwrap();
        let attempts = store.attempts_of(id).await.unwrap();
        if matches!(next, NextStep::Succeeded | NextStep::Filtered) && *at < before {
            assert_eq!(found, None, "old finished {id} is pruned");
            assert!(attempts.is_empty(), "with its attempts");
        } else {
            assert!(found.is_some(), "{id} ({next:?} at {at}) is kept");
            assert_eq!(attempts.len(), 1, "with its attempts");
        }
    }
    for d in &fresh {
        assert_eq!(get(store, &d.id).await.status, DeliveryStatus::Succeeded);
        assert_eq!(store_attempts(store, &d.id).await, [1]);
    }
    assert_eq!(store.prune(before, 0).await.unwrap(), 0);
}

pub async fn tallies_count_every_destinations_deliveries_at_once(db: TestDb) {
    let store = db.store.as_ref();
    let (a, _) = route(store, "a", false).await;
    let (b, _) = route(store, "b", false).await;
    let (idle, _) = route(store, "idle", true).await;
    let first = ingest(store, &["e1"], "a.b", T0).await;
    let second = ingest(store, &["e2"], "a.b", T0 + 10).await;
    let of = |deliveries: &[Delivery], dst: &Destination| {
        deliveries.iter().find(|d| d.destination_id == dst.id).expect("a delivery").clone()
    };
    store.claim_deliveries("n", T0 + 10, T0 + LEASE, 10).await.unwrap();
    for (delivery, next) in [
        (of(&first, &a), NextStep::Succeeded),
        (of(&second, &a), NextStep::Dead),
        (of(&first, &b), NextStep::RetryAt(T0 + 100)),
    ] {
        let outcome = outcome_of(next);
        store.record_attempt("n", &attempt(&delivery.id, outcome, T0 + 11), next, T0 + 11).await.unwrap();
    }
    store.release_leases("n", T0 + 12).await.unwrap();

    let tallies = store.delivery_tallies().await.unwrap();
    let on_a = tallies[&a.id];
    assert_eq!((on_a.pending, on_a.oldest_pending_at, on_a.dead, on_a.ever_succeeded), (0, None, 1, true));
    let on_b = tallies[&b.id];
    assert_eq!(
        (on_b.pending, on_b.oldest_pending_at, on_b.dead, on_b.ever_succeeded),
        (2, Some(T0), 0, false)
    );
    let on_idle = tallies[&idle.id];
    assert_eq!((on_idle.pending, on_idle.oldest_pending_at), (2, Some(T0)), "paused, its deliveries wait");
    let quiet = destination("quiet");
    store.create_destination(&quiet).await.unwrap();
    assert!(!store.delivery_tallies().await.unwrap().contains_key(&quiet.id), "no deliveries, no tally");

    let flows = store.destination_flows().await.unwrap();
    for dst in [&a, &b] {
        let flow =
            flows.iter().find(|f| f.destination_id == dst.id).expect("a flow record per destination tried");
        assert_eq!(Some(flow), store.destination_flow(&dst.id).await.unwrap().as_ref());
    }
    assert!(!flows.iter().any(|f| f.destination_id == idle.id), "never tried, no record");
}
