//! The store's share of the delivery path, without HTTP: `tasks` concurrent callers (32) each
//! publish one event routed to one subscription (its delivery written leased, as the fast
//! path does) and record its successful attempt, `rounds` times (600), on a fresh SQLite file
//! (WAL, `synchronous = FULL`). Prints the rate, the process's CPU time per event (all its
//! threads) and the bytes it wrote per event (the WAL's frames and the checkpoints' pages).
//! `cargo run --release -p switchyard-store --example write_path [tasks] [rounds] [ids]`.
//!
//! `ids` shapes the event and correlation ids, which three indexes are keyed by: `spread`
//! (the default: `evt-{task}-{round}`, as many insertion points as tasks), `sequential` (one
//! counter, every insert at the end) or `random` (128 random bits, as producers using UUIDv4
//! send).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use serde_json::{Map, json};
use switchyard_core::delivery::{Attempt, AttemptOutcome, NextStep};
use switchyard_core::destination::{CircuitBreakerPolicy, Destination, DestinationKind, RetryPolicy};
use switchyard_core::event::{EventId, EventMetadata, EventSource, EventType, NewEvent};
use switchyard_core::id::{DestinationId, SubscriptionId};
use switchyard_core::pattern::EventTypePattern;
use switchyard_core::store::{FreshLease, Store};
use switchyard_core::subscription::{Ordering, OrderingOnDead, Subscription};
use switchyard_core::time::now_millis;
use switchyard_store::{DatabaseOptions, MasterKeys, connect};

/// Bytes this process handed to `write` and `pwrite` so far (`wchar` of `/proc/self/io`).
fn written_bytes() -> f64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("io");
    let line = io.lines().find(|l| l.starts_with("wchar:")).expect("wchar");
    line[6..].trim().parse().unwrap()
}

/// User + system CPU time of every thread of this process so far (`/proc/self/stat`, in
/// clock ticks of 1/100 s: `USER_HZ` on Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let fields: Vec<&str> = stat.rsplit(") ").next().expect("fields").split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// How the events' ids are made (see the module's comment).
#[derive(Clone, Copy)]
enum Ids {
    Spread,
    Sequential,
    Random,
}

impl Ids {
    fn parse(name: &str) -> Ids {
        match name {
            "spread" => Ids::Spread,
            "sequential" => Ids::Sequential,
            "random" => Ids::Random,
            other => panic!("ids: spread, sequential or random, not {other:?}"),
        }
    }

    fn make(self, task: usize, round: usize, counter: &AtomicU64) -> String {
        match self {
            Ids::Spread => format!("evt-{task}-{round}"),
            Ids::Sequential => format!("evt-{:012}", counter.fetch_add(1, Relaxed)),
            Ids::Random => format!("evt-{:032x}", rand::random::<u128>()),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let tasks: usize = args.next().map_or(32, |a| a.parse().unwrap());
    let rounds: usize = args.next().map_or(600, |a| a.parse().unwrap());
    let ids = Ids::parse(args.next().as_deref().unwrap_or("spread"));
    let counter = Arc::new(AtomicU64::new(0));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let options = DatabaseOptions {
        url,
        max_connections: 4,
        master_keys: MasterKeys::generated(),
        ..DatabaseOptions::default()
    };
    let db = connect(&options).await.unwrap();
    db.migrate().await.unwrap();
    let store: Arc<dyn Store> = db.store();
    let now = now_millis();
    let destination = Destination {
        id: DestinationId::generate(),
        name: "sink".into(),
        kind: DestinationKind::Http,
        config: json!({"url": "http://127.0.0.1:9/hook", "method": "POST"}),
        secrets: Map::from_iter([("signing_secret".to_owned(), json!("whsec_c2VjcmV0"))]),
        timeout_ms: 30_000,
        connect_timeout_ms: 5_000,
        retry: RetryPolicy::default(),
        rate_limit: None,
        circuit_breaker: CircuitBreakerPolicy::default(),
        enabled: true,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    store.create_destination(&destination).await.unwrap();
    let subscription = Subscription {
        id: SubscriptionId::generate(),
        name: "all".into(),
        destination_id: destination.id.clone(),
        event_types: vec![EventTypePattern::parse("bench.*").unwrap()],
        filter: None,
        transform: None,
        ordering: Ordering::None,
        ordering_on_dead: OrderingOnDead::Skip,
        enabled: true,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    store.create_subscription(&subscription).await.unwrap();

    let (cpu, written, clock) = (cpu_seconds(), written_bytes(), Instant::now());
    let mut workers = tokio::task::JoinSet::new();
    for task in 0..tasks {
        let (store, counter) = (store.clone(), counter.clone());
        workers.spawn(async move {
            for round in 0..rounds {
                let now = now_millis();
                let id = ids.make(task, round, &counter);
                let event = NewEvent {
                    event_id: EventId::parse(&id).unwrap(),
                    event_type: EventType::parse("bench.item").unwrap(),
                    timestamp: now,
                    payload: json!({"id": id, "sent_at_us": 1_234_567, "pad": "x".repeat(200)}),
                    metadata: EventMetadata {
                        correlation_id: format!("corr-{id}"),
                        causation_id: None,
                        traceparent: None,
                        request_id: Some(format!("req-{id}")),
                        headers: None,
                    },
                    ordering_key: None,
                    source: EventSource::api(),
                    publisher: Some("key:bench".into()),
                    content_hash: format!("hash-{id}"),
                };
                let lease = FreshLease { owner: "node".into(), lease_until: now + 60_000, max: 10 };
                let ingested = store.ingest_routed(vec![event], now, Some(lease)).await.unwrap();
                for delivery in ingested.leased {
                    let attempt = Attempt {
                        delivery_id: delivery.id.clone(),
                        number: 1,
                        started_at: now,
                        duration_ms: 1,
                        outcome: AttemptOutcome::Succeeded,
                        status_code: Some(204),
                        error: None,
                        response_body: None,
                    };
                    let recorded = store
                        .record_attempt_observed("node", &attempt, NextStep::Succeeded, now_millis())
                        .await
                        .unwrap();
                    assert!(recorded.settled);
                }
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.unwrap();
    }
    let (cpu, seconds) = (cpu_seconds() - cpu, clock.elapsed().as_secs_f64());
    let (written, events) = (written_bytes() - written, (tasks * rounds) as f64);
    println!(
        "{events} events: {:.0} events/s, {:.1} µs CPU per event (ingest + settle), {:.1} KiB written per event",
        events / seconds,
        cpu / events * 1e6,
        written / events / 1024.0
    );
}
