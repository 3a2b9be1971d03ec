//! Attempts recorded at once, on both backends: each is numbered and moves its delivery as it
//! would alone, a caller without the lease writes nothing, a failing call fails alone, and the
//! circuit sees every outcome of a group in order.

use std::collections::HashMap;
use std::sync::Arc;

use switchyard_core::circuit::CircuitState;
use switchyard_core::delivery::{Attempt, Delivery, DeliveryStatus, NextStep};
use switchyard_core::destination::CircuitBreakerPolicy;
use switchyard_core::event::EventId;
use switchyard_core::id::DeliveryId;
use switchyard_core::store::{Store, StoreResult};
use switchyard_core::subscription::Ordering;
use switchyard_core::time::Millis;
use tokio::sync::Barrier;

use crate::deliveries::{attempt, outcome_of};
use crate::support::{T0, TestDb, destination, event, subscription};

const LEASE: Millis = 60_000;

/// One `record_attempt`: who calls, for which delivery, moving it where.
#[derive(Clone)]
struct Record {
    owner: &'static str,
    attempt: Attempt,
    next: NextStep,
    now: Millis,
}

fn record(owner: &'static str, delivery: &DeliveryId, next: NextStep, now: Millis) -> Record {
    Record { owner, attempt: attempt(delivery, outcome_of(next), now - 5), next, now }
}

/// Runs every record at once, released together so that they queue together; answers their
/// results in order.
async fn all_at_once(store: &Arc<dyn Store>, records: Vec<Record>) -> Vec<StoreResult<bool>> {
    let barrier = Arc::new(Barrier::new(records.len()));
    let tasks: Vec<_> = records
        .into_iter()
        .map(|r| {
            let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store.record_attempt(r.owner, &r.attempt, r.next, r.now).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("the task completes"));
    }
    results
}

/// `n` events routed to a new destination with `policy`, claimed by `owner` at `T0`.
async fn claimed(store: &dyn Store, n: usize, policy: CircuitBreakerPolicy, owner: &str) -> Vec<Delivery> {
    let mut dst = destination("settled");
    dst.circuit_breaker = policy;
    store.create_destination(&dst).await.unwrap();
    store.create_subscription(&subscription(&dst.id, &["#"])).await.unwrap();
    let events = (0..n).map(|i| event(&format!("s{i:03}"), "a.b")).collect();
    store.ingest(events, T0).await.unwrap();
    let claimed = store.claim_deliveries(owner, T0, T0 + LEASE, n as u32).await.unwrap();
    assert_eq!(claimed.len(), n);
    claimed
}

/// A circuit that never opens, so the records alone are under test.
fn patient() -> CircuitBreakerPolicy {
    CircuitBreakerPolicy {
        consecutive_failures: 1_000,
        min_requests: 1_000,
        ..CircuitBreakerPolicy::default()
    }
}

async fn get(store: &dyn Store, id: &DeliveryId) -> Delivery {
    store.get_delivery(id).await.unwrap().expect("the delivery")
}

async fn numbers(store: &dyn Store, id: &DeliveryId) -> Vec<u32> {
    store.attempts_of(id).await.unwrap().iter().map(|a| a.number).collect()
}

pub async fn concurrent_records_each_settle_their_delivery_or_nothing(db: TestDb) {
    const N: usize = 90;
    let store = db.store.clone();
    let deliveries = claimed(store.as_ref(), N, patient(), "node-a").await;
    // A third retry, a third succeed, a third die; every fifth is also recorded by a node
    // that holds no lease, and every seventh twice by its owner.
    let next_of = |i: usize| match i % 3 {
        0 => NextStep::RetryAt(T0 + 1_000 + i as Millis),
        1 => NextStep::Succeeded,
        _ => NextStep::Dead,
    };
    let mut records = Vec::new();
    for (i, d) in deliveries.iter().enumerate() {
        records.push(record("node-a", &d.id, next_of(i), T0 + 10));
        if i % 5 == 0 {
            records.push(record("intruder", &d.id, NextStep::Succeeded, T0 + 10));
        }
        if i % 7 == 0 {
            records.push(record("node-a", &d.id, next_of(i), T0 + 11));
        }
    }
    let results = all_at_once(&store, records.clone()).await;

    let mut recorded: HashMap<&DeliveryId, usize> = HashMap::new();
    for (r, result) in records.iter().zip(&results) {
        let settled = *result.as_ref().expect("no call fails");
        if r.owner == "intruder" {
            assert!(!settled, "an intruder settled {}", r.attempt.delivery_id);
        }
        *recorded.entry(&r.attempt.delivery_id).or_default() += usize::from(settled);
    }
    for (i, d) in deliveries.iter().enumerate() {
        assert_eq!(recorded.get(&d.id), Some(&1), "{}: the owner's first record settles it, once", d.id);
        let now = get(store.as_ref(), &d.id).await;
        let (status, due) = match next_of(i) {
            NextStep::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
            NextStep::Succeeded => (DeliveryStatus::Succeeded, None),
            _ => (DeliveryStatus::Dead, None),
        };
        assert_eq!((now.status, now.next_attempt_at, now.attempt_count), (status, due, 1), "{}", d.id);
        assert_eq!((now.lease_owner, now.unfinished_attempts), (None, 0));
        assert_eq!(numbers(store.as_ref(), &d.id).await, [1], "{}", d.id);
        let kept = &store.attempts_of(&d.id).await.unwrap()[0];
        assert_eq!(kept.outcome, outcome_of(next_of(i)), "the owner's attempt, not the intruder's");
    }

    // The retries, claimed again and recorded at once: numbered after the first.
    let retried: Vec<_> = deliveries.iter().step_by(3).collect();
    let again = store.claim_deliveries("node-b", T0 + 2_000, T0 + 2_000 + LEASE, N as u32).await.unwrap();
    assert_eq!(again.len(), retried.len());
    let records = retried.iter().map(|d| record("node-b", &d.id, NextStep::Succeeded, T0 + 2_001)).collect();
    assert!(all_at_once(&store, records).await.into_iter().all(|r| r.unwrap()));
    for d in retried {
        assert_eq!(numbers(store.as_ref(), &d.id).await, [1, 2], "{}", d.id);
        assert_eq!(get(store.as_ref(), &d.id).await.status, DeliveryStatus::Succeeded);
    }
}

/// Heads of many keys settled at once each let the next of their key go, and only theirs.
pub async fn concurrent_records_promote_the_next_of_each_key(db: TestDb) {
    const KEYS: usize = 12;
    let store = db.store.clone();
    let mut dst = destination("ordered");
    // Six retries settled together may land back to back; a circuit opened by them would
    // hide the promoted deliveries from the claim below.
    dst.circuit_breaker = patient();
    store.create_destination(&dst).await.unwrap();
    let mut sub = subscription(&dst.id, &["#"]);
    sub.ordering = Ordering::Key;
    store.create_subscription(&sub).await.unwrap();
    let mut events = Vec::new();
    for round in 0..2 {
        for key in 0..KEYS {
            let mut new = event(&format!("k{key}-{round}"), "a.b");
            new.ordering_key = Some(format!("key-{key}"));
            events.push(new);
        }
    }
    store.ingest(events, T0).await.unwrap();
    let heads = store.claim_deliveries("n", T0, T0 + LEASE, 100).await.unwrap();
    assert_eq!(heads.len(), KEYS, "one in flight per key");
    // Even keys succeed (the next goes), odd ones retry (the key waits for them).
    let records = heads
        .iter()
        .map(|d| {
            let key: usize = d.event_id.as_str()[1..].split('-').next().unwrap().parse().unwrap();
            let next =
                if key.is_multiple_of(2) { NextStep::Succeeded } else { NextStep::RetryAt(T0 + 50_000) };
            record("n", &d.id, next, T0 + 20)
        })
        .collect();
    assert!(all_at_once(&store, records).await.into_iter().all(|r| r.unwrap()));
    let mut next: Vec<String> = store
        .claim_deliveries("n", T0 + 20, T0 + LEASE, 100)
        .await
        .unwrap()
        .iter()
        .map(|d| d.event_id.as_str().to_owned())
        .collect();
    next.sort();
    let mut expected: Vec<String> = (0..KEYS).step_by(2).map(|key| format!("k{key}-1")).collect();
    expected.sort();
    assert_eq!(next, expected);
    for key in (0..KEYS).step_by(2) {
        let id = EventId::parse(&format!("k{key}-1")).unwrap();
        let promoted = &store.deliveries_of_event(&id).await.unwrap()[0];
        assert_eq!(promoted.status, DeliveryStatus::InFlight);
    }
}

pub async fn a_failing_record_among_many_fails_alone(db: TestDb) {
    const N: usize = 40;
    const POISONED: usize = 17;
    let store = db.store.clone();
    let deliveries = claimed(store.as_ref(), N, patient(), "n").await;
    db.poison_attempts().await;
    let records: Vec<_> = deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut r = record("n", &d.id, NextStep::RetryAt(T0 + 1_000), T0 + 10);
            if i == POISONED {
                r.attempt.error = Some("poison".into());
            }
            r
        })
        .collect();
    let results = all_at_once(&store, records).await;
    for (i, (d, result)) in deliveries.iter().zip(results).enumerate() {
        let now = get(store.as_ref(), &d.id).await;
        if i == POISONED {
            let error = result.expect_err("the poisoned record fails");
            assert!(error.to_string().contains("injected"), "{error}");
            assert_eq!(now.status, DeliveryStatus::InFlight, "nothing of it was written");
            assert_eq!(now.lease_owner.as_deref(), Some("n"));
            assert!(numbers(store.as_ref(), &d.id).await.is_empty());
        } else {
            assert!(result.expect("the others succeed"), "{}", d.id);
            assert_eq!(now.status, DeliveryStatus::Pending, "{}", d.id);
            assert_eq!(numbers(store.as_ref(), &d.id).await, [1], "{}", d.id);
        }
    }
}

/// Successes recorded together with one that fails: the group they share is undone and run
/// again without it, and each other success still reaches the circuit's counts once.
pub async fn a_failing_record_among_successes_leaves_each_other_counted_once(db: TestDb) {
    const N: usize = 40;
    const POISONED: usize = 23;
    let store = db.store.clone();
    let policy = patient();
    let window_ms = policy.window_ms;
    let deliveries = claimed(store.as_ref(), N + 1, policy, "n").await;
    // The first success stores the destination's flow record; the others' are then held.
    let (first, deliveries) = deliveries.split_first().expect("deliveries");
    let first = record("n", &first.id, NextStep::Succeeded, T0 + 10);
    assert!(all_at_once(&store, vec![first]).await.remove(0).expect("the first success"));
    db.poison_attempts().await;
    let records = deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut r = record("n", &d.id, NextStep::Succeeded, T0 + 10);
            if i == POISONED {
                r.attempt.error = Some("poison".into());
            }
            r
        })
        .collect();
    let results = all_at_once(&store, records).await;
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1, "{results:?}");
    let flow = store.destination_flow(&deliveries[0].destination_id).await.unwrap().expect("a flow record");
    let totals = flow.outcomes.totals(window_ms, T0 + 10);
    assert_eq!(
        (totals.succeeded, totals.failed),
        (N as u64, 0),
        "the first and the {} others, once each",
        N - 1
    );
}

/// Failures that arrive together open the circuit at the configured count, and every one of
/// them reaches its window, those after it opened included.
pub async fn the_circuit_opens_when_its_failures_arrive_together(db: TestDb) {
    const N: usize = 8;
    let store = db.store.clone();
    let policy = CircuitBreakerPolicy { consecutive_failures: 3, min_requests: 1_000, ..Default::default() };
    let window_ms = policy.window_ms;
    let deliveries = claimed(store.as_ref(), N, policy, "n").await;
    let records =
        deliveries.iter().map(|d| record("n", &d.id, NextStep::RetryAt(T0 + 1_000), T0 + 10)).collect();
    assert!(all_at_once(&store, records).await.into_iter().all(|r| r.unwrap()));
    let flow = store.destination_flow(&deliveries[0].destination_id).await.unwrap().expect("a flow record");
    assert_eq!(flow.circuit.state, CircuitState::Open);
    assert_eq!(flow.circuit.reason.as_deref(), Some("3 consecutive failures"));
    assert_eq!(flow.circuit.opened_at, Some(T0 + 10));
    assert_eq!(flow.outcomes.totals(window_ms, T0 + 10).failed, N as u64);
    assert_eq!(store.next_unblock_at(T0 + 10).await.unwrap(), flow.circuit.retry_at);
}

/// The changes of a circuit reach exactly one caller each: the record whose failure opened it
/// among many at once (so one node, and one task, announces an opening), then the probe that
/// closed it.
pub async fn each_change_of_a_circuit_is_answered_to_one_record(db: TestDb) {
    const N: usize = 8;
    let store = db.store.clone();
    let policy = CircuitBreakerPolicy {
        consecutive_failures: 3,
        min_requests: 1_000,
        cooldown_ms: 1_000,
        ..Default::default()
    };
    let deliveries = claimed(store.as_ref(), N, policy, "n").await;
    let destination = deliveries[0].destination_id.clone();
    let barrier = Arc::new(Barrier::new(N));
    let tasks: Vec<_> = deliveries
        .iter()
        .map(|d| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            let r = record("n", &d.id, NextStep::RetryAt(T0 + 5_000), T0 + 10);
            tokio::spawn(async move {
                barrier.wait().await;
                store.record_attempt_observed(r.owner, &r.attempt, r.next, r.now).await
            })
        })
        .collect();
    let mut changes = Vec::new();
    for task in tasks {
        let recorded = task.await.expect("the task completes").expect("recorded");
        assert!(recorded.settled);
        changes.extend(recorded.circuit);
    }
    assert_eq!(changes.len(), 1, "one opening, answered once: {changes:?}");
    let opened = &changes[0];
    assert_eq!((opened.state, &opened.destination_id), (CircuitState::Open, &destination));
    assert_eq!((opened.opened_at, opened.retry_at), (Some(T0 + 10), Some(T0 + 1_010)));
    assert_eq!(opened.reason.as_deref(), Some("3 consecutive failures"));

    // The probe fails (the same opening: nothing new), then one succeeds and closes it.
    let probe = |at: Millis| {
        let store = Arc::clone(&store);
        let destination = destination.clone();
        async move {
            let probe = store.claim_deliveries("n", at, at + LEASE, 1).await.unwrap().remove(0);
            let request = switchyard_core::flow::AdmitRequest {
                destination_id: &destination,
                candidates: std::slice::from_ref(&probe.id),
                rate_limit: None,
                probe_until: at + LEASE,
            };
            assert!(store.admit(&request, at).await.unwrap().probe);
            probe.id
        }
    };
    let failed = probe(T0 + 5_000).await;
    let again = record("n", &failed, NextStep::RetryAt(T0 + 60_000), T0 + 5_001);
    let recorded = store.record_attempt_observed(again.owner, &again.attempt, again.next, again.now).await;
    assert_eq!(recorded.unwrap().circuit, None, "a failed probe reopens the same opening");
    let succeeded = probe(T0 + 7_100).await;
    let done = record("n", &succeeded, NextStep::Succeeded, T0 + 7_101);
    let closed = store.record_attempt_observed(done.owner, &done.attempt, done.next, done.now).await.unwrap();
    let closed = closed.circuit.expect("the probe's success closes the circuit");
    assert_eq!(
        (closed.state, closed.opened_at, closed.at),
        (CircuitState::Closed, Some(T0 + 10), T0 + 7_101)
    );
}
