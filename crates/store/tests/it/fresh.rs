//! Deliveries an ingest writes already leased to the node that ingests (`FreshLease`): at
//! most the lease's `max`, never an ordered one, each exactly as a claim would have leased it,
//! so everything after (renewal, recording, expiry, hand-back, poison counting) is the claim's.

use std::collections::BTreeSet;

use switchyard_core::delivery::{AttemptOutcome, DeliveryStatus, NextStep};
use switchyard_core::event::{EventId, IngestOutcome};
use switchyard_core::id::DeliveryId;
use switchyard_core::store::FreshLease;
use switchyard_core::subscription::Ordering;
use switchyard_core::time::Millis;

use crate::deliveries::{attempt, get};
use crate::support::{T0, TestDb, destination, event, subscription};

const LEASE: Millis = 1_000;

fn lease(max: usize) -> Option<FreshLease> {
    Some(FreshLease { owner: "node-a".into(), lease_until: T0 + LEASE, max })
}

pub async fn a_fresh_lease_leases_at_most_its_max_and_never_an_ordered_delivery(db: TestDb) {
    let store = db.store.as_ref();
    let dst = destination("d");
    store.create_destination(&dst).await.unwrap();
    let plain =
        [subscription(&dst.id, &["a.#"]), subscription(&dst.id, &["a.b"]), subscription(&dst.id, &["#"])];
    for sub in &plain {
        store.create_subscription(sub).await.unwrap();
    }
    let mut ordered = subscription(&dst.id, &["a.b"]);
    ordered.ordering = Ordering::Key;
    store.create_subscription(&ordered).await.unwrap();

    // Two keyed events: 3 unordered and 1 ordered delivery each; the lease takes 4.
    let keyed = |id: &str| {
        let mut new = event(id, "a.b");
        new.ordering_key = Some("k".into());
        new
    };
    let ingested = store.ingest_routed(vec![keyed("e1"), keyed("e2")], T0, lease(4)).await.unwrap();
    assert!(matches!(ingested.outcomes[..], [IngestOutcome::Created(_), IngestOutcome::Created(_)]));
    assert!(ingested.routed, "deliveries were left pending for the claims");
    assert_eq!(ingested.leased.len(), 4, "{:?}", ingested.leased);
    for leased in &ingested.leased {
        assert_ne!(leased.subscription_id, ordered.id, "an ordered delivery is never leased at ingest");
        assert_eq!(leased.status, DeliveryStatus::InFlight);
        assert_eq!(leased.lease_owner.as_deref(), Some("node-a"));
        assert_eq!(leased.lease_expires_at, Some(T0 + LEASE));
        assert_eq!(leased.unfinished_attempts, 1, "counted like a claim");
        // The answer is what the store holds.
        assert_eq!(&get(store, &leased.id).await, leased);
    }
    let answered: BTreeSet<_> = ingested.leased_subscriptions.iter().map(|s| s.id.clone()).collect();
    let of_leased: BTreeSet<_> = ingested.leased.iter().map(|d| d.subscription_id.clone()).collect();
    assert_eq!(answered, of_leased, "each leased delivery's subscription, once");
    assert_eq!(ingested.leased_subscriptions.len(), answered.len());

    // The rest are pending: the claim takes the two unordered ones and the key's head only.
    let leased: BTreeSet<DeliveryId> = ingested.leased.iter().map(|d| d.id.clone()).collect();
    let mut all = store.deliveries_of_event(&EventId::parse("e1").unwrap()).await.unwrap();
    all.extend(store.deliveries_of_event(&EventId::parse("e2").unwrap()).await.unwrap());
    assert_eq!(all.len(), 8);
    let pending: Vec<_> = all.iter().filter(|d| !leased.contains(&d.id)).collect();
    assert!(pending.iter().all(|d| d.status == DeliveryStatus::Pending && d.lease_owner.is_none()));
    let claimed = store.claim_deliveries("node-b", T0, T0 + LEASE, 100).await.unwrap();
    assert_eq!(claimed.len(), 3, "{claimed:?}");
    assert!(claimed.iter().all(|d| !leased.contains(&d.id)), "a live fresh lease is not claimed");
    assert_eq!(claimed.iter().filter(|d| d.subscription_id == ordered.id).count(), 1);

    // A lease of 0 leases nothing; no lease, nothing either.
    let none = store.ingest_routed(vec![event("e3", "a.c")], T0, lease(0)).await.unwrap();
    assert!(none.leased.is_empty() && none.routed);
    let without = store.ingest_routed(vec![event("e4", "a.c")], T0, None).await.unwrap();
    assert!(without.leased.is_empty() && without.routed);

    // A paused destination's deliveries are left to the claims, which pass over them.
    let mut paused = destination("paused");
    paused.enabled = false;
    store.create_destination(&paused).await.unwrap();
    store.create_subscription(&subscription(&paused.id, &["held.#"])).await.unwrap();
    let held = store.ingest_routed(vec![event("h1", "held.x")], T0, lease(10)).await.unwrap();
    assert!(held.routed);
    assert!(held.leased.iter().all(|d| d.destination_id == dst.id), "{:?}", held.leased);
    let to_paused: Vec<_> = store
        .deliveries_of_event(&EventId::parse("h1").unwrap())
        .await
        .unwrap()
        .into_iter()
        .filter(|d| d.destination_id == paused.id)
        .collect();
    assert!(to_paused.len() == 1 && to_paused[0].status == DeliveryStatus::Pending, "{to_paused:?}");
}

pub async fn a_fresh_lease_is_a_claims_lease_from_then_on(db: TestDb) {
    let store = db.store.as_ref();
    let dst = destination("d");
    store.create_destination(&dst).await.unwrap();
    store.create_subscription(&subscription(&dst.id, &["#"])).await.unwrap();
    let ingested =
        store.ingest_routed(vec![event("e1", "a.b"), event("e2", "a.b")], T0, lease(10)).await.unwrap();
    assert!(!ingested.routed, "everything was leased: nothing new to claim");
    let [sent, lost] = &ingested.leased[..] else { panic!("two leased deliveries: {:?}", ingested.leased) };
    let other_node = FreshLease { owner: "node-c".into(), lease_until: T0 + LEASE, max: 10 };
    let handed_back = store.ingest_routed(vec![event("e3", "a.b")], T0, Some(other_node)).await.unwrap();
    let [handed_back] = &handed_back.leased[..] else { panic!("one leased delivery") };

    // The owner records an attempt as after a claim; nobody else may.
    let recorded = attempt(&sent.id, AttemptOutcome::Succeeded, T0 + 5);
    assert!(!store.record_attempt("node-b", &recorded, NextStep::Succeeded, T0 + 5).await.unwrap());
    assert!(store.record_attempt("node-a", &recorded, NextStep::Succeeded, T0 + 5).await.unwrap());
    let sent = get(store, &sent.id).await;
    assert_eq!(
        (sent.status, sent.attempt_count, sent.unfinished_attempts),
        (DeliveryStatus::Succeeded, 1, 0)
    );

    // Handed back unused (a shutdown): due at once, its lease not counted.
    assert_eq!(store.release_leases("node-c", T0 + 10).await.unwrap(), 1);
    let released = get(store, &handed_back.id).await;
    assert_eq!((released.status, released.unfinished_attempts), (DeliveryStatus::Pending, 0));

    // Renewed while its owner lives, it is not claimed; once the owner stops renewing, any
    // node claims it, counting the ingest's lease as an attempt that ended without an outcome.
    assert_eq!(
        store.renew_leases("node-a", std::slice::from_ref(&lost.id), T0 + 2 * LEASE).await.unwrap(),
        1
    );
    let far = T0 + 100 * LEASE;
    let first = store.claim_deliveries("node-b", T0 + LEASE, far, 10).await.unwrap();
    let first: Vec<_> = first.into_iter().map(|d| (d.id, d.unfinished_attempts)).collect();
    assert_eq!(first, [(handed_back.id.clone(), 1)]);
    let second = store.claim_deliveries("node-b", T0 + 2 * LEASE, far, 10).await.unwrap();
    let second: Vec<_> = second.into_iter().map(|d| (d.id, d.unfinished_attempts)).collect();
    assert_eq!(second, [(lost.id.clone(), 2)]);
}
