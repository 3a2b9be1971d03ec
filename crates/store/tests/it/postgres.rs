//! Wake-ups across nodes (`Store::watch_work`) and retention run by several nodes: what
//! several nodes on one PostgreSQL database need beyond the shared suite.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection as _;
use switchyard_core::circuit::CircuitState;
use switchyard_core::delivery::{Attempt, AttemptOutcome, NextStep};
use switchyard_core::destination::CircuitBreakerPolicy;
use switchyard_core::event::EventId;
use switchyard_core::flow::DestinationFlow;
use switchyard_core::store::{Store, StoreError, WorkSignal};
use tokio::sync::mpsc;

use crate::support::{T0, TestDb, destination, event, subscription};

/// A watch on `db` that reports each signal on a channel.
async fn watch(
    db: &switchyard_store::Database,
) -> (Box<dyn switchyard_core::store::WorkWatch>, mpsc::UnboundedReceiver<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let signal: WorkSignal = Arc::new(move || {
        let _ = tx.send(());
    });
    let watch = db.store().watch_work(signal).await.expect("watch").expect("PostgreSQL watches");
    (watch, rx)
}

async fn signalled(rx: &mut mpsc::UnboundedReceiver<()>) -> bool {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.is_ok()
}

/// Another node watching `db`, told of an ingest that routes; answers its watch.
async fn ingest_wakes_another_node(
    db: &TestDb,
) -> (Box<dyn switchyard_core::store::WorkWatch>, mpsc::UnboundedReceiver<()>) {
    let other_node = db.reopen(&db.keys).await;
    let (watch, mut woken) = watch(&other_node).await;
    let dst = destination("d");
    db.store.create_destination(&dst).await.unwrap();
    db.store.create_subscription(&subscription(&dst.id, &["a.*"])).await.unwrap();
    // Resuming (updating an enabled destination) tells; drain that one.
    while woken.try_recv().is_ok() {}
    db.store.ingest(vec![event("e1", "a.b")], T0).await.unwrap();
    assert!(signalled(&mut woken).await, "an ingest that routes wakes the other node");
    (watch, woken)
}

#[tokio::test]
async fn work_made_due_on_one_node_wakes_the_others() {
    let Some(db) = TestDb::postgres().await else { return };
    let (_watch, mut woken) = ingest_wakes_another_node(&db).await;

    // Leases a stopping node hands back wake the others, which take them at once.
    let claimed = db.store.claim_deliveries("n1", T0, T0 + 1_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    while woken.try_recv().is_ok() {}
    db.store.release_leases("n1", T0).await.unwrap();
    assert!(signalled(&mut woken).await, "leases handed back wake the other node");
}

/// PostgreSQL's longest identifier (63 bytes) as the schema: the channel name stays within
/// the limit, and notifications still arrive.
#[tokio::test]
async fn a_schema_with_the_longest_name_still_wakes_other_nodes() {
    let schema = format!("sy_{:016x}_{}", rand::random::<u64>(), "s".repeat(43));
    assert_eq!(schema.len(), 63);
    let Some(db) = TestDb::postgres_in_schema(schema).await else { return };
    ingest_wakes_another_node(&db).await;
}

#[tokio::test]
async fn a_watch_stops_when_dropped() {
    let Some(db) = TestDb::postgres().await else { return };
    let (watch, mut woken) = watch(&db.database).await;
    drop(watch);
    let dst = destination("d");
    db.store.create_destination(&dst).await.unwrap();
    db.store.create_subscription(&subscription(&dst.id, &["a.*"])).await.unwrap();
    db.store.ingest(vec![event("e1", "a.b")], T0).await.unwrap();
    // The task is gone: its sender is dropped, so the channel closes rather than waits.
    let next = tokio::time::timeout(Duration::from_secs(5), woken.recv()).await.expect("closes promptly");
    assert_eq!(next, None, "no signal after the watch was dropped");
}

#[tokio::test]
async fn sqlite_has_nothing_to_watch() {
    let db = TestDb::sqlite().await;
    let watch = db.store.watch_work(Arc::new(|| {})).await.expect("no error");
    assert!(watch.is_none());
}

/// Prunes on `store` in small batches until none of `events` is left, and answers how many rows
/// it deleted. A 0 may only mean another node is pruning, so it looks before it stops.
async fn prune_until_gone(store: Arc<dyn Store>, before: i64, events: Vec<EventId>) -> u64 {
    let mut deleted = 0;
    for _ in 0..10_000 {
        let n = store.prune(before, 2).await.expect("a prune beside another succeeds");
        deleted += n;
        if n == 0 {
            let mut left = 0;
            for id in &events {
                left += usize::from(store.get_event(id).await.unwrap().is_some());
            }
            if left == 0 {
                return deleted;
            }
            tokio::task::yield_now().await;
        }
    }
    panic!("pruning never finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_pruning_at_once_both_succeed_and_remove_everything() {
    const EVENTS: usize = 300;
    let Some(db) = TestDb::postgres().await else { return };
    let other_node = db.reopen(&db.keys).await;
    let dst = destination("d");
    db.store.create_destination(&dst).await.unwrap();
    db.store.create_subscription(&subscription(&dst.id, &["a.*"])).await.unwrap();
    let ids: Vec<_> = (0..EVENTS).map(|n| format!("old-{n}")).collect();
    db.store.ingest(ids.iter().map(|id| event(id, "a.b")).collect(), T0).await.unwrap();
    let claimed = db.store.claim_deliveries("n1", T0, T0 + 60_000, EVENTS as u32).await.unwrap();
    assert_eq!(claimed.len(), EVENTS);
    for delivery in &claimed {
        let attempt = Attempt {
            delivery_id: delivery.id.clone(),
            number: 0,
            started_at: T0,
            duration_ms: 5,
            outcome: AttemptOutcome::Succeeded,
            status_code: Some(200),
            error: None,
            response_body: None,
        };
        assert!(db.store.record_attempt("n1", &attempt, NextStep::Succeeded, T0 + 1).await.unwrap());
    }

    let events: Vec<_> = ids.iter().map(|id| EventId::parse(id).unwrap()).collect();
    let before = T0 + 10_000;
    let (one, other) = tokio::join!(
        tokio::spawn(prune_until_gone(db.store.clone(), before, events.clone())),
        tokio::spawn(prune_until_gone(other_node.store(), before, events.clone())),
    );
    // Every delivery (each with its attempt) and every event, each deleted once.
    assert_eq!(one.unwrap() + other.unwrap(), 2 * EVENTS as u64);
    assert_eq!(db.store.prune(before, 100).await.unwrap(), 0);
}

/// While one node's prune runs (here, a transaction holding the prune's turn), every other
/// prune answers 0 at once rather than waiting or deleting beside it; then it goes on.
#[tokio::test]
async fn prunes_wait_their_turn_while_another_node_prunes() {
    let Some(db) = TestDb::postgres().await else { return };
    let entries: Vec<_> =
        (0..3).map(|n| crate::audit::entry(n, "key_a", "destination.create", 201)).collect();
    db.store.append_audit_entries(&entries).await.unwrap();
    db.store.claim_idempotency_key("s", "k", "h", T0, 0, 0).await.unwrap();

    let mut side = db.postgres_side_connection().await;
    let mut pruning = side.begin().await.expect("begin");
    let turn: bool = sqlx::query_scalar(
        "SELECT pg_try_advisory_xact_lock(hashtext('switchyard.prune'), hashtext(current_schema()))",
    )
    .fetch_one(&mut *pruning)
    .await
    .expect("take the turn");
    assert!(turn);
    let later = T0 + 10_000;
    assert_eq!(db.store.prune_audit_log(later, 100).await.unwrap(), 0);
    assert_eq!(db.store.prune_idempotency_keys(later, 100).await.unwrap(), 0);
    assert_eq!(db.store.prune(later, 100).await.unwrap(), 0);
    pruning.commit().await.expect("end the other prune");

    assert_eq!(db.store.prune_audit_log(later, 100).await.unwrap(), 3);
    assert_eq!(db.store.prune_idempotency_keys(later, 100).await.unwrap(), 1);
}

/// A statement the server cancels at `statement_timeout` (here, one waiting on a lock) is the
/// database being unavailable for now, which the API answers with 503, not a failure of the
/// call.
#[tokio::test]
async fn a_statement_past_its_timeout_is_unavailability() {
    let Some(db) = TestDb::postgres().await else { return };
    let impatient = db.reopen_with(|options| options.statement_timeout_ms = Some(1_000)).await;
    let dst = destination("d");
    db.store.create_destination(&dst).await.unwrap();

    let mut side = db.postgres_side_connection().await;
    let mut locked = side.begin().await.expect("begin");
    sqlx::query("LOCK TABLE destinations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locked)
        .await
        .expect("lock");
    let waited = impatient.store().get_destination(&dst.id).await;
    assert!(matches!(waited, Err(StoreError::Unavailable(_))), "{waited:?}");
    locked.rollback().await.expect("rollback");
    assert!(impatient.store().get_destination(&dst.id).await.unwrap().is_some(), "it passes with the lock");
}

/// Two nodes recording failures of one destination at once, each in groups of its own: the
/// circuit opens once at its count, and every outcome of both reaches its window, whichever
/// node's group changed the record first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_settling_at_once_share_the_circuit() {
    const EACH: usize = 30;
    let Some(db) = TestDb::postgres().await else { return };
    let other_node = db.reopen(&db.keys).await.store();
    let mut dst = destination("shared");
    dst.circuit_breaker =
        CircuitBreakerPolicy { consecutive_failures: 3, min_requests: 1_000, ..Default::default() };
    db.store.create_destination(&dst).await.unwrap();
    db.store.create_subscription(&subscription(&dst.id, &["a.*"])).await.unwrap();
    let ids: Vec<_> = (0..2 * EACH).map(|n| format!("f-{n}")).collect();
    db.store.ingest(ids.iter().map(|id| event(id, "a.b")).collect(), T0).await.unwrap();
    let on_one = db.store.claim_deliveries("n1", T0, T0 + 60_000, EACH as u32).await.unwrap();
    let on_other = other_node.claim_deliveries("n2", T0, T0 + 60_000, EACH as u32).await.unwrap();
    assert_eq!((on_one.len(), on_other.len()), (EACH, EACH));

    let barrier = Arc::new(tokio::sync::Barrier::new(2 * EACH));
    let mut tasks = Vec::new();
    for (store, owner, claimed) in [(db.store.clone(), "n1", on_one), (other_node.clone(), "n2", on_other)] {
        for delivery in claimed {
            let (store, barrier) = (store.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                let failed = Attempt {
                    delivery_id: delivery.id.clone(),
                    number: 0,
                    started_at: T0,
                    duration_ms: 5,
                    outcome: AttemptOutcome::Retryable,
                    status_code: Some(503),
                    error: Some("HTTP 503".into()),
                    response_body: None,
                };
                barrier.wait().await;
                store.record_attempt(owner, &failed, NextStep::RetryAt(T0 + 1_000), T0 + 1).await
            }));
        }
    }
    for task in tasks {
        assert!(task.await.unwrap().unwrap(), "every record held its lease");
    }
    let flow = db.store.destination_flow(&dst.id).await.unwrap().expect("a flow record");
    assert_eq!(flow.circuit.state, CircuitState::Open);
    assert_eq!(flow.circuit.reason.as_deref(), Some("3 consecutive failures"));
    // Outcomes observed while open change nothing but counts: each node holds its own for up
    // to a second. What is stored, plus what each node holds, is every one of them, once.
    let failed = |flow: Option<DestinationFlow>| {
        flow.expect("a flow record").outcomes.totals(dst.circuit_breaker.window_ms, T0 + 1).failed
    };
    let stored = failed(db.reopen(&db.keys).await.store().destination_flow(&dst.id).await.unwrap());
    let here = failed(Some(flow));
    let there = failed(other_node.destination_flow(&dst.id).await.unwrap());
    assert_eq!(here + there - stored, 2 * EACH as u64, "{here} + {there} - {stored}");
}
