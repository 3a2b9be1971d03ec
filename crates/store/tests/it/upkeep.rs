//! The node's upkeep in the store: every table that grows with traffic shrinks back to its
//! retention in bounded batches, and outcomes held in memory reach the flow record without a
//! further attempt.

use switchyard_core::audit::AuditFilter;
use switchyard_core::delivery::AttemptOutcome;
use switchyard_core::destination::Destination;
use switchyard_core::page::ListRequest;
use switchyard_core::store::{IdempotencyClaim, Store, StoreResult, StoredResponse};
use switchyard_core::time::{Millis, now_millis};

use crate::audit::entry;
use crate::flow::{ingest_one, try_once};
use crate::support::{T0, TestDb, destination, subscription};

/// Calls `prune` with batches of `batch` until it answers 0; answers the rows it deleted and
/// checks that no batch went beyond its bound.
async fn prune_in_batches<F, Fut>(batch: u32, mut prune: F) -> u64
where
    F: FnMut(u32) -> Fut,
    Fut: std::future::Future<Output = StoreResult<u64>>,
{
    let mut deleted = 0;
    loop {
        let n = prune(batch).await.expect("a prune succeeds");
        assert!(n <= u64::from(batch), "a batch of {batch} deleted {n}");
        if n == 0 {
            return deleted;
        }
        deleted += n;
    }
}

pub async fn audit_entries_past_retention_are_pruned_in_batches(db: TestDb) {
    let store = db.store.as_ref();
    // Recorded at T0 + 0 … T0 + 24.
    let entries: Vec<_> = (0..25).map(|n| entry(n, "key_a", "destination.create", 201)).collect();
    store.append_audit_entries(&entries).await.unwrap();
    assert_eq!(store.prune_audit_log(T0 + 20, 0).await.unwrap(), 0, "an empty batch deletes nothing");

    let pruned = prune_in_batches(3, |batch| store.prune_audit_log(T0 + 20, batch)).await;
    assert_eq!(pruned, 20);
    let kept = store
        .list_audit_log(&AuditFilter::default(), ListRequest::Page { page: 1, per_page: 100 })
        .await
        .unwrap();
    let kept: Vec<&str> = kept.items.iter().map(|e| e.request_id.as_str()).collect();
    assert_eq!(kept, ["req-20", "req-21", "req-22", "req-23", "req-24"], "the entry at the cutoff stays");
    assert_eq!(store.prune_audit_log(T0 + 20, 100).await.unwrap(), 0);
}

pub async fn idempotency_records_past_retention_are_pruned_in_batches(db: TestDb) {
    let store = db.store.as_ref();
    let response = StoredResponse { status: 201, location: None, body: b"{}".to_vec() };
    // Claimed at T0 + 0 … T0 + 9; the even ones answered, the odd ones still claimed.
    for n in 0..10 {
        let key = format!("k{n}");
        let claimed = store.claim_idempotency_key("s", &key, "h", T0 + n, 0, 0).await.unwrap();
        assert_eq!(claimed, IdempotencyClaim::Claimed);
        if n % 2 == 0 {
            store.complete_idempotency_key("s", &key, T0 + n, &response).await.unwrap();
        }
    }

    let pruned = prune_in_batches(2, |batch| store.prune_idempotency_keys(T0 + 6, batch)).await;
    assert_eq!(pruned, 6, "answered and claimed records alike");
    for n in 0..10 {
        // Cutoffs of 0 forget nothing on the way: what the claim finds is what is stored.
        let found = store.claim_idempotency_key("s", &format!("k{n}"), "h", T0 + 100, 0, 0).await.unwrap();
        let expected = match n {
            ..6 => IdempotencyClaim::Claimed,
            _ if n % 2 == 0 => {
                IdempotencyClaim::Completed { request_hash: "h".into(), response: response.clone() }
            }
            _ => IdempotencyClaim::InProgress { request_hash: "h".into() },
        };
        assert_eq!(found, expected, "k{n}");
    }
}

/// The successes after the first of a healthy destination are held in memory; with no attempt
/// after them, writing the held outcomes is what makes another node see them.
pub async fn held_outcomes_are_written_without_a_further_attempt(db: TestDb) {
    let store = db.store.as_ref();
    let other_node = db.reopen(&db.keys).await.store();
    let dst = destination("quiet");
    store.create_destination(&dst).await.unwrap();
    store.create_subscription(&subscription(&dst.id, &["#"])).await.unwrap();
    // The breaker forgets outcomes beyond its window of the clock: record them at its time.
    let start = now_millis();
    for (n, at) in [start, start + 1, start + 2].into_iter().enumerate() {
        let delivery = ingest_one(store, &format!("e{n}"), at).await;
        try_once(store, "n1", &delivery.id, AttemptOutcome::Succeeded, at).await;
    }
    let seen_here = || succeeded_in_record(store, &dst, start + 2);
    let seen_elsewhere = || succeeded_in_record(other_node.as_ref(), &dst, start + 2);
    assert_eq!(seen_here().await, 3, "this node counts all");
    assert_eq!(seen_elsewhere().await, 1, "the first created the record; the others are held");

    assert_eq!(store.write_held_outcomes(start + 1).await.unwrap(), 0, "none is held since before then");
    assert_eq!(seen_elsewhere().await, 1);
    assert_eq!(store.write_held_outcomes(start + 2).await.unwrap(), 1, "one record, both outcomes");
    assert_eq!(seen_elsewhere().await, 3);
    assert_eq!(seen_here().await, 3, "none counted twice");
    assert_eq!(store.write_held_outcomes(Millis::MAX).await.unwrap(), 0, "nothing is held any more");
}

/// The successes in `dst`'s flow record as `store` reads it at `at`.
async fn succeeded_in_record(store: &dyn Store, dst: &Destination, at: Millis) -> u64 {
    let flow = store.destination_flow(&dst.id).await.unwrap().expect("a flow record");
    flow.outcomes.totals(dst.circuit_breaker.window_ms, at).succeeded
}

/// A destination deleted while outcomes of it are held takes them with it.
pub async fn held_outcomes_of_a_deleted_destination_are_dropped(db: TestDb) {
    let store = db.store.as_ref();
    let dst = destination("gone");
    store.create_destination(&dst).await.unwrap();
    let sub = subscription(&dst.id, &["#"]);
    store.create_subscription(&sub).await.unwrap();
    let start = now_millis();
    for (n, at) in [start, start + 1].into_iter().enumerate() {
        let delivery = ingest_one(store, &format!("e{n}"), at).await;
        try_once(store, "n1", &delivery.id, AttemptOutcome::Succeeded, at).await;
    }
    store.delete_subscription(&sub.id).await.unwrap();
    assert!(store.delete_destination(&dst.id).await.unwrap());
    assert_eq!(store.write_held_outcomes(Millis::MAX).await.unwrap(), 0);
    assert!(store.destination_flow(&dst.id).await.unwrap().is_none());
}
