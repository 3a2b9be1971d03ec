//! Group commit, on both backends: concurrent ingests share transactions, yet each caller gets
//! its own outcome, a failing caller fails alone, and nothing acknowledged is lost.

use std::sync::Arc;

use switchyard_core::event::{EventFilter, EventId, IngestOutcome, NewEvent};
use switchyard_core::page::ListRequest;
use switchyard_core::store::{Store, StoreResult};
use tokio::sync::Barrier;

use crate::support::{T0, TestDb, destination, event, subscription};

/// Runs every call of `calls` at once, released together by a barrier so that they queue for
/// the writer together; answers their results in the order of `calls`.
async fn all_at_once(
    store: &Arc<dyn Store>,
    calls: Vec<Vec<NewEvent>>,
) -> Vec<StoreResult<Vec<IngestOutcome>>> {
    let barrier = Arc::new(Barrier::new(calls.len()));
    let tasks: Vec<_> = calls
        .into_iter()
        .map(|events| {
            let (store, barrier) = (Arc::clone(store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store.ingest(events, T0).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("the task completes"));
    }
    results
}

async fn stored_count(store: &dyn Store) -> u64 {
    let listing = store.list_events(&EventFilter::default(), ListRequest::default()).await.unwrap();
    listing.total.expect("a numbered page has a total")
}

async fn is_stored(store: &dyn Store, id: &str) -> bool {
    store.get_event(&EventId::parse(id).unwrap()).await.unwrap().is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingests_each_get_their_own_outcomes() {
    concurrent_ingests_get_their_own_outcomes(TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ingests_each_get_their_own_outcomes_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        concurrent_ingests_get_their_own_outcomes(db).await;
    }
}

async fn concurrent_ingests_get_their_own_outcomes(db: TestDb) {
    let store = &db.store;
    let dst = destination("d");
    store.create_destination(&dst).await.unwrap();
    store.create_subscription(&subscription(&dst.id, &["#"])).await.unwrap();
    store.ingest(vec![event("taken", "a.b")], T0).await.unwrap();

    let mut calls: Vec<Vec<NewEvent>> =
        (0..60).map(|i| vec![event(&format!("c{i}-a"), "a.b"), event(&format!("c{i}-b"), "a.b")]).collect();
    calls.push(vec![event("taken", "a.b")]);
    let mut changed = event("taken", "a.b");
    changed.content_hash = "another".into();
    calls.push(vec![changed]);
    let results = all_at_once(store, calls).await;

    for (i, result) in results[..60].iter().enumerate() {
        let outcomes = result.as_ref().expect("a plain call succeeds");
        let ids: Vec<String> = outcomes
            .iter()
            .map(|o| match o {
                IngestOutcome::Created(e) => e.event_id.as_str().to_owned(),
                other => panic!("call {i}: expected Created, got {other:?}"),
            })
            .collect();
        assert_eq!(ids, [format!("c{i}-a"), format!("c{i}-b")], "call {i} got its own events back");
    }
    assert!(matches!(results[60].as_ref().unwrap()[..], [IngestOutcome::Duplicate(_)]), "{:?}", results[60]);
    assert!(matches!(results[61].as_ref().unwrap()[..], [IngestOutcome::Conflict(_)]), "{:?}", results[61]);
    assert_eq!(stored_count(store.as_ref()).await, 121);
    let routed = store.deliveries_of_event(&EventId::parse("c59-b").unwrap()).await.unwrap();
    assert_eq!(routed.len(), 1, "deliveries are written with their event");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_call_fails_alone_and_leaves_nothing_of_itself() {
    a_failing_call_fails_alone(TestDb::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_call_fails_alone_and_leaves_nothing_of_itself_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        a_failing_call_fails_alone(db).await;
    }
}

async fn a_failing_call_fails_alone(db: TestDb) {
    let store = &db.store;
    db.poison_events().await;

    // Every fifth call carries a poisoned event after a good one: the good one must go too.
    let calls: Vec<Vec<NewEvent>> = (0..50)
        .map(|i| {
            let second = if i % 5 == 0 { format!("poison-{i}") } else { format!("ok-{i}-b") };
            vec![event(&format!("ok-{i}-a"), "a.b"), event(&second, "a.b")]
        })
        .collect();
    let results = all_at_once(store, calls).await;

    for (i, result) in results.iter().enumerate() {
        let first = format!("ok-{i}-a");
        if i % 5 == 0 {
            let error = result.as_ref().expect_err("a poisoned call fails");
            assert!(error.to_string().contains("injected"), "call {i}: {error}");
            assert!(!is_stored(store.as_ref(), &first).await, "call {i}: its good event was rolled back");
        } else {
            assert_eq!(result.as_ref().map(Vec::len).ok(), Some(2), "call {i}: {result:?}");
            assert!(is_stored(store.as_ref(), &first).await, "call {i}");
            assert!(is_stored(store.as_ref(), &format!("ok-{i}-b")).await, "call {i}");
        }
    }
    assert_eq!(stored_count(store.as_ref()).await, 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_ingests_survive_reopening_the_file() {
    let db = TestDb::sqlite().await;
    let calls: Vec<Vec<NewEvent>> =
        (0..200).map(|i| (0..5).map(|j| event(&format!("e{i}-{j}"), "a.b")).collect()).collect();
    for result in all_at_once(&db.store, calls).await {
        assert_eq!(result.expect("acknowledged").len(), 5);
    }
    let reopened = db.reopen(&db.keys).await;
    assert_eq!(stored_count(reopened.store().as_ref()).await, 1_000);
}
