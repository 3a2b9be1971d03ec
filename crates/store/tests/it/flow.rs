//! Flow control in the store: the circuit fed by recorded attempts, admission (one probe
//! cluster-wide, shared rate tokens), and deferring claimed deliveries without an attempt.
//! Two owners stand for two nodes; time is passed in.

use switchyard_core::circuit::CircuitState;
use switchyard_core::delivery::{Attempt, AttemptOutcome, Delivery, DeliveryStatus, NextStep};
use switchyard_core::destination::{CircuitBreakerPolicy, Destination, RateLimit};
use switchyard_core::event::EventId;
use switchyard_core::flow::{Admission, AdmitRequest, Deferral, PROBE_RECHECK_MS};
use switchyard_core::id::{DeliveryId, DestinationId};
use switchyard_core::store::Store;
use switchyard_core::time::Millis;

use crate::support::{T0, TestDb, destination, event, subscription};

const LEASE: Millis = 60_000;
const COOLDOWN: Millis = 1_000;

async fn guarded_destination(store: &dyn Store, rate_limit: Option<RateLimit>) -> Destination {
    let mut dst = destination("guarded");
    dst.circuit_breaker = CircuitBreakerPolicy {
        consecutive_failures: 3,
        cooldown_ms: COOLDOWN as u64,
        max_cooldown_ms: 10_000,
        ..CircuitBreakerPolicy::default()
    };
    dst.rate_limit = rate_limit;
    store.create_destination(&dst).await.unwrap();
    store.create_subscription(&subscription(&dst.id, &["#"])).await.unwrap();
    dst
}

pub async fn ingest_one(store: &dyn Store, id: &str, now: Millis) -> Delivery {
    store.ingest(vec![event(id, "a.b")], now).await.unwrap();
    store.deliveries_of_event(&EventId::parse(id).unwrap()).await.unwrap().remove(0)
}

pub fn attempt(delivery: &DeliveryId, outcome: AttemptOutcome, at: Millis) -> Attempt {
    Attempt {
        delivery_id: delivery.clone(),
        number: 0,
        started_at: at,
        duration_ms: 40,
        outcome,
        status_code: Some(if outcome == AttemptOutcome::Succeeded { 200 } else { 503 }),
        error: None,
        response_body: None,
    }
}

/// Claims `delivery` (due at `now`) for `owner`, records `outcome` for it and hands back
/// whatever else the claim took.
pub async fn try_once(
    store: &dyn Store,
    owner: &str,
    delivery: &DeliveryId,
    outcome: AttemptOutcome,
    now: Millis,
) {
    let claimed = store.claim_deliveries(owner, now, now + LEASE, 10).await.unwrap();
    assert!(claimed.iter().any(|d| d.id == *delivery), "{delivery} was not claimable at {now}");
    record_and_release(store, owner, delivery, outcome, now).await;
}

/// Records `outcome` for `delivery`, which `owner` holds, and hands back what else it holds.
async fn record_and_release(
    store: &dyn Store,
    owner: &str,
    delivery: &DeliveryId,
    outcome: AttemptOutcome,
    now: Millis,
) {
    let next =
        if outcome == AttemptOutcome::Succeeded { NextStep::Succeeded } else { NextStep::RetryAt(now) };
    assert!(store.record_attempt(owner, &attempt(delivery, outcome, now), next, now).await.unwrap());
    store.release_leases(owner, now).await.unwrap();
}

/// The ids `owner` claims at `now`.
async fn claim_ids(store: &dyn Store, owner: &str, now: Millis) -> Vec<DeliveryId> {
    let claimed = store.claim_deliveries(owner, now, now + LEASE, 10).await.unwrap();
    claimed.into_iter().map(|d| d.id).collect()
}

async fn admit(store: &dyn Store, dst: &Destination, candidates: &[DeliveryId], now: Millis) -> Admission {
    let request = AdmitRequest {
        destination_id: &dst.id,
        candidates,
        rate_limit: dst.rate_limit.as_ref(),
        probe_until: now + 5_000,
    };
    store.admit(&request, now).await.unwrap()
}

async fn state(store: &dyn Store, dst: &Destination) -> CircuitState {
    store.destination_flow(&dst.id).await.unwrap().expect("a flow record").circuit.state
}

/// Opens the circuit of `dst` with three failed attempts at `delivery`, the last at `at`.
async fn trip(store: &dyn Store, dst: &Destination, delivery: &DeliveryId, at: Millis) {
    for t in [at - 2, at - 1, at] {
        try_once(store, "node-a", delivery, AttemptOutcome::Retryable, t).await;
    }
    assert_eq!(state(store, dst).await, CircuitState::Open);
}

pub async fn a_closed_circuit_admits_everything_without_writing(db: TestDb) {
    let store = db.store.as_ref();
    let dst = guarded_destination(store, None).await;
    let ids = [DeliveryId::generate(), DeliveryId::generate()];
    let admission = admit(store, &dst, &ids, T0).await;
    assert_eq!(admission, Admission { admitted: 2, probe: false, deferred: vec![] });
    assert!(store.destination_flow(&dst.id).await.unwrap().is_none(), "nothing to write");
    assert_eq!(store.next_unblock_at(T0).await.unwrap(), None);

    let gone = DestinationId::generate();
    let request = AdmitRequest { destination_id: &gone, candidates: &ids, rate_limit: None, probe_until: T0 };
    assert_eq!(store.admit(&request, T0).await.unwrap().admitted, 2, "a deleted destination admits");
}

pub async fn a_changed_policy_applies_to_the_next_attempt(db: TestDb) {
    let store = db.store.as_ref();
    let dst = guarded_destination(store, None).await;
    let delivery = ingest_one(store, "p1", T0).await;
    try_once(store, "node-a", &delivery.id, AttemptOutcome::Retryable, T0).await;
    assert_eq!(state(store, &dst).await, CircuitState::Closed, "one failure of the three it takes");

    let stored = store.get_destination(&dst.id).await.unwrap().expect("the destination");
    let mut tighter = stored.clone();
    tighter.circuit_breaker.consecutive_failures = 2;
    store.update_destination(&tighter, stored.version).await.unwrap();
    try_once(store, "node-a", &delivery.id, AttemptOutcome::Retryable, T0 + 1).await;
    let flow = store.destination_flow(&dst.id).await.unwrap().expect("a flow record");
    assert_eq!(flow.circuit.state, CircuitState::Open, "opened under the policy stored now");
}

pub async fn recorded_failures_open_the_circuit_and_deferral_spends_no_attempt(db: TestDb) {
    let store = db.store.as_ref();
    let dst = guarded_destination(store, None).await;
    let first = ingest_one(store, "f1", T0).await;
    try_once(store, "node-a", &first.id, AttemptOutcome::Retryable, T0).await;
    try_once(store, "node-a", &first.id, AttemptOutcome::Permanent, T0 + 1).await;
    try_once(store, "node-a", &first.id, AttemptOutcome::Retryable, T0 + 2).await;
    let flow = store.destination_flow(&dst.id).await.unwrap().expect("created by the first attempt");
    assert_eq!(flow.circuit.state, CircuitState::Closed);
    assert_eq!(flow.circuit.consecutive_failures, 2, "a permanent failure is neither success nor failure");
    assert_eq!(flow.outcomes.totals(60_000, T0 + 2).attempts(), 3);

    // The fourth failure opens it while another delivery of it is claimed.
    let waiting = ingest_one(store, "f2", T0 + 3).await;
    assert_eq!(claim_ids(store, "node-b", T0 + 3).await, [first.id.clone(), waiting.id.clone()]);
    let failed = attempt(&first.id, AttemptOutcome::Retryable, T0 + 3);
    assert!(store.record_attempt("node-b", &failed, NextStep::RetryAt(T0 + 3), T0 + 3).await.unwrap());
    let flow = store.destination_flow(&dst.id).await.unwrap().unwrap();
    assert_eq!(flow.circuit.state, CircuitState::Open);
    assert_eq!(flow.circuit.opened_at, Some(T0 + 3));
    assert_eq!(flow.circuit.reason.as_deref(), Some("3 consecutive failures"));
    let probe_at = T0 + 3 + COOLDOWN;
    assert_eq!(flow.circuit.retry_at, Some(probe_at));
    assert_eq!(store.next_unblock_at(T0 + 3).await.unwrap(), Some(probe_at));

    // The delivery claimed before it opened goes back without an attempt.
    let admission = admit(store, &dst, std::slice::from_ref(&waiting.id), T0 + 10).await;
    assert_eq!(admission, Admission { admitted: 0, probe: false, deferred: vec![probe_at] });
    let deferrals = [Deferral { delivery_id: waiting.id.clone(), until: probe_at }];
    assert_eq!(store.defer_deliveries("node-a", &deferrals, T0 + 10).await.unwrap(), 0, "not node-a's lease");
    assert_eq!(store.defer_deliveries("node-b", &deferrals, T0 + 10).await.unwrap(), 1);
    for (id, attempts, due) in [(&first.id, 4, T0 + 3), (&waiting.id, 0, probe_at)] {
        let delivery = store.get_delivery(id).await.unwrap().unwrap();
        assert_eq!(delivery.status, DeliveryStatus::Pending);
        assert_eq!(delivery.next_attempt_at, Some(due));
        assert_eq!(delivery.lease_owner, None);
        assert_eq!(delivery.attempt_count, attempts);
        assert_eq!(store.attempts_of(id).await.unwrap().len(), attempts as usize);
    }

    // While it is open, claims pass over its backlog, even what is due, and wake for nothing.
    assert!(claim_ids(store, "node-b", T0 + 10).await.is_empty());
    assert!(claim_ids(store, "node-b", probe_at - 1).await.is_empty());
    assert_eq!(store.next_due_at(T0 + 10).await.unwrap(), None);
    assert_eq!(claim_ids(store, "node-b", probe_at).await, [first.id.clone(), waiting.id.clone()]);
}

pub async fn one_probe_goes_at_a_time_across_nodes_and_its_verdict_decides(db: TestDb) {
    let store = db.store.as_ref();
    let dst = guarded_destination(store, None).await;
    let a = ingest_one(store, "p1", T0).await;
    let b = ingest_one(store, "p2", T0).await;
    trip(store, &dst, &a.id, T0 + 10).await;
    let probe_at = T0 + 10 + COOLDOWN;

    // Both nodes ask at the probe time: the first takes the probe, the other waits.
    assert_eq!(claim_ids(store, "node-a", probe_at).await.len(), 2, "the cool-down is over");
    let on_a = admit(store, &dst, std::slice::from_ref(&a.id), probe_at).await;
    assert_eq!(on_a, Admission { admitted: 1, probe: true, deferred: vec![] });
    assert_eq!(state(store, &dst).await, CircuitState::HalfOpen);
    let on_b = admit(store, &dst, std::slice::from_ref(&b.id), probe_at).await;
    assert_eq!(on_b.admitted, 0);
    assert_eq!(on_b.deferred, [probe_at + PROBE_RECHECK_MS]);
    assert_eq!(store.next_unblock_at(probe_at).await.unwrap(), Some(probe_at + 5_000), "the probe's lease");

    // The probe fails: open again for twice the cool-down.
    record_and_release(store, "node-a", &a.id, AttemptOutcome::Retryable, probe_at + 20).await;
    let flow = store.destination_flow(&dst.id).await.unwrap().unwrap();
    assert_eq!(flow.circuit.state, CircuitState::Open);
    assert_eq!(flow.circuit.cooldown_ms, 2 * COOLDOWN as u64);
    assert_eq!(flow.circuit.opened_at, Some(T0 + 10), "open since it first opened");
    assert_eq!(flow.circuit.reason.as_deref(), Some("the half-open probe failed"));

    // The next probe (from the other node) succeeds: closed, everything flows.
    let next_probe = probe_at + 20 + 2 * COOLDOWN;
    assert!(claim_ids(store, "node-b", next_probe - 1).await.is_empty(), "still open");
    assert_eq!(claim_ids(store, "node-b", next_probe).await.len(), 2);
    assert!(admit(store, &dst, std::slice::from_ref(&b.id), next_probe).await.probe);
    record_and_release(store, "node-b", &b.id, AttemptOutcome::Succeeded, next_probe + 5).await;
    let flow = store.destination_flow(&dst.id).await.unwrap().unwrap();
    assert_eq!(flow.circuit.state, CircuitState::Closed);
    assert_eq!((flow.circuit.opened_at, flow.circuit.reason), (None, None));
    assert_eq!(admit(store, &dst, &[a.id.clone(), b.id.clone()], next_probe + 6).await.admitted, 2);
    assert_eq!(store.next_unblock_at(next_probe + 6).await.unwrap(), None);
}

pub async fn rate_tokens_are_shared_between_nodes_and_refill(db: TestDb) {
    let store = db.store.as_ref();
    let dst = guarded_destination(store, Some(RateLimit { per_second: 5, burst: Some(2) })).await;
    let ids: Vec<DeliveryId> = (0..4).map(|_| DeliveryId::generate()).collect();
    let first = admit(store, &dst, &ids[..3], T0).await;
    assert_eq!(first, Admission { admitted: 2, probe: false, deferred: vec![T0 + 200] });
    let other_node = admit(store, &dst, &ids[3..], T0 + 100).await;
    assert_eq!(other_node, Admission { admitted: 0, probe: false, deferred: vec![T0 + 200] });
    assert_eq!(store.next_unblock_at(T0 + 100).await.unwrap(), Some(T0 + 200));
    assert_eq!(admit(store, &dst, &ids[2..], T0 + 200).await.admitted, 1);
    assert_eq!(admit(store, &dst, &ids[3..], T0 + 400).await.admitted, 1);
}

pub async fn deleting_a_destination_drops_its_flow_record(db: TestDb) {
    let store = db.store.as_ref();
    let mut dst = destination("short-lived");
    dst.rate_limit = Some(RateLimit { per_second: 1, burst: None });
    store.create_destination(&dst).await.unwrap();
    admit(store, &dst, &[DeliveryId::generate()], T0).await;
    assert!(store.destination_flow(&dst.id).await.unwrap().is_some());
    assert!(store.delete_destination(&dst.id).await.unwrap());
    assert!(store.destination_flow(&dst.id).await.unwrap().is_none());
}

/// Attempts recorded at once for one destination all reach its circuit's counts: none is
/// lost between the outcomes held in memory and the flow record. Several bursts, as each
/// shows a lost outcome only sometimes.
pub async fn concurrent_attempts_all_reach_the_circuit_counts(db: TestDb) {
    const BURST: usize = 24;
    const BURSTS: usize = 8;
    const ATTEMPTS: usize = 1 + BURST * BURSTS;
    let store = db.store.clone();
    let dst = guarded_destination(&*store, None).await;
    let events = (0..ATTEMPTS).map(|n| event(&format!("burst-{n}"), "a.b")).collect();
    store.ingest(events, T0).await.unwrap();
    let claimed = store.claim_deliveries("node-a", T0, T0 + LEASE, ATTEMPTS as u32).await.unwrap();
    assert_eq!(claimed.len(), ATTEMPTS);
    // The first creates the flow record; the rest race on it.
    let (first, rest) = claimed.split_first().unwrap();
    let success = |d: &DeliveryId| attempt(d, AttemptOutcome::Succeeded, T0);
    assert!(store.record_attempt("node-a", &success(&first.id), NextStep::Succeeded, T0).await.unwrap());
    for burst in rest.chunks(BURST) {
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(burst.len()));
        let tasks: Vec<_> = burst
            .iter()
            .map(|delivery| {
                let (store, barrier, attempt) = (store.clone(), barrier.clone(), success(&delivery.id));
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.record_attempt("node-a", &attempt, NextStep::Succeeded, T0).await.unwrap()
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap(), "every attempt held its lease");
        }
    }
    let flow = store.destination_flow(&dst.id).await.unwrap().expect("a flow record");
    let totals = flow.outcomes.totals(dst.circuit_breaker.window_ms, T0);
    assert_eq!(totals.succeeded, ATTEMPTS as u64, "{totals:?}");
    assert_eq!(totals.failed, 0);
}
