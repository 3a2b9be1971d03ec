use serde_json::json;
use switchyard_core::destination::{Destination, DestinationKind, RateLimit};
use switchyard_core::event::EventType;
use switchyard_core::event_type::EventTypeDefinition;
use switchyard_core::id::{DestinationId, SubscriptionId};
use switchyard_core::page::{Cursor, ListRequest};
use switchyard_core::pattern::EventTypePattern;
use switchyard_core::store::StoreError;
use switchyard_core::subscription::{Ordering, OrderingOnDead, Subscription, SubscriptionFilter};

use crate::support::{T0, TestDb, destination, subscription};

pub async fn destinations_round_trip_and_update_optimistically(db: TestDb) {
    let store = db.store.as_ref();
    let mut dst = destination("billing");
    dst.rate_limit = Some(RateLimit { per_second: 10, burst: Some(20) });
    dst.retry.max_attempts = 3;
    store.create_destination(&dst).await.unwrap();
    assert_eq!(store.get_destination(&dst.id).await.unwrap(), Some(dst.clone()));

    match store.create_destination(&dst).await {
        Err(StoreError::Conflict(message)) => {
            assert!(message.contains("already exists"), "{message}")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    let mut changed = dst.clone();
    changed.name = "billing v2".into();
    changed.kind = DestinationKind::Nats;
    changed.config = json!({"url": "nats://localhost:4222", "subject": "events.{event_type}"});
    changed.secrets.clear();
    changed.rate_limit = None;
    changed.enabled = false;
    changed.updated_at = T0 + 500;
    changed.version = 99; // ignored: the store counts versions
    let updated = store.update_destination(&changed, 1).await.unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(updated.updated_at, T0 + 500);
    assert_eq!(updated.created_at, T0);
    assert_eq!(updated, Destination { version: 2, ..changed.clone() });
    assert_eq!(store.get_destination(&dst.id).await.unwrap(), Some(updated.clone()));

    match store.update_destination(&changed, 1).await {
        Err(StoreError::VersionMismatch { current }) => assert_eq!(current, 2),
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    let mut missing = changed.clone();
    missing.id = DestinationId::generate();
    assert!(matches!(store.update_destination(&missing, 1).await, Err(StoreError::NotFound("destination"))));

    assert!(store.delete_destination(&dst.id).await.unwrap());
    assert!(!store.delete_destination(&dst.id).await.unwrap(), "a second delete finds nothing");
    assert_eq!(store.get_destination(&dst.id).await.unwrap(), None);
}

pub async fn destination_delete_is_refused_while_subscribed(db: TestDb) {
    let store = db.store.as_ref();
    let dst = destination("d");
    store.create_destination(&dst).await.unwrap();
    let first = subscription(&dst.id, &["a.*"]);
    let second = subscription(&dst.id, &["b.*"]);
    store.create_subscription(&first).await.unwrap();
    store.create_subscription(&second).await.unwrap();

    match store.delete_destination(&dst.id).await {
        Err(StoreError::Conflict(message)) => {
            assert!(message.contains("2 subscription(s)"), "{message}");
            assert!(message.contains(dst.id.as_str()), "{message}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(store.get_destination(&dst.id).await.unwrap().is_some());

    assert!(store.delete_subscription(&first.id).await.unwrap());
    assert!(!store.delete_subscription(&first.id).await.unwrap());
    assert!(store.delete_destination(&dst.id).await.is_err(), "one subscription is left");
    assert!(store.delete_subscription(&second.id).await.unwrap());
    assert!(store.delete_destination(&dst.id).await.unwrap());
}

pub async fn destinations_list_in_creation_order_with_totals(db: TestDb) {
    let store = db.store.as_ref();
    let mut created = Vec::new();
    for i in 0..5 {
        let mut dst = destination(&format!("d{i}"));
        // Creation time orders the list, not the id or the name.
        dst.created_at = T0 + 100 - i;
        store.create_destination(&dst).await.unwrap();
        created.push(dst);
    }
    created.reverse();
    let names = |items: &[Destination]| items.iter().map(|d| d.name.clone()).collect::<Vec<_>>();

    let page = store.list_destinations(ListRequest::Page { page: 1, per_page: 2 }).await.unwrap();
    assert_eq!(names(&page.items), names(&created[..2]));
    assert_eq!((page.total, page.next_cursor), (Some(5), None));
    let page = store.list_destinations(ListRequest::Page { page: 3, per_page: 2 }).await.unwrap();
    assert_eq!(names(&page.items), names(&created[4..]));
    assert_eq!(page.total, Some(5));

    // Resources without cursors serve a cursor request as their first page.
    let page = store
        .list_destinations(ListRequest::After { after: Some(Cursor::at(3)), per_page: 3 })
        .await
        .unwrap();
    assert_eq!(names(&page.items), names(&created[..3]));
}

pub async fn subscriptions_need_an_existing_destination(db: TestDb) {
    let store = db.store.as_ref();
    let ghost = DestinationId::generate();
    let orphan = subscription(&ghost, &["#"]);
    match store.create_subscription(&orphan).await {
        Err(StoreError::InvalidReference { field, message }) => {
            assert_eq!(field, "destination_id");
            assert!(message.contains(ghost.as_str()), "{message}");
        }
        other => panic!("expected an invalid reference, got {other:?}"),
    }
    assert_eq!(store.get_subscription(&orphan.id).await.unwrap(), None);

    let dst = destination("d");
    store.create_destination(&dst).await.unwrap();
    let sub = subscription(&dst.id, &["#"]);
    store.create_subscription(&sub).await.unwrap();
    let mut moved = sub.clone();
    moved.destination_id = ghost.clone();
    match store.update_subscription(&moved, 1).await {
        Err(StoreError::InvalidReference { field, .. }) => assert_eq!(field, "destination_id"),
        other => panic!("expected an invalid reference, got {other:?}"),
    }
    assert_eq!(store.get_subscription(&sub.id).await.unwrap(), Some(sub.clone()), "unchanged");
}

pub async fn subscriptions_round_trip_update_and_filter(db: TestDb) {
    let store = db.store.as_ref();
    let (a, b) = (destination("a"), destination("b"));
    store.create_destination(&a).await.unwrap();
    store.create_destination(&b).await.unwrap();

    let mut sub = subscription(&a.id, &["order.*", "invoice.#"]);
    sub.filter = Some(".event.payload.total > 10".into());
    sub.transform = Some("{id: .event.event_id}".into());
    sub.ordering = Ordering::Key;
    sub.ordering_on_dead = OrderingOnDead::Block;
    store.create_subscription(&sub).await.unwrap();
    assert_eq!(store.get_subscription(&sub.id).await.unwrap(), Some(sub.clone()));
    assert!(matches!(store.create_subscription(&sub).await, Err(StoreError::Conflict(_))));

    for i in 0..3 {
        let mut other = subscription(&b.id, &["#"]);
        other.created_at = T0 + 1 + i;
        store.create_subscription(&other).await.unwrap();
    }

    let mut changed = sub.clone();
    changed.destination_id = b.id.clone();
    changed.event_types = vec![EventTypePattern::parse("#").unwrap()];
    changed.filter = None;
    changed.ordering = Ordering::None;
    changed.enabled = false;
    changed.updated_at = T0 + 9;
    let updated = store.update_subscription(&changed, 1).await.unwrap();
    assert_eq!(updated, Subscription { version: 2, ..changed.clone() });
    assert!(matches!(
        store.update_subscription(&changed, 1).await,
        Err(StoreError::VersionMismatch { current: 2 })
    ));
    let mut missing = changed.clone();
    missing.id = SubscriptionId::generate();
    assert!(matches!(
        store.update_subscription(&missing, 1).await,
        Err(StoreError::NotFound("subscription"))
    ));

    let of_b = SubscriptionFilter { destination_id: Some(b.id.clone()) };
    let page = store.list_subscriptions(&of_b, ListRequest::Page { page: 1, per_page: 3 }).await.unwrap();
    assert_eq!(page.total, Some(4));
    assert_eq!(page.items.first().map(|s| &s.id), Some(&sub.id), "oldest first");
    let of_a = SubscriptionFilter { destination_id: Some(a.id.clone()) };
    let page = store.list_subscriptions(&of_a, ListRequest::default()).await.unwrap();
    assert_eq!((page.items.len(), page.total), (0, Some(0)));
    let page = store
        .list_subscriptions(&SubscriptionFilter::default(), ListRequest::Page { page: 2, per_page: 3 })
        .await
        .unwrap();
    assert_eq!((page.items.len(), page.total), (1, Some(4)));
}

fn event_type(name: &str) -> EventTypeDefinition {
    EventTypeDefinition {
        name: EventType::parse(name).unwrap(),
        description: Some(format!("when {name} happens")),
        schema: Some(json!({"type": "object", "required": ["id"]})),
        deprecated: false,
        version: 1,
        created_at: T0,
        updated_at: T0,
    }
}

pub async fn event_types_round_trip_update_and_list_by_name(db: TestDb) {
    let store = db.store.as_ref();
    for name in ["order.shipped", "invoice.paid", "order.created"] {
        store.create_event_type(&event_type(name)).await.unwrap();
    }
    let created = event_type("order.created");
    assert_eq!(store.get_event_type(&created.name).await.unwrap(), Some(created.clone()));
    match store.create_event_type(&created).await {
        Err(StoreError::Conflict(message)) => {
            assert!(message.contains("order.created"), "{message}")
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    let page = store.list_event_types(ListRequest::Page { page: 1, per_page: 2 }).await.unwrap();
    let names: Vec<_> = page.items.iter().map(|t| t.name.to_string()).collect();
    assert_eq!(names, ["invoice.paid", "order.created"]);
    assert_eq!(page.total, Some(3));

    let mut changed = created.clone();
    changed.description = None;
    changed.schema = None;
    changed.deprecated = true;
    changed.updated_at = T0 + 1;
    let updated = store.update_event_type(&changed, 1).await.unwrap();
    assert_eq!(updated, EventTypeDefinition { version: 2, ..changed.clone() });
    assert!(matches!(
        store.update_event_type(&changed, 1).await,
        Err(StoreError::VersionMismatch { current: 2 })
    ));
    let unknown = event_type("never.registered");
    assert!(matches!(store.update_event_type(&unknown, 1).await, Err(StoreError::NotFound("event type"))));

    assert!(store.delete_event_type(&created.name).await.unwrap());
    assert!(!store.delete_event_type(&created.name).await.unwrap());
    assert_eq!(store.get_event_type(&created.name).await.unwrap(), None);
}
