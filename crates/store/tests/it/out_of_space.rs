//! SQLite out of space: while the writer cannot write, writes are answered as unavailable (and
//! `ping` says why); once space is back they succeed again without a restart. Nothing
//! acknowledged is lost and nothing of a refused write is stored.
//!
//! `PRAGMA max_page_count` on the write connection makes inserts fail with `SQLITE_FULL`
//! exactly as a full disk does; raising it is space coming back.

use std::sync::Arc;

use serde_json::json;
use switchyard_core::audit::AuditFilter;
use switchyard_core::event::{EventId, NewEvent};
use switchyard_core::page::ListRequest;
use switchyard_core::store::{Store, StoreError, StoreResult};
use switchyard_store::Database;

use crate::audit::entry;
use crate::support::{T0, TestDb, destination, event, subscription};

/// An event of about 2 KB, as in the report that found the writer wedged.
fn large_event(id: &str) -> NewEvent {
    let mut new = event(id, "a.b");
    new.payload = json!({ "id": id, "padding": "x".repeat(2_048) });
    new
}

fn assert_out_of_space<T: std::fmt::Debug>(result: &StoreResult<T>, what: &str) {
    match result {
        Err(error @ StoreError::Unavailable(_)) => {
            assert!(error.to_string().contains("out of space"), "{what}: {error}")
        }
        other => panic!("{what}: expected unavailability for lack of space, got {other:?}"),
    }
}

async fn is_stored(store: &dyn Store, id: &str) -> bool {
    let id = EventId::parse(id).expect("an event id");
    store.get_event(&id).await.expect("the event reads").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_database_refuses_writes_until_space_is_back() {
    let db = TestDb::sqlite().await;
    let Database::Sqlite(sqlite) = &db.database else { panic!("a SQLite database") };
    let store = &db.store;
    let dst = destination("d");
    store.create_destination(&dst).await.unwrap();
    store.create_subscription(&subscription(&dst.id, &["#"])).await.unwrap();

    // Room for a few dozen more events, then full.
    let in_use = sqlite.cap_writer_pages(1).await.unwrap();
    sqlite.cap_writer_pages(in_use + 40).await.unwrap();
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    for i in 0..1_000 {
        let id = format!("e{i}");
        let result = store.ingest(vec![large_event(&id)], T0).await;
        if result.is_ok() {
            acknowledged.push(id);
            continue;
        }
        assert_out_of_space(&result, "the ingest that found the database full");
        refused.push(id);
        break;
    }
    assert!(!acknowledged.is_empty() && !refused.is_empty(), "the cap was reached: {acknowledged:?}");
    let error = store.ping().await.expect_err("a writer that cannot write is not ready");
    assert!(error.to_string().contains("writer") && error.to_string().contains("out of space"), "{error}");

    // Calls that share a group while full: each is answered, and either stored or refused.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                let id = format!("full{i}");
                (store.ingest(vec![large_event(&id)], T0).await, id)
            })
        })
        .collect();
    for task in tasks {
        let (result, id) = task.await.expect("the task completes");
        match result {
            Ok(_) => acknowledged.push(id),
            Err(_) => {
                assert_out_of_space(&result, &id);
                refused.push(id);
            }
        }
    }
    let still_full = store.ingest(vec![large_event("still-full")], T0).await;
    assert_out_of_space(&still_full, "an ingest while still full");
    refused.push("still-full".to_owned());
    // Enough entries to need pages of their own (a few would fit in the room pages have left).
    let entries: Vec<_> = (0..200).map(|n| entry(n, "key_a", "destination.create", 201)).collect();
    let audit = store.append_audit_entries(&entries).await;
    assert_out_of_space(&audit, "an audit write while full");
    // A write of its own transaction, outside the group writer, on the same connection.
    let mut large_destination = destination("large");
    large_destination.config["padding"] = json!("x".repeat(16 * 1024));
    let created = store.create_destination(&large_destination).await;
    assert_out_of_space(&created, "a destination written while full");

    // Space is back: the same store writes again.
    sqlite.cap_writer_pages(1_000_000).await.unwrap();
    store.ping().await.expect("a writer that can write again is ready");
    store.ingest(vec![large_event("after")], T0).await.expect("an ingest once space is back");
    acknowledged.push("after".to_owned());
    store
        .append_audit_entries(&[entry(1, "key_a", "destination.update", 200)])
        .await
        .expect("an audit write once space is back");
    store.create_destination(&large_destination).await.expect("a destination once space is back");
    let audited = store.list_audit_log(&AuditFilter::default(), ListRequest::default()).await.unwrap();
    let actions: Vec<&str> = audited.items.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["destination.update"], "the refused entries were not stored");

    for id in &acknowledged {
        assert!(is_stored(store.as_ref(), id).await, "acknowledged {id} is stored");
        let deliveries = store.deliveries_of_event(&EventId::parse(id).unwrap()).await.unwrap();
        assert_eq!(deliveries.len(), 1, "acknowledged {id} has its delivery");
    }
    for id in &refused {
        assert!(!is_stored(store.as_ref(), id).await, "refused {id} is not stored");
        let deliveries = store.deliveries_of_event(&EventId::parse(id).unwrap()).await.unwrap();
        assert!(deliveries.is_empty(), "refused {id} left no delivery");
    }
}

/// A write in a transaction of its own (not the group writer's) is refused the same way, and
/// changes nothing.
#[tokio::test]
async fn a_transaction_refused_for_space_is_unavailability() {
    let db = TestDb::sqlite().await;
    let Database::Sqlite(sqlite) = &db.database else { panic!("a SQLite database") };
    sqlite.cap_writer_pages(1).await.unwrap();
    let mut large = destination("large");
    large.config["padding"] = json!("x".repeat(16 * 1024));
    assert_out_of_space(&db.store.create_destination(&large).await, "a destination written while full");
    assert!(db.store.get_destination(&large.id).await.unwrap().is_none(), "nothing of it is stored");

    sqlite.cap_writer_pages(1_000_000).await.unwrap();
    db.store.create_destination(&large).await.expect("a destination once space is back");
    assert!(db.store.get_destination(&large.id).await.unwrap().is_some());
}
