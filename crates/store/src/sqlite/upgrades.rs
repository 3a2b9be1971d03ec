//! Migrations that rebuild a table keep what the table held.

use serde_json::{Map, json};
use switchyard_core::delivery::{Attempt, AttemptOutcome, NextStep};
use switchyard_core::destination::{CircuitBreakerPolicy, Destination, DestinationKind, RetryPolicy};
use switchyard_core::event::{EventId, EventMetadata, EventSource, EventType, NewEvent};
use switchyard_core::id::{DestinationId, SubscriptionId};
use switchyard_core::pattern::EventTypePattern;
use switchyard_core::store::{DeliveryStore, DestinationStore, EventStore, FreshLease, SubscriptionStore};
use switchyard_core::subscription::{Ordering, OrderingOnDead, Subscription};

use super::{MIGRATOR, SqliteStore};
use crate::seal::MasterKeys;

const T0: i64 = 1_700_000_000_000;

fn destination() -> Destination {
    Destination {
        id: DestinationId::generate(),
        name: "sink".into(),
        kind: DestinationKind::Http,
        config: json!({"url": "http://sink.invalid/hook", "method": "POST"}),
        secrets: Map::new(),
        timeout_ms: 30_000,
        connect_timeout_ms: 5_000,
        retry: RetryPolicy::default(),
        rate_limit: None,
        circuit_breaker: CircuitBreakerPolicy::default(),
        enabled: true,
        version: 1,
        created_at: T0,
        updated_at: T0,
    }
}

fn subscription(destination: &Destination) -> Subscription {
    Subscription {
        id: SubscriptionId::generate(),
        name: "all".into(),
        destination_id: destination.id.clone(),
        event_types: vec![EventTypePattern::parse("#").expect("pattern")],
        filter: None,
        transform: None,
        ordering: Ordering::None,
        ordering_on_dead: OrderingOnDead::Skip,
        enabled: true,
        version: 1,
        created_at: T0,
        updated_at: T0,
    }
}

fn event() -> NewEvent {
    NewEvent {
        event_id: EventId::parse("evt-upgrade").expect("id"),
        event_type: EventType::parse("order.created").expect("type"),
        timestamp: T0,
        payload: json!({"order": 1}),
        metadata: EventMetadata {
            correlation_id: "corr".into(),
            causation_id: None,
            traceparent: None,
            request_id: None,
            headers: None,
        },
        ordering_key: None,
        source: EventSource::api(),
        publisher: None,
        content_hash: "hash".into(),
    }
}

#[tokio::test]
async fn attempts_recorded_before_the_rebuild_survive_it_without_a_rowid() {
    let store =
        SqliteStore::connect("sqlite::memory:", 1, &MasterKeys::generated()).await.expect("a database");
    MIGRATOR.run_to(17, &store.writer).await.expect("the schema before the attempts rebuild");
    let destination = destination();
    store.create_destination(&destination).await.expect("destination");
    store.create_subscription(&subscription(&destination)).await.expect("subscription");
    let lease = FreshLease { owner: "node".into(), lease_until: T0 + 60_000, max: 10 };
    let ingested = store.ingest_routed(vec![event()], T0, Some(lease)).await.expect("ingest");
    let delivery = ingested.leased.first().expect("a leased delivery").id.clone();
    let attempt = Attempt {
        delivery_id: delivery.clone(),
        number: 1,
        started_at: T0 + 5,
        duration_ms: 12,
        outcome: AttemptOutcome::Retryable,
        status_code: Some(503),
        error: Some("HTTP 503 Service Unavailable".into()),
        response_body: Some("try later".into()),
    };
    let recorded = store
        .record_attempt_observed("node", &attempt, NextStep::RetryAt(T0 + 1_000), T0 + 20)
        .await
        .expect("record");
    assert!(recorded.settled);

    store.migrate().await.expect("the rest of the migrations");

    assert_eq!(store.attempts_of(&delivery).await.expect("attempts"), vec![attempt]);
    let table: String = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = 'attempts'")
        .fetch_one(&store.writer)
        .await
        .expect("schema");
    assert!(table.ends_with("WITHOUT ROWID"), "{table}");
    let rowid = sqlx::query("SELECT rowid FROM attempts").fetch_all(&store.writer).await;
    assert!(rowid.is_err(), "the table has no rowid");
}
