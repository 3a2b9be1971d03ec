//! The engine's upkeep task (`switchyard_engine::retention::run`) against a real SQLite store:
//! what is past its retention goes, what is not stays, and outcomes held in memory reach the
//! flow record, as another node reads it, without another attempt.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_core::api_key::Role;
use switchyard_core::audit::{AuditEntry, AuditEntryId, AuditFilter, AuditOutcome, AuditResource};
use switchyard_core::delivery::{Attempt, AttemptOutcome, NextStep};
use switchyard_core::destination::{CircuitBreakerPolicy, Destination, DestinationKind, RetryPolicy};
use switchyard_core::event::{EventId, EventMetadata, EventSource, EventType, NewEvent};
use switchyard_core::id::{DestinationId, SubscriptionId};
use switchyard_core::page::ListRequest;
use switchyard_core::pattern::EventTypePattern;
use switchyard_core::store::{IDEMPOTENCY_RETENTION_MS, IdempotencyClaim, Store};
use switchyard_core::subscription::{Ordering, OrderingOnDead, Subscription};
use switchyard_core::time::{Millis, now_millis};
use switchyard_engine::EngineSettings;
use switchyard_engine::retention::run;
use switchyard_engine::shutdown;
use switchyard_store::{Database, DatabaseOptions, MasterKeys};

const DEADLINE: Duration = Duration::from_secs(10);
const DAY_MS: Millis = 86_400_000;

async fn open(url: &str, keys: &MasterKeys) -> Database {
    let options =
        DatabaseOptions { url: url.to_owned(), master_keys: keys.clone(), ..DatabaseOptions::default() };
    switchyard_store::connect(&options).await.expect("the test database")
}

/// Polls `check` until it holds, failing after [`DEADLINE`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < DEADLINE, "{what}: not within {DEADLINE:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn audit_entry(request_id: &str, at: Millis) -> AuditEntry {
    AuditEntry {
        id: AuditEntryId::generate(),
        at,
        actor: "key_a".into(),
        role: Role::Admin,
        action: "destination.create".into(),
        method: "POST".into(),
        route: "/v1/destinations".into(),
        resource: AuditResource { kind: "destination".into(), id: None },
        request_id: request_id.into(),
        outcome: AuditOutcome::of_status(201),
        seq: 0,
    }
}

async fn audit_request_ids(store: &dyn Store) -> Vec<String> {
    let listing = store.list_audit_log(&AuditFilter::default(), ListRequest::default()).await.expect("list");
    listing.items.into_iter().map(|entry| entry.request_id).collect()
}

/// Whether `key` is still stored: a claim that forgets nothing on the way finds it.
async fn idempotency_key_kept(store: &dyn Store, key: &str) -> bool {
    let claim = store.claim_idempotency_key("s", key, "h", now_millis(), 0, 0).await.expect("claim");
    if claim == IdempotencyClaim::Claimed {
        store.release_idempotency_key("s", key, now_millis()).await.expect("release");
        return false;
    }
    true
}

fn destination() -> Destination {
    Destination {
        id: DestinationId::generate(),
        name: "quiet".into(),
        kind: DestinationKind::Http,
        config: json!({"url": "https://quiet.invalid/hook"}),
        secrets: serde_json::Map::new(),
        timeout_ms: 1_000,
        connect_timeout_ms: 1_000,
        retry: RetryPolicy::default(),
        rate_limit: None,
        circuit_breaker: CircuitBreakerPolicy::default(),
        enabled: true,
        version: 1,
        created_at: 0,
        updated_at: 0,
    }
}

fn subscription(destination: &DestinationId) -> Subscription {
    Subscription {
        id: SubscriptionId::generate(),
        name: "all".into(),
        destination_id: destination.clone(),
        event_types: vec![EventTypePattern::parse("#").expect("a pattern")],
        filter: None,
        transform: None,
        ordering: Ordering::None,
        ordering_on_dead: OrderingOnDead::Skip,
        enabled: true,
        version: 1,
        created_at: 0,
        updated_at: 0,
    }
}

fn event(id: &str, now: Millis) -> NewEvent {
    NewEvent {
        event_id: EventId::parse(id).expect("an event id"),
        event_type: EventType::parse("order.created").expect("an event type"),
        timestamp: now,
        payload: json!({}),
        metadata: EventMetadata {
            correlation_id: id.into(),
            causation_id: None,
            traceparent: None,
            request_id: None,
            headers: None,
        },
        ordering_key: None,
        source: EventSource::api(),
        publisher: None,
        content_hash: format!("hash-{id}"),
    }
}

/// Delivers `count` events to `dst` with success, recorded now: the first outcome creates the
/// flow record, the others are held in memory.
async fn succeed(store: &dyn Store, count: usize) {
    let now = now_millis();
    let events = (0..count).map(|n| event(&format!("e{n}"), now)).collect();
    store.ingest(events, now).await.expect("ingest");
    let claimed = store.claim_deliveries("node", now, now + 60_000, 100).await.expect("claim");
    assert_eq!(claimed.len(), count);
    for delivery in claimed {
        let attempt = Attempt {
            delivery_id: delivery.id.clone(),
            number: 0,
            started_at: now,
            duration_ms: 1,
            outcome: AttemptOutcome::Succeeded,
            status_code: Some(200),
            error: None,
            response_body: None,
        };
        let recorded = store.record_attempt("node", &attempt, NextStep::Succeeded, now_millis()).await;
        assert!(recorded.expect("record"), "the lease is held");
    }
}

async fn succeeded_in_record(store: &dyn Store, dst: &Destination) -> u64 {
    let flow = store.destination_flow(&dst.id).await.expect("read").expect("a flow record");
    flow.outcomes.totals(dst.circuit_breaker.window_ms, now_millis()).succeeded
}

#[tokio::test]
async fn the_upkeep_prunes_past_retention_and_writes_held_outcomes() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("switchyard.db").display());
    let keys = MasterKeys::generated();
    let database = open(&url, &keys).await;
    database.migrate().await.expect("migrate");
    let store = database.store();
    let other_node = open(&url, &keys).await.store();

    let now = now_millis();
    let settings =
        EngineSettings { audit_retention_days: 30, prune_interval_ms: 1_000, ..EngineSettings::default() };
    let audit: Vec<_> = [("older", now - 31 * DAY_MS), ("recent", now - 29 * DAY_MS)]
        .map(|(id, at)| audit_entry(id, at))
        .into();
    store.append_audit_entries(&audit).await.expect("append");
    for (key, at) in [("older", now - IDEMPOTENCY_RETENTION_MS - 60_000), ("recent", now - 60_000)] {
        store.claim_idempotency_key("s", key, "h", at, 0, 0).await.expect("claim");
    }
    let dst = destination();
    store.create_destination(&dst).await.expect("destination");
    store.create_subscription(&subscription(&dst.id)).await.expect("subscription");
    succeed(store.as_ref(), 3).await;
    assert_eq!(succeeded_in_record(other_node.as_ref(), &dst).await, 1, "two are held");

    let (trigger, stopping) = shutdown::channel();
    let upkeep = tokio::spawn(run(store.clone(), settings, stopping));
    eventually("held outcomes reach the record", || async {
        succeeded_in_record(other_node.as_ref(), &dst).await == 3
    })
    .await;
    eventually("old audit entries go", || async { audit_request_ids(store.as_ref()).await == ["recent"] })
        .await;
    eventually("old idempotency keys go", || async { !idempotency_key_kept(store.as_ref(), "older").await })
        .await;
    assert!(idempotency_key_kept(store.as_ref(), "recent").await, "a key within its day stays");
    assert_eq!(succeeded_in_record(store.as_ref(), &dst).await, 3, "none counted twice");

    trigger.trigger();
    tokio::time::timeout(DEADLINE, upkeep).await.expect("stops on shutdown").expect("no panic");
}
