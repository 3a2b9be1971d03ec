//! `unfinished_attempts`: every lease a claim takes counts as an attempt that has not finished
//! until one is recorded, so the engine can tell a delivery whose nodes keep dying while they
//! run it; a lease handed back unused takes its count off again.

use switchyard_core::delivery::{AttemptOutcome, DeliveryStatus, NextStep};
use switchyard_core::flow::Deferral;
use switchyard_core::id::DeliveryId;
use switchyard_core::store::Store;
use switchyard_core::time::Millis;

use crate::deliveries::{attempt, get, ingest, outcome_of, route};
use crate::support::{T0, TestDb, destination, subscription};

/// How long each lease of these tests lasts.
const LEASE: Millis = 100;

/// Claims what is due at `now` for `owner`, answering each claimed delivery's id and count.
async fn claim(store: &dyn Store, owner: &str, now: Millis) -> Vec<(DeliveryId, u32)> {
    let claimed = store.claim_deliveries(owner, now, now + LEASE, 100).await.unwrap();
    claimed.into_iter().map(|d| (d.id, d.unfinished_attempts)).collect()
}

async fn unfinished(store: &dyn Store, id: &DeliveryId) -> u32 {
    get(store, id).await.unfinished_attempts
}

pub async fn claims_count_each_lease_and_a_recorded_attempt_of_any_outcome_resets_it(db: TestDb) {
    let store = db.store.as_ref();
    let live = destination("live");
    store.create_destination(&live).await.unwrap();
    store.create_subscription(&subscription(&live.id, &["a.#"])).await.unwrap();
    let deliveries = ingest(store, &["e1", "e2", "e3", "e4"], "a.b", T0).await;

    // The first claim counts one, and answers the count with the delivery.
    let first = claim(store, "node-a", T0).await;
    assert_eq!(first.len(), 4);
    assert!(first.iter().all(|(_, count)| *count == 1), "{first:?}");
    for d in &deliveries {
        assert_eq!(unfinished(store, &d.id).await, 1);
    }
    // node-a died: each claim of an expired lease, on any node, counts one more.
    let second = claim(store, "node-b", T0 + LEASE).await;
    assert!(second.len() == 4 && second.iter().all(|(_, count)| *count == 2), "{second:?}");
    let third = claim(store, "node-c", T0 + 2 * LEASE).await;
    assert!(third.len() == 4 && third.iter().all(|(_, count)| *count == 3), "{third:?}");

    // An attempt recorded, whatever its outcome, finished the lease: the count starts over.
    let now = T0 + 2 * LEASE + 10;
    let retry_at = now + 1_000;
    let steps = [NextStep::RetryAt(retry_at), NextStep::Succeeded, NextStep::Dead, NextStep::Filtered];
    for (d, next) in deliveries.iter().zip(steps) {
        let recorded = attempt(&d.id, outcome_of(next), now);
        assert!(store.record_attempt("node-c", &recorded, next, now).await.unwrap());
        let d = get(store, &d.id).await;
        assert_eq!((d.unfinished_attempts, d.attempt_count), (0, 1), "after {next:?}");
    }
    assert_eq!(get(store, &deliveries[2].id).await.status, DeliveryStatus::Dead);
    assert_eq!(get(store, &deliveries[3].id).await.status, DeliveryStatus::Filtered);

    // The retry's next lease counts from 0, also when claims go around a paused
    // destination's backlog.
    let mut paused = destination("paused");
    paused.enabled = false;
    store.create_destination(&paused).await.unwrap();
    store.create_subscription(&subscription(&paused.id, &["held.#"])).await.unwrap();
    assert_eq!(ingest(store, &["held-1"], "held.x", T0).await.len(), 1);
    assert_eq!(claim(store, "node-c", retry_at).await, [(deliveries[0].id.clone(), 1)]);
    assert_eq!(claim(store, "node-d", retry_at + LEASE).await, [(deliveries[0].id.clone(), 2)]);
    // An operator's retry is a fresh budget of both.
    let recorded = attempt(&deliveries[0].id, AttemptOutcome::Permanent, retry_at + LEASE);
    assert!(store.record_attempt("node-d", &recorded, NextStep::Dead, retry_at + LEASE).await.unwrap());
    let retried = store.retry_delivery(&deliveries[0].id, retry_at + LEASE).await.unwrap().unwrap();
    assert_eq!((retried.unfinished_attempts, retried.attempt_count), (0, 0));
}

pub async fn leases_handed_back_unused_do_not_count(db: TestDb) {
    let store = db.store.as_ref();
    route(store, "d", false).await;
    let deliveries = ingest(store, &["e1", "e2"], "a.b", T0).await;
    let (deferred, released) = (&deliveries[0].id, &deliveries[1].id);
    let defer = |until: Millis| [Deferral { delivery_id: deferred.clone(), until }];

    // Handed back before anything ran: by the gate (a deferral) and on shutdown (a release).
    assert_eq!(claim(store, "node-a", T0).await.len(), 2);
    assert_eq!(store.defer_deliveries("node-a", &defer(T0 + 10), T0 + 1).await.unwrap(), 1);
    assert_eq!(store.release_leases("node-a", T0 + 10).await.unwrap(), 1);
    for id in [deferred, released] {
        let d = get(store, id).await;
        assert_eq!((d.status, d.unfinished_attempts), (DeliveryStatus::Pending, 0), "{id}");
    }

    // Waiting as often as it may never adds up.
    for round in 0..5 {
        let now = T0 + 10 + round * LEASE;
        let claimed = claim(store, "node-a", now).await;
        assert!(claimed.len() == 2 && claimed.iter().all(|(_, count)| *count == 1), "{claimed:?}");
        assert_eq!(store.defer_deliveries("node-a", &defer(now + 1), now).await.unwrap(), 1);
        assert_eq!(store.release_leases("node-a", now + 1).await.unwrap(), 1);
        assert_eq!((unfinished(store, deferred).await, unfinished(store, released).await), (0, 0));
    }

    // A lease whose node died still counts when the next one hands its own lease back.
    let now = T0 + 1_000;
    assert_eq!(claim(store, "node-a", now).await.len(), 2);
    let reclaimed = claim(store, "node-b", now + LEASE).await;
    assert!(reclaimed.iter().all(|(_, count)| *count == 2), "{reclaimed:?}");
    assert_eq!(store.defer_deliveries("node-b", &defer(now + LEASE), now + LEASE).await.unwrap(), 1);
    assert_eq!(store.release_leases("node-b", now + LEASE).await.unwrap(), 1);
    assert_eq!((unfinished(store, deferred).await, unfinished(store, released).await), (1, 1));

    // Only the lease's owner hands it back, and only once.
    assert_eq!(claim(store, "node-c", now + LEASE).await.len(), 2);
    assert_eq!(store.defer_deliveries("node-a", &defer(now), now + LEASE).await.unwrap(), 0);
    assert_eq!(store.release_leases("node-b", now + LEASE).await.unwrap(), 0);
    assert_eq!((unfinished(store, deferred).await, unfinished(store, released).await), (2, 2));
}
