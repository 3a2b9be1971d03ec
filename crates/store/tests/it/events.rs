use std::collections::BTreeSet;

use switchyard_core::delivery::DeliveryStatus;
use switchyard_core::event::{Event, EventFilter, EventId, EventType, IngestOutcome, NewEvent, PublishedBy};
use switchyard_core::page::{Cursor, ListRequest};
use switchyard_core::store::Store;

use crate::support::{T0, TestDb, destination, event, subscription};

fn created(outcome: &IngestOutcome) -> &Event {
    match outcome {
        IngestOutcome::Created(event) => event,
        other => panic!("expected Created, got {other:?}"),
    }
}

/// Ingests `events` and asserts each was created, answering the stored events.
async fn ingest_new(store: &dyn Store, events: Vec<NewEvent>, now: i64) -> Vec<Event> {
    let outcomes = store.ingest(events, now).await.expect("ingest");
    outcomes.iter().map(|o| created(o).clone()).collect()
}

pub async fn ingest_stores_the_event_and_routes_deliveries(db: TestDb) {
    let store = db.store.as_ref();
    let dst = destination("orders");
    store.create_destination(&dst).await.unwrap();
    let exact = subscription(&dst.id, &["order.created"]);
    let star = subscription(&dst.id, &["order.*"]);
    let deep = subscription(&dst.id, &["order.#"]);
    let all = subscription(&dst.id, &["#"]);
    for s in [&exact, &star, &deep, &all] {
        store.create_subscription(s).await.unwrap();
    }

    let mut new = event("ord-1", "order.created");
    new.ordering_key = Some("customer-7".into());
    new.metadata.causation_id = Some("cause-1".into());
    let outcomes = store.ingest(vec![new.clone()], T0).await.unwrap();
    assert_eq!(outcomes.len(), 1);
    let stored = created(&outcomes[0]).clone();
    assert_eq!(stored.event_id, new.event_id);
    assert_eq!(stored.payload, new.payload);
    assert_eq!(stored.received_at, T0);
    assert!(stored.seq > 0);
    assert_eq!(store.get_event(&new.event_id).await.unwrap(), Some(stored));

    let deliveries = store.deliveries_of_event(&new.event_id).await.unwrap();
    let routed: BTreeSet<_> = deliveries.iter().map(|d| d.subscription_id.clone()).collect();
    let expected: BTreeSet<_> = [&exact, &star, &deep, &all].iter().map(|s| s.id.clone()).collect();
    assert_eq!(routed, expected);
    let ids: BTreeSet<_> = deliveries.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids.len(), 4, "every delivery has its own id");
    for d in &deliveries {
        assert_eq!(d.event_id, new.event_id);
        assert_eq!(d.destination_id, dst.id);
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.attempt_count, 0);
        assert_eq!(d.next_attempt_at, Some(T0));
        assert_eq!((d.created_at, d.updated_at), (T0, T0));
        assert_eq!(
            (d.lease_owner.as_deref(), d.lease_expires_at, d.last_error.as_deref()),
            (None, None, None)
        );
    }

    // A deeper type reaches only `order.#` and `#`.
    ingest_new(store, vec![event("ord-2", "order.line.added")], T0).await;
    let deliveries = store.deliveries_of_event(&EventId::parse("ord-2").unwrap()).await.unwrap();
    let routed: BTreeSet<_> = deliveries.iter().map(|d| d.subscription_id.clone()).collect();
    assert_eq!(routed, BTreeSet::from([deep.id.clone(), all.id.clone()]));
}

pub async fn disabled_and_unmatched_subscriptions_get_no_delivery(db: TestDb) {
    let store = db.store.as_ref();
    let dst = destination("d");
    store.create_destination(&dst).await.unwrap();
    let mut disabled = subscription(&dst.id, &["#"]);
    disabled.enabled = false;
    let other = subscription(&dst.id, &["invoice.*"]);
    let matching = subscription(&dst.id, &["order.created"]);
    for s in [&disabled, &other, &matching] {
        store.create_subscription(s).await.unwrap();
    }
    ingest_new(store, vec![event("e1", "order.created"), event("e2", "user.signed_up")], T0).await;
    let first = store.deliveries_of_event(&EventId::parse("e1").unwrap()).await.unwrap();
    assert_eq!(first.iter().map(|d| &d.subscription_id).collect::<Vec<_>>(), [&matching.id]);
    assert!(store.deliveries_of_event(&EventId::parse("e2").unwrap()).await.unwrap().is_empty());
}

pub async fn an_ingest_says_whether_it_created_deliveries(db: TestDb) {
    let store = db.store.as_ref();
    let dst = destination("d");
    store.create_destination(&dst).await.unwrap();
    store.create_subscription(&subscription(&dst.id, &["order.*"])).await.unwrap();

    let unrouted = store.ingest_routed(vec![event("u1", "user.signed_up")], T0, None).await.unwrap();
    assert!(!unrouted.routed);
    assert!(matches!(unrouted.outcomes[..], [IngestOutcome::Created(_)]));
    let routed = store
        .ingest_routed(vec![event("u2", "user.signed_up"), event("o1", "order.created")], T0, None)
        .await
        .unwrap();
    assert!(routed.routed, "one of the two events is routed");
    // A repeat creates nothing, whatever its type routes to.
    let repeated = store.ingest_routed(vec![event("o1", "order.created")], T0, None).await.unwrap();
    assert!(!repeated.routed);
    assert!(matches!(repeated.outcomes[..], [IngestOutcome::Duplicate(_)]));
}

pub async fn ingest_across_calls_detects_duplicates_and_conflicts(db: TestDb) {
    let store = db.store.as_ref();
    let dst = destination("d");
    store.create_destination(&dst).await.unwrap();
    store.create_subscription(&subscription(&dst.id, &["#"])).await.unwrap();

    let original = ingest_new(store, vec![event("e1", "a.b")], T0).await.remove(0);

    let again = store.ingest(vec![event("e1", "a.b")], T0 + 1_000).await.unwrap();
    assert_eq!(again, [IngestOutcome::Duplicate(original.clone())], "the stored event, first receipt time");

    let mut changed = event("e1", "a.b");
    changed.content_hash = "another-hash".into();
    changed.payload = serde_json::json!({"different": true});
    let conflict = store.ingest(vec![changed], T0 + 2_000).await.unwrap();
    assert_eq!(conflict, [IngestOutcome::Conflict(original.event_id.clone())]);

    assert_eq!(store.get_event(&original.event_id).await.unwrap(), Some(original.clone()));
    assert_eq!(store.deliveries_of_event(&original.event_id).await.unwrap().len(), 1, "no new deliveries");
}

pub async fn ingest_within_one_call_detects_duplicates_and_conflicts(db: TestDb) {
    let store = db.store.as_ref();
    let dst = destination("d");
    store.create_destination(&dst).await.unwrap();
    store.create_subscription(&subscription(&dst.id, &["#"])).await.unwrap();

    let mut conflicting = event("e1", "a.b");
    conflicting.content_hash = "other".into();
    let outcomes = store
        .ingest(vec![event("e1", "a.b"), event("e1", "a.b"), conflicting, event("e2", "a.b")], T0)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 4);
    let first = created(&outcomes[0]).clone();
    assert_eq!(outcomes[1], IngestOutcome::Duplicate(first.clone()));
    assert_eq!(outcomes[2], IngestOutcome::Conflict(first.event_id.clone()));
    let second = created(&outcomes[3]);
    assert!(second.seq > first.seq, "ingest order is kept");
    assert_eq!(store.deliveries_of_event(&first.event_id).await.unwrap().len(), 1);
    assert_eq!(store.deliveries_of_event(&second.event_id).await.unwrap().len(), 1);
}

pub async fn failed_ingest_writes_nothing(db: TestDb) {
    let store = db.store.as_ref();
    let dst = destination("d");
    store.create_destination(&dst).await.unwrap();
    store.create_subscription(&subscription(&dst.id, &["#"])).await.unwrap();
    db.break_delivery_inserts().await;

    let result = store.ingest(vec![event("e1", "a.b"), event("e2", "a.b")], T0).await;
    assert!(result.is_err(), "the injected failure surfaces: {result:?}");
    for id in ["e1", "e2"] {
        let id = EventId::parse(id).unwrap();
        assert_eq!(store.get_event(&id).await.unwrap(), None);
        assert!(store.deliveries_of_event(&id).await.unwrap().is_empty());
    }
    let listing = store.list_events(&EventFilter::default(), ListRequest::default()).await.unwrap();
    assert_eq!(listing.total, Some(0));

    // Nothing was left half-open: once repaired, the same events go in whole.
    db.repair_delivery_inserts().await;
    let events = ingest_new(store, vec![event("e1", "a.b"), event("e2", "a.b")], T0).await;
    assert_eq!(events.len(), 2);
    assert_eq!(store.deliveries_of_event(&events[1].event_id).await.unwrap().len(), 1);
}

/// Ingests `n` events in batches, cycling through three types; answers their ids in order.
async fn ingest_many(store: &dyn Store, n: usize) -> Vec<EventId> {
    let types = ["a.one", "b.two", "c.three"];
    let all: Vec<NewEvent> = (0..n).map(|i| event(&format!("ev-{i:05}"), types[i % types.len()])).collect();
    let mut ids = Vec::with_capacity(n);
    for (i, batch) in all.chunks(400).enumerate() {
        let events = ingest_new(store, batch.to_vec(), T0 + i as i64).await;
        ids.extend(events.into_iter().map(|e| e.event_id));
    }
    ids
}

/// Pages through the listing by cursor, answering every id and the number of pages.
async fn walk(store: &dyn Store, filter: &EventFilter, per_page: u32) -> (Vec<EventId>, usize) {
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = store.list_events(filter, ListRequest::After { after, per_page }).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= per_page as usize);
        assert_eq!(page.total, None, "keyset pages carry no totals");
        seen.extend(page.items.iter().map(|e| e.event_id.clone()));
        match page.next_cursor {
            Some(cursor) => {
                assert_eq!(Some(cursor), page.items.last().map(|e| Cursor::at(e.seq)));
                after = Some(cursor);
            }
            None => return (seen, pages),
        }
        assert!(pages < 10_000, "paging does not terminate");
    }
}

pub async fn keyset_paging_returns_every_event_once_in_order(db: TestDb) {
    let store = db.store.as_ref();
    let ids = ingest_many(store, 1_050).await;
    let (seen, pages) = walk(store, &EventFilter::default(), 100).await;
    assert_eq!(seen, ids);
    assert_eq!(pages, 11);

    // An exact multiple of the page size ends without an empty extra page.
    let (seen, pages) = walk(store, &EventFilter::default(), 105).await;
    assert_eq!(seen.len(), 1_050);
    assert_eq!(pages, 10);
}

pub async fn keyset_paging_honours_filters(db: TestDb) {
    let store = db.store.as_ref();
    let ids = ingest_many(store, 300).await;
    let filter =
        EventFilter { event_type: Some(EventType::parse("b.two").unwrap()), ..EventFilter::default() };
    let (seen, _) = walk(store, &filter, 7).await;
    let expected: Vec<_> = ids.iter().skip(1).step_by(3).cloned().collect();
    assert_eq!(seen, expected);
}

pub async fn numbered_pages_carry_totals_and_cursors(db: TestDb) {
    let store = db.store.as_ref();
    let ids = ingest_many(store, 25).await;
    let all = EventFilter::default();

    let first = store.list_events(&all, ListRequest::Page { page: 1, per_page: 10 }).await.unwrap();
    assert_eq!(first.total, Some(25));
    assert_eq!(first.items.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>(), ids[..10]);
    assert_eq!(first.next_cursor, Some(Cursor::at(first.items[9].seq)));

    // The cursor of a numbered page continues where it ended.
    let next =
        store.list_events(&all, ListRequest::After { after: first.next_cursor, per_page: 10 }).await.unwrap();
    assert_eq!(next.items.first().map(|e| &e.event_id), Some(&ids[10]));

    let last = store.list_events(&all, ListRequest::Page { page: 3, per_page: 10 }).await.unwrap();
    assert_eq!(last.items.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>(), ids[20..]);
    assert_eq!((last.total, last.next_cursor), (Some(25), None));

    let beyond = store.list_events(&all, ListRequest::Page { page: 9, per_page: 10 }).await.unwrap();
    assert!(beyond.items.is_empty());
    assert_eq!((beyond.total, beyond.next_cursor), (Some(25), None));

    let typed =
        EventFilter { event_type: Some(EventType::parse("a.one").unwrap()), ..EventFilter::default() };
    let page = store.list_events(&typed, ListRequest::Page { page: 2, per_page: 5 }).await.unwrap();
    assert_eq!(page.total, Some(9));
    assert_eq!(page.items.len(), 4);
    assert!(page.items.iter().all(|e| e.event_type.as_str() == "a.one"));
    assert_eq!(page.next_cursor, None);
}

pub async fn event_filters_bound_time_and_match_exactly(db: TestDb) {
    let store = db.store.as_ref();
    for (i, now) in [T0, T0 + 10, T0 + 20, T0 + 30].into_iter().enumerate() {
        let mut e = event(&format!("t{i}"), "order.created");
        if i % 2 == 0 {
            e.metadata.correlation_id = "flow-1".into();
        }
        ingest_new(store, vec![e], now).await;
    }
    ingest_new(store, vec![event("other", "order.created.v2")], T0 + 40).await;

    let ids = |filter: EventFilter| async move {
        let listing = store.list_events(&filter, ListRequest::Page { page: 1, per_page: 100 }).await.unwrap();
        assert_eq!(listing.total, Some(listing.items.len() as u64));
        listing.items.into_iter().map(|e| e.event_id.to_string()).collect::<Vec<_>>()
    };

    let window = EventFilter { since: Some(T0 + 10), until: Some(T0 + 30), ..EventFilter::default() };
    assert_eq!(ids(window).await, ["t1", "t2"], "since is inclusive, until exclusive");
    let flow = EventFilter { correlation_id: Some("flow-1".into()), ..EventFilter::default() };
    assert_eq!(ids(flow).await, ["t0", "t2"]);
    let exact = EventFilter {
        event_type: Some(EventType::parse("order.created").unwrap()),
        ..EventFilter::default()
    };
    assert_eq!(ids(exact).await, ["t0", "t1", "t2", "t3"], "types match exactly, not by prefix");
    let combined =
        EventFilter { correlation_id: Some("flow-1".into()), since: Some(T0 + 1), ..EventFilter::default() };
    assert_eq!(ids(combined).await, ["t2"]);
}

pub async fn a_large_call_keeps_request_order_and_finds_repeats_across_its_chunks(db: TestDb) {
    let store = db.store.as_ref();
    let dst = destination("d");
    store.create_destination(&dst).await.unwrap();
    store.create_subscription(&subscription(&dst.id, &["#"])).await.unwrap();
    let mut events: Vec<NewEvent> = (0..250).map(|i| event(&format!("big-{i:03}"), "a.b")).collect();
    // Repeats far from the first of their id, where a backend inserting rows in chunks would
    // have them in different statements.
    events[150] = event("big-010", "a.b");
    events[220] = event("big-030", "a.b");
    events[220].content_hash = "changed".into();

    let outcomes = store.ingest(events, T0).await.unwrap();
    assert_eq!(outcomes.len(), 250);
    let mut last_seq = 0;
    for (i, outcome) in outcomes.iter().enumerate() {
        match (i, outcome) {
            (150, IngestOutcome::Duplicate(e)) => assert_eq!(e.event_id.as_str(), "big-010"),
            (220, IngestOutcome::Conflict(id)) => assert_eq!(id.as_str(), "big-030"),
            (150 | 220, other) => panic!("{i}: {other:?}"),
            (_, IngestOutcome::Created(e)) => {
                assert_eq!(e.event_id.as_str(), format!("big-{i:03}"));
                assert!(e.seq > last_seq, "{i}: sequence numbers follow request order");
                last_seq = e.seq;
            }
            (_, other) => panic!("{i}: {other:?}"),
        }
    }
    let listing = store.list_events(&EventFilter::default(), ListRequest::default()).await.unwrap();
    assert_eq!(listing.total, Some(248));
    let routed = store.deliveries_of_event(&EventId::parse("big-249").unwrap()).await.unwrap();
    assert_eq!(routed.len(), 1);
}

pub async fn the_publisher_round_trips_with_its_request_id(db: TestDb) {
    let store = db.store.as_ref();
    // Enough events for a backend inserting in chunks to write them in several statements.
    let events: Vec<NewEvent> = (0..250)
        .map(|i| {
            let mut new = event(&format!("pub-{i:03}"), "a.b");
            new.publisher = match i % 3 {
                0 => Some(format!("key:key_{i}")),
                1 => Some(format!("jwt:https://idp.example|user-{i}")),
                _ => None,
            };
            if i % 5 == 0 {
                new.metadata.request_id = None;
            }
            new
        })
        .collect();
    let expected: Vec<Option<PublishedBy>> = events
        .iter()
        .map(|new| PublishedBy::of(new.publisher.clone(), new.metadata.request_id.as_deref()))
        .collect();
    let stored = ingest_new(store, events, T0).await;
    for (i, (event, expected)) in stored.iter().zip(&expected).enumerate() {
        assert_eq!(&event.published_by, expected, "{i}: as ingested");
        let read = store.get_event(&event.event_id).await.unwrap().expect("stored");
        assert_eq!(&read.published_by, expected, "{i}: as read");
        assert_eq!(read.metadata.request_id, event.metadata.request_id, "{i}");
    }
    assert_eq!(
        expected[3],
        Some(PublishedBy { principal: "key:key_3".into(), request_id: Some("req-pub-003".into()) })
    );
    assert_eq!(expected[0].as_ref().map(|p| p.request_id.clone()), Some(None), "no request id");
    assert_eq!(expected[2], None, "no principal: no publisher, whatever the request id");

    let listing = store.list_events(&EventFilter::default(), ListRequest::default()).await.unwrap();
    let listed: Vec<Option<PublishedBy>> = listing.items.into_iter().map(|e| e.published_by).collect();
    assert_eq!(listed, expected[..listed.len()]);

    // The same event again from someone else is a duplicate: the event keeps its publisher.
    let mut again = event("pub-001", "a.b");
    again.publisher = Some("key:key_other".into());
    let outcomes = store.ingest(vec![again], T0 + 1).await.unwrap();
    match &outcomes[..] {
        [IngestOutcome::Duplicate(stored)] => assert_eq!(stored.published_by, expected[1]),
        other => panic!("expected a duplicate, got {other:?}"),
    }
}

pub async fn the_links_of_a_flow_come_in_ingest_order_up_to_the_limit(db: TestDb) {
    let store = db.store.as_ref();
    let in_flow = |id: &str, flow: &str, cause: Option<&str>| {
        let mut new = event(id, "order.step");
        new.metadata.correlation_id = flow.to_owned();
        new.metadata.causation_id = cause.map(str::to_owned);
        new
    };
    store.ingest(vec![in_flow("a1", "a", None), in_flow("b1", "b", None)], T0).await.unwrap();
    store.ingest(vec![in_flow("a2", "a", Some("a1")), in_flow("a3", "a", Some("a2"))], T0 + 5).await.unwrap();

    let links = store.links_of_flow("a", 10).await.unwrap();
    let ids: Vec<&str> = links.iter().map(|l| l.event_id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2", "a3"], "only the flow's events, in ingest order");
    assert_eq!(links[1].causation_id.as_deref(), Some("a1"));
    assert_eq!(links[1].event_type.as_str(), "order.step");
    assert_eq!((links[1].timestamp, links[1].received_at), (T0 - 5, T0 + 5));
    assert_eq!(store.links_of_flow("a", 2).await.unwrap().len(), 2, "the limit holds");
    assert!(store.links_of_flow("nobody", 10).await.unwrap().is_empty());
}

/// The request headers a webhook source forwards are kept with the event, and read back
/// wherever the event is; an event without has none.
pub async fn forwarded_headers_round_trip_and_absent_ones_stay_absent(db: TestDb) {
    let store = db.store.as_ref();
    let headers: serde_json::Map<String, serde_json::Value> = serde_json::Map::from_iter([
        ("x-github-event".to_owned(), serde_json::json!("push")),
        ("x-github-delivery".to_owned(), serde_json::json!("72d3162e-cc78-11e3-81ab-4c9367dc0958")),
    ]);
    // Enough events for a backend inserting in chunks to write them in several statements.
    let events: Vec<NewEvent> = (0..150)
        .map(|i| {
            let mut new = event(&format!("hdr-{i:03}"), "a.b");
            if i % 2 == 0 {
                new.metadata.headers = Some(headers.clone());
            }
            new
        })
        .collect();
    let expected: Vec<_> = events.iter().map(|new| new.metadata.headers.clone()).collect();
    let stored = ingest_new(store, events, T0).await;
    for (i, (event, expected)) in stored.iter().zip(&expected).enumerate() {
        assert_eq!(&event.metadata.headers, expected, "{i}: as ingested");
        let read = store.get_event(&event.event_id).await.unwrap().expect("stored");
        assert_eq!(&read.metadata.headers, expected, "{i}: as read");
        assert_eq!(&read, event, "{i}");
    }
    assert_eq!(
        stored[0].metadata.headers.as_ref().and_then(|h| h.get("x-github-event")),
        Some(&"push".into())
    );
    assert_eq!(stored[1].metadata.headers, None);

    let listing = store.list_events(&EventFilter::default(), ListRequest::default()).await.unwrap();
    let listed: Vec<_> = listing.items.into_iter().map(|e| e.metadata.headers).collect();
    assert_eq!(listed, expected[..listed.len()]);

    // Headers are not content: the same event again with other headers is a duplicate, and
    // the stored event keeps its own.
    let mut again = event("hdr-000", "a.b");
    again.metadata.headers = Some(serde_json::Map::from_iter([("x-github-event".to_owned(), "ping".into())]));
    match &store.ingest(vec![again], T0 + 1).await.unwrap()[..] {
        [IngestOutcome::Duplicate(stored)] => assert_eq!(stored.metadata.headers, expected[0]),
        other => panic!("expected a duplicate, got {other:?}"),
    }

    // In the database: a JSON object, or NULL.
    let nulls = db.read_outside("SELECT event_id FROM events WHERE headers IS NULL").await;
    assert_eq!(nulls.len(), 75);
    let kept = db.read_outside("SELECT headers FROM events WHERE event_id = 'hdr-000'").await;
    let kept: serde_json::Value = serde_json::from_str(&kept[0]).expect("JSON text");
    assert_eq!(kept, serde_json::Value::Object(headers));
}
