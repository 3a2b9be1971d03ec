//! Wake-ups across nodes (`Store::watch_work`): what several nodes on one PostgreSQL database
//! need beyond the shared suite.

use std::sync::Arc;
use std::time::Duration;

use switchyard_core::store::WorkSignal;
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

#[tokio::test]
async fn work_made_due_on_one_node_wakes_the_others() {
    let Some(db) = TestDb::postgres().await else { return };
    let other_node = db.reopen(&db.keys).await;
    let (_watch, mut woken) = watch(&other_node).await;

    let dst = destination("d");
    db.store.create_destination(&dst).await.unwrap();
    db.store.create_subscription(&subscription(&dst.id, &["a.*"])).await.unwrap();
    // Resuming (updating an enabled destination) tells; drain that one.
    while woken.try_recv().is_ok() {}

    db.store.ingest(vec![event("e1", "a.b")], T0).await.unwrap();
    assert!(signalled(&mut woken).await, "an ingest that routes wakes the other node");

    // Leases a stopping node hands back wake the others, which take them at once.
    let claimed = db.store.claim_deliveries("n1", T0, T0 + 1_000, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    while woken.try_recv().is_ok() {}
    db.store.release_leases("n1", T0).await.unwrap();
    assert!(signalled(&mut woken).await, "leases handed back wake the other node");
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
