//! Ordered subscriptions in the outbox: a claim takes only the head of each key's queue, one
//! in flight per key, keys in parallel; dead letters block their key only when asked to; and
//! the filtered state that jq filters leave deliveries in.

use switchyard_core::delivery::{
    Attempt, AttemptOutcome, Delivery, DeliveryFilter, DeliveryStatus, NextStep,
};
use switchyard_core::event::EventId;
use switchyard_core::id::DeliveryId;
use switchyard_core::store::{Store, StoreError};
use switchyard_core::subscription::{Ordering, OrderingOnDead, Subscription};
use switchyard_core::time::Millis;

use crate::deliveries::outcome_of;
use crate::support::{T0, TestDb, destination, event, subscription};

const LEASE: Millis = 60_000;

/// A destination with one subscription taking every event type, ordered as asked.
async fn ordered_route(store: &dyn Store, ordering: Ordering, on_dead: OrderingOnDead) -> Subscription {
    let dst = destination("ordered");
    store.create_destination(&dst).await.unwrap();
    let mut sub = subscription(&dst.id, &["#"]);
    sub.ordering = ordering;
    sub.ordering_on_dead = on_dead;
    store.create_subscription(&sub).await.unwrap();
    sub
}

/// Ingests `(event id, ordering key)` pairs in order, one call each, and answers the
/// deliveries by event id.
async fn ingest_keyed(store: &dyn Store, events: &[(&str, Option<&str>)], now: Millis) -> Vec<Delivery> {
    let mut deliveries = Vec::new();
    for (id, key) in events {
        let mut new = event(id, "a.b");
        new.ordering_key = key.map(str::to_owned);
        store.ingest(vec![new], now).await.unwrap();
        deliveries.extend(store.deliveries_of_event(&EventId::parse(id).unwrap()).await.unwrap());
    }
    deliveries
}

fn attempt(id: &DeliveryId, next: NextStep, at: Millis) -> Attempt {
    let outcome = outcome_of(next);
    Attempt {
        delivery_id: id.clone(),
        number: 1,
        started_at: at,
        duration_ms: 1,
        outcome,
        status_code: None,
        error: matches!(outcome, AttemptOutcome::Retryable | AttemptOutcome::Permanent)
            .then(|| "failed".to_owned()),
        response_body: None,
    }
}

async fn settle(store: &dyn Store, id: &DeliveryId, next: NextStep, at: Millis) {
    assert!(
        store.record_attempt("n", &attempt(id, next, at), next, at).await.unwrap(),
        "{id} is leased to n"
    );
}

async fn claim(store: &dyn Store, now: Millis) -> Vec<String> {
    let claimed = store.claim_deliveries("n", now, now + LEASE, 100).await.unwrap();
    let mut names: Vec<String> = claimed.iter().map(|d| d.event_id.as_str().to_owned()).collect();
    names.sort();
    names
}

fn id_of<'a>(deliveries: &'a [Delivery], event: &str) -> &'a DeliveryId {
    &deliveries.iter().find(|d| d.event_id.as_str() == event).expect("a delivery of the event").id
}

pub async fn ordered_claims_take_the_head_of_each_key_in_ingest_order(db: TestDb) {
    ordered_claims_take_the_head_of_each_key(db.store.as_ref()).await;
}

/// The same claims while a paused destination has due deliveries, which makes them go around
/// it destination by destination.
pub async fn ordered_claims_take_the_same_heads_around_a_held_backlog(db: TestDb) {
    let store = db.store.as_ref();
    let mut paused = destination("paused");
    paused.enabled = false;
    store.create_destination(&paused).await.unwrap();
    store.create_subscription(&subscription(&paused.id, &["held.#"])).await.unwrap();
    let mut held = event("h1", "held.x");
    held.ordering_key = Some("a".into());
    store.ingest(vec![held], T0 - 1).await.unwrap();
    ordered_claims_take_the_head_of_each_key(store).await;
    assert_eq!(
        store.deliveries_of_event(&EventId::parse("h1").unwrap()).await.unwrap()[0].status,
        DeliveryStatus::Pending
    );
}

async fn ordered_claims_take_the_head_of_each_key(store: &dyn Store) {
    ordered_route(store, Ordering::Key, OrderingOnDead::Skip).await;
    let d = ingest_keyed(
        store,
        &[
            ("a1", Some("a")),
            ("b1", Some("b")),
            ("a2", Some("a")),
            ("n1", None),
            ("a3", Some("a")),
            ("b2", Some("b")),
        ],
        T0,
    )
    .await;

    // Behind the first of its key, a delivery waits for its turn with no due time.
    let due = |name: &'static str| {
        let id = id_of(&d, name).clone();
        async move { store.get_delivery(&id).await.unwrap().unwrap().next_attempt_at }
    };
    for (name, at) in
        [("a1", Some(T0)), ("b1", Some(T0)), ("n1", Some(T0)), ("a2", None), ("a3", None), ("b2", None)]
    {
        assert_eq!(due(name).await, at, "{name}");
    }

    // One per key, keys in parallel; an event without a key is not ordered.
    assert_eq!(claim(store, T0).await, ["a1", "b1", "n1"]);
    assert!(claim(store, T0).await.is_empty(), "nothing more while each key has one in flight");

    // The head done, the next of its key follows.
    settle(store, id_of(&d, "a1"), NextStep::Succeeded, T0 + 1).await;
    assert_eq!((due("a2").await, due("a3").await), (Some(T0 + 1), None), "the next one is due, only it");
    assert_eq!(claim(store, T0 + 1).await, ["a2"]);

    // A head waiting for its retry keeps its place: the key waits with it.
    settle(store, id_of(&d, "b1"), NextStep::RetryAt(T0 + 500), T0 + 2).await;
    assert!(claim(store, T0 + 2).await.is_empty(), "b2 waits behind b1's retry");
    assert_eq!(store.next_due_at(T0 + 2).await.unwrap(), Some(T0 + 500), "not b2, which cannot go");
    assert_eq!(claim(store, T0 + 500).await, ["b1"]);

    // Dead (the default `skip`), it no longer holds its key.
    settle(store, id_of(&d, "b1"), NextStep::Dead, T0 + 501).await;
    assert_eq!(claim(store, T0 + 501).await, ["b2"]);

    settle(store, id_of(&d, "a2"), NextStep::Succeeded, T0 + 502).await;
    assert_eq!(claim(store, T0 + 502).await, ["a3"]);
}

pub async fn unordered_subscriptions_and_keyless_events_are_not_held(db: TestDb) {
    let store = db.store.as_ref();
    ordered_route(store, Ordering::None, OrderingOnDead::Block).await;
    ingest_keyed(store, &[("a1", Some("a")), ("a2", Some("a")), ("a3", Some("a"))], T0).await;
    assert_eq!(claim(store, T0).await, ["a1", "a2", "a3"], "ordering: none sends a key's events at once");

    let keyed = ordered_route(store, Ordering::Key, OrderingOnDead::Block).await;
    let d = ingest_keyed(store, &[("n1", None), ("n2", None)], T0 + 1).await;
    assert_eq!(d.iter().filter(|x| x.subscription_id == keyed.id).count(), 2);
    let claimed = claim(store, T0 + 1).await;
    assert_eq!(claimed, ["n1", "n1", "n2", "n2"], "events without a key are never held");
}

pub async fn block_on_dead_holds_the_key_until_the_dead_one_is_replayed(db: TestDb) {
    let store = db.store.as_ref();
    ordered_route(store, Ordering::Key, OrderingOnDead::Block).await;
    let d = ingest_keyed(store, &[("a1", Some("a")), ("a2", Some("a")), ("b1", Some("b"))], T0).await;
    assert_eq!(claim(store, T0).await, ["a1", "b1"]);
    settle(store, id_of(&d, "a1"), NextStep::Dead, T0 + 1).await;
    settle(store, id_of(&d, "b1"), NextStep::Succeeded, T0 + 1).await;

    assert!(claim(store, T0 + 2).await.is_empty(), "a2 waits behind the dead a1");
    assert_eq!(store.next_due_at(T0 + 2).await.unwrap(), None, "a held key is not work to wake up for");
    let more = ingest_keyed(store, &[("b2", Some("b"))], T0 + 3).await;
    assert_eq!(claim(store, T0 + 3).await, ["b2"], "other keys flow");
    settle(store, id_of(&more, "b2"), NextStep::Succeeded, T0 + 4).await;

    // Replayed, the dead one goes first, then the rest of its key.
    store.retry_delivery(id_of(&d, "a1"), T0 + 5).await.unwrap().expect("the dead delivery");
    assert_eq!(claim(store, T0 + 5).await, ["a1"]);
    settle(store, id_of(&d, "a1"), NextStep::Succeeded, T0 + 6).await;
    assert_eq!(claim(store, T0 + 6).await, ["a2"]);
}

pub async fn a_key_never_has_two_deliveries_in_flight(db: TestDb) {
    let store = db.store.as_ref();
    ordered_route(store, Ordering::Key, OrderingOnDead::Skip).await;
    let d = ingest_keyed(store, &[("a1", Some("a")), ("a2", Some("a")), ("a3", Some("a"))], T0).await;
    assert_eq!(claim(store, T0).await, ["a1"]);
    settle(store, id_of(&d, "a1"), NextStep::Dead, T0 + 1).await;
    assert_eq!(claim(store, T0 + 1).await, ["a2"]);

    // The dead a1 replayed while a2 is in flight: it waits for a2, though it came first.
    store.replay_dead(&DeliveryFilter::default(), T0 + 2, 10).await.unwrap();
    assert!(claim(store, T0 + 2).await.is_empty(), "one in flight per key");
    settle(store, id_of(&d, "a2"), NextStep::Succeeded, T0 + 3).await;
    assert_eq!(claim(store, T0 + 3).await, ["a1"], "then the earliest pending goes");
    settle(store, id_of(&d, "a1"), NextStep::Succeeded, T0 + 4).await;
    assert_eq!(claim(store, T0 + 4).await, ["a3"]);

    // Retried by hand, a delivery waiting for its turn is due, but still waits for it.
    let late = ingest_keyed(store, &[("a4", Some("a")), ("a5", Some("a"))], T0 + 5).await;
    store.retry_delivery(id_of(&late, "a5"), T0 + 5).await.unwrap().expect("a pending delivery");
    assert!(claim(store, T0 + 5).await.is_empty(), "a5 passes neither a3 in flight nor a4");

    // A head whose lease expired is claimed again, and still alone.
    assert_eq!(claim(store, T0 + 4 + LEASE).await, ["a3"], "the expired lease, not a4 or a5");
    settle(store, id_of(&d, "a3"), NextStep::Succeeded, T0 + 5 + LEASE).await;
    assert_eq!(claim(store, T0 + 5 + LEASE).await, ["a4"]);
    settle(store, id_of(&late, "a4"), NextStep::Succeeded, T0 + 6 + LEASE).await;
    assert_eq!(claim(store, T0 + 6 + LEASE).await, ["a5"]);
}

pub async fn filtered_deliveries_are_final_and_release_their_key(db: TestDb) {
    let store = db.store.as_ref();
    ordered_route(store, Ordering::Key, OrderingOnDead::Block).await;
    let d = ingest_keyed(store, &[("a1", Some("a")), ("a2", Some("a"))], T0).await;
    assert_eq!(claim(store, T0).await, ["a1"]);
    let a1 = id_of(&d, "a1");
    settle(store, a1, NextStep::Filtered, T0 + 1).await;

    let filtered = store.get_delivery(a1).await.unwrap().unwrap();
    assert_eq!(filtered.status, DeliveryStatus::Filtered);
    assert_eq!((filtered.next_attempt_at, filtered.last_error, filtered.lease_owner), (None, None, None));
    let attempts = store.attempts_of(a1).await.unwrap();
    assert_eq!(attempts.iter().map(|a| a.outcome).collect::<Vec<_>>(), [AttemptOutcome::Filtered]);
    assert_eq!(claim(store, T0 + 1).await, ["a2"], "a filtered delivery does not hold its key");

    match store.retry_delivery(a1, T0 + 2).await {
        Err(StoreError::Conflict(message)) => assert!(message.contains("filtered"), "{message}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let listed = store
        .list_deliveries(
            &DeliveryFilter { status: Some(DeliveryStatus::Filtered), ..DeliveryFilter::default() },
            switchyard_core::page::ListRequest::Page { page: 1, per_page: 10 },
        )
        .await
        .unwrap();
    assert_eq!(listed.items.iter().map(|d| &d.id).collect::<Vec<_>>(), [a1]);
    assert_eq!(store.count_dead(&DeliveryFilter::default()).await.unwrap(), 0, "not a dead letter");
}
