//! The live streams' reads: every committed row once, in commit order, filters applied
//! without stalling the cursor; on PostgreSQL, no row passed by while its transaction is open.

use sqlx::Connection as _;
use switchyard_core::delivery::{Attempt, AttemptOutcome, DeliveryStatus, NextStep};
use switchyard_core::pattern::EventTypePattern;
use switchyard_core::store::FreshLease;
use switchyard_core::stream::{DeliveryStreamFilter, EventStreamFilter, StreamCursor};

use crate::support::{T0, TestDb, destination, event, subscription};

/// Reads the whole events stream after `from`, a few rows at a time; answers the ids and the
/// end.
async fn read_events(
    db: &TestDb,
    from: StreamCursor,
    filter: &EventStreamFilter,
) -> (Vec<String>, StreamCursor) {
    let (mut ids, mut at) = (Vec::new(), from);
    loop {
        let page = db.store.stream_events(at, filter, 2).await.expect("a read");
        ids.extend(page.items.iter().map(|(_, e)| e.event_id.to_string()));
        if let Some((last, _)) = page.items.last() {
            assert!(*last <= page.end.expect("an end"), "items lie within the read");
        }
        at = page.end.unwrap_or(at);
        if !page.more {
            return (ids, at);
        }
    }
}

/// [`read_events`] until `n` events came: on PostgreSQL, a transaction open anywhere on the
/// server (another test's) holds back what follows it for a moment.
async fn read_events_until(
    db: &TestDb,
    from: StreamCursor,
    filter: &EventStreamFilter,
    n: usize,
) -> (Vec<String>, StreamCursor) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let (mut ids, mut at) = (Vec::new(), from);
    loop {
        let (more, end) = read_events(db, at, filter).await;
        ids.extend(more);
        at = end;
        if ids.len() >= n || tokio::time::Instant::now() > deadline {
            return (ids, at);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// The deliveries stream after `from` until `n` came (see [`read_events_until`]).
async fn read_deliveries_until(
    db: &TestDb,
    from: StreamCursor,
    filter: &DeliveryStreamFilter,
    n: usize,
) -> (Vec<switchyard_core::delivery::Delivery>, StreamCursor) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let (mut seen, mut at) = (Vec::new(), from);
    loop {
        let page = db.store.stream_deliveries(at, filter, 100).await.expect("a read");
        seen.extend(page.items.into_iter().map(|(_, d)| d));
        at = page.end.unwrap_or(at);
        if (seen.len() >= n && !page.more) || tokio::time::Instant::now() > deadline {
            return (seen, at);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

pub async fn the_events_stream_reads_every_event_once_in_order(db: TestDb) {
    let head = db.store.stream_head_events().await.unwrap();
    db.store.ingest(vec![event("e1", "a.b"), event("e2", "c.d"), event("e3", "a.x")], T0).await.unwrap();
    let (ids, end) = read_events_until(&db, StreamCursor::origin(), &EventStreamFilter::default(), 3).await;
    assert_eq!(ids, ["e1", "e2", "e3"]);
    let (after_head, _) = read_events(&db, head, &EventStreamFilter::default()).await;
    assert_eq!(after_head, ["e1", "e2", "e3"], "the live end taken before lies before them");

    db.store.ingest(vec![event("e4", "a.b"), event("e5", "c.d")], T0).await.unwrap();
    let (later, end) = read_events_until(&db, end, &EventStreamFilter::default(), 2).await;
    assert_eq!(later, ["e4", "e5"], "a reader resuming from its end sees only what followed");
    assert!(read_events(&db, end, &EventStreamFilter::default()).await.0.is_empty());
    let head = db.store.stream_head_events().await.unwrap();
    assert!(
        read_events(&db, head, &EventStreamFilter::default()).await.0.is_empty(),
        "nothing past the live end"
    );

    let filter = EventStreamFilter {
        event_type: Some(EventTypePattern::parse("a.*").unwrap()),
        ..EventStreamFilter::default()
    };
    let (matching, filtered_end) = read_events(&db, StreamCursor::origin(), &filter).await;
    assert_eq!(matching, ["e1", "e3", "e4"]);
    assert_eq!(filtered_end, end, "rows that do not match still advance the cursor");
    let filter = EventStreamFilter {
        correlation_id: Some("corr-e2".into()),
        source: Some("api".into()),
        ..EventStreamFilter::default()
    };
    assert_eq!(read_events(&db, StreamCursor::origin(), &filter).await.0, ["e2"]);
    let filter = EventStreamFilter { source: Some("webhook:src_x".into()), ..EventStreamFilter::default() };
    assert!(read_events(&db, StreamCursor::origin(), &filter).await.0.is_empty());
}

pub async fn the_deliveries_stream_reads_status_changes_compacted(db: TestDb) {
    let dst = destination("d");
    db.store.create_destination(&dst).await.unwrap();
    db.store.create_subscription(&subscription(&dst.id, &["a.*"])).await.unwrap();
    let head = db.store.stream_head_deliveries().await.unwrap();
    db.store.ingest(vec![event("e1", "a.b"), event("e2", "a.c")], T0).await.unwrap();

    let all = DeliveryStreamFilter::default();
    let (seen, end) = read_deliveries_until(&db, head, &all, 2).await;
    let seen: Vec<_> = seen.iter().map(|d| (d.event_id.to_string(), d.status)).collect();
    assert_eq!(seen, [("e1".into(), DeliveryStatus::Pending), ("e2".into(), DeliveryStatus::Pending)]);

    // Claimed, then settled before the reader looks again: shown once, as it is now.
    let claimed = db.store.claim_deliveries("n1", T0, T0 + 60_000, 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let attempt = Attempt {
        delivery_id: claimed[0].id.clone(),
        number: 0,
        started_at: T0,
        duration_ms: 3,
        outcome: AttemptOutcome::Succeeded,
        status_code: Some(200),
        error: None,
        response_body: None,
    };
    assert!(db.store.record_attempt("n1", &attempt, NextStep::Succeeded, T0 + 5).await.unwrap());
    let (seen, end) = read_deliveries_until(&db, end, &all, 1).await;
    let seen: Vec<_> = seen.iter().map(|d| (d.id.clone(), d.status)).collect();
    assert_eq!(seen, [(claimed[0].id.clone(), DeliveryStatus::Succeeded)]);

    // A lease renewal changes no status, so it is no change of the stream.
    let claimed = db.store.claim_deliveries("n1", T0, T0 + 60_000, 1).await.unwrap();
    let (seen, end) = read_deliveries_until(&db, end, &all, 1).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].status, DeliveryStatus::InFlight);
    db.store.renew_leases("n1", &[claimed[0].id.clone()], T0 + 120_000).await.unwrap();
    assert!(db.store.stream_deliveries(end, &all, 100).await.unwrap().items.is_empty());

    let succeeded =
        DeliveryStreamFilter { status: Some(DeliveryStatus::Succeeded), ..DeliveryStreamFilter::default() };
    let page = db.store.stream_deliveries(head, &succeeded, 100).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.end, Some(end), "rows that do not match still advance the cursor");

    // Deliveries an ingest writes leased to its node are changes of the stream too, after
    // everything before them.
    let lease = FreshLease { owner: "n2".into(), lease_until: T0 + 60_000, max: 10 };
    let ingested = db.store.ingest_routed(vec![event("e3", "a.d")], T0, Some(lease)).await.unwrap();
    assert_eq!(ingested.leased.len(), 1, "the delivery was written leased");
    let (seen, _) = read_deliveries_until(&db, end, &all, 1).await;
    let seen: Vec<_> = seen.iter().map(|d| (d.event_id.to_string(), d.status)).collect();
    assert_eq!(seen, [("e3".into(), DeliveryStatus::InFlight)]);
}

#[tokio::test]
async fn an_event_of_an_open_transaction_is_not_passed_by() {
    let Some(db) = TestDb::postgres().await else { return };
    let mut side = db.postgres_side_connection().await;
    let mut open = side.begin().await.unwrap();
    // Takes a smaller `seq` and transaction id than the event committed after it.
    sqlx::query(
        "INSERT INTO events (event_id, event_type, timestamp, payload, correlation_id, source, \
         received_at, content_hash) VALUES ('early', 'a.b', 1, '{}', 'c', 'api', 1, 'h')",
    )
    .execute(&mut *open)
    .await
    .unwrap();
    db.store.ingest(vec![event("late", "a.b")], T0).await.unwrap();

    let all = EventStreamFilter::default();
    let (ids, end) = read_events(&db, StreamCursor::origin(), &all).await;
    assert!(ids.is_empty(), "the later commit waits while the earlier transaction is open: {ids:?}");
    open.commit().await.unwrap();
    let (ids, end) = read_events_until(&db, end, &all, 2).await;
    assert_eq!(ids, ["early", "late"]);
    assert!(read_events(&db, end, &all).await.0.is_empty(), "nothing twice");
}
