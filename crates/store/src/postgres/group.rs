//! Group commit for ingest: the events of calls that arrive together go into one transaction.
//!
//! Each statement is a round trip to the server and each transaction a WAL flush; a call that
//! stored its events on its own cost five of the first and one of the second, and the
//! server's CPU went to the round trips. One writer task takes whatever calls are queued (up to
//! a bound) and stores all their events with one array-bound `INSERT` (`UNNEST`), route
//! them with one read of the subscriptions, and insert the deliveries of unordered
//! subscriptions with one more; ordered deliveries go one statement each, in event order, as
//! each must see the ones before it. Every call is answered after the commit that holds it.
//!
//! If the group's transaction fails, each of its calls runs again alone in a transaction of
//! its own, so one call's failure is its own. Nothing of the failed group was committed, so
//! nothing is stored twice; a commit whose answer was lost leaves ids that the calls run again
//! then find taken, and answer as duplicates.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Postgres, Transaction};
use switchyard_core::delivery::{Delivery, DeliveryStatus};
use switchyard_core::event::NewEvent;
use switchyard_core::id::DeliveryId;
use switchyard_core::store::{FreshLease, StoreError, StoreResult};
use switchyard_core::subscription::Subscription;
use switchyard_core::time::Millis;
use tokio::sync::{mpsc, oneshot};

use super::notify_work;
use crate::error::map_err;
use crate::fresh::Leasing;
use crate::gather::gather;
use crate::repo::{Fate, Written, written};
use crate::rows::{SubscriptionRow, decode_all, headers_json, to_json};
use crate::sql;

/// Calls waiting for a writer, at most; further callers wait to enqueue.
const QUEUE: usize = 256;
/// Calls in one transaction, at most.
const MAX_CALLS: usize = 256;
/// Events in one transaction, at most, so one commit stays short for those in it.
const MAX_EVENTS: usize = 5_000;

/// Stores events given as one array per column, in array order (so `seq` follows it), and
/// answers the id and sequence number of each one whose id was free.
const INSERT_EVENTS: &str = "INSERT INTO events (event_id, event_type, timestamp, payload, \
     correlation_id, causation_id, ordering_key, source, received_at, content_hash, traceparent, \
     request_id, published_by, headers) \
     SELECT event_id, event_type, timestamp, payload, correlation_id, causation_id, ordering_key, \
     source, received_at, content_hash, traceparent, request_id, published_by, headers \
     FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[], $9::int8[], $10::text[], $11::text[], $12::text[], $13::text[], \
     $14::text[]) \
     WITH ORDINALITY \
     AS e(event_id, event_type, timestamp, payload, correlation_id, causation_id, ordering_key, \
     source, received_at, content_hash, traceparent, request_id, published_by, headers, position) \
     ORDER BY position \
     ON CONFLICT (event_id) DO NOTHING RETURNING event_id, seq";

/// Pending deliveries of unordered subscriptions, due at their creation: what
/// `sql::INSERT_DELIVERY` writes when the delivery is not ordered.
const INSERT_UNORDERED_DELIVERIES: &str = "INSERT INTO deliveries (id, event_id, subscription_id, \
     destination_id, status, attempt_count, next_attempt_at, ordering_key, ordered, block_on_dead, \
     created_at, updated_at) \
     SELECT id, event_id, subscription_id, destination_id, $6, 0, created_at, ordering_key, FALSE, \
     FALSE, created_at, created_at \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $7::int8[]) \
     AS d(id, event_id, subscription_id, destination_id, ordering_key, created_at)";

struct Call {
    events: Vec<NewEvent>,
    now: Millis,
    lease: Option<FreshLease>,
    answer: oneshot::Sender<StoreResult<(Vec<Written>, Leasing)>>,
}

/// The queue in front of the writers. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct IngestGroup {
    queue: mpsc::Sender<Call>,
}

impl IngestGroup {
    /// Starts the writer task on `pool`; it ends when the last clone of the returned queue is
    /// dropped. A second writer measured no faster: groups only got smaller.
    pub(super) fn start(pool: PgPool) -> IngestGroup {
        let (queue, calls) = mpsc::channel(QUEUE);
        tokio::spawn(run(pool, calls));
        IngestGroup { queue }
    }

    /// Stores `events`, received at `now`, with their deliveries in the next group
    /// transaction, leasing what `lease` allows; answers once it committed.
    /// Answers what was written of each event, and which deliveries were leased.
    pub(super) async fn ingest(
        &self,
        events: Vec<NewEvent>,
        now: Millis,
        lease: Option<FreshLease>,
    ) -> StoreResult<(Vec<Written>, Leasing)> {
        let (answer, answered) = oneshot::channel();
        self.queue.send(Call { events, now, lease, answer }).await.map_err(|_| not_run())?;
        answered.await.map_err(|_| not_run())?
    }
}

fn not_run() -> StoreError {
    StoreError::Backend("the ingest was not run: the writers have stopped".into())
}

async fn run(pool: PgPool, mut calls: mpsc::Receiver<Call>) {
    while let Some(mut group) = gather(&mut calls, MAX_CALLS, MAX_EVENTS, |call| call.events.len()).await {
        match write(&pool, &group).await {
            Ok(fates) => {
                for (call, (fates, leasing)) in group.into_iter().zip(fates) {
                    let _ = call.answer.send(Ok((written(call.events, fates, call.now), leasing)));
                }
            }
            Err(error) if group.len() == 1 => {
                if let Some(call) = group.pop() {
                    let _ = call.answer.send(Err(error));
                }
            }
            Err(error) => {
                tracing::warn!(%error, calls = group.len(), "a group ingest failed; its calls run again one by one");
                for call in group {
                    let alone = write(&pool, std::slice::from_ref(&call)).await.and_then(|mut fates| {
                        fates.pop().ok_or_else(|| StoreError::Backend("an ingest answered no outcome".into()))
                    });
                    let _ = call
                        .answer
                        .send(alone.map(|(fates, leasing)| (written(call.events, fates, call.now), leasing)));
                }
            }
        }
    }
}

/// Stores the events of `calls` with their deliveries in one transaction; answers the fate of
/// each event, and what was leased, call by call.
async fn write(pool: &PgPool, calls: &[Call]) -> StoreResult<Vec<(Vec<Fate>, Leasing)>> {
    let mut tx: Transaction<'static, Postgres> = pool.begin().await.map_err(map_err)?;
    // Read inside the transaction, so a subscription created concurrently either routes the
    // whole group or none of it.
    let rows = sqlx::query_as::<_, SubscriptionRow>(sql::ENABLED_SUBSCRIPTIONS)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_err)?;
    let subscriptions: Vec<Subscription> = decode_all(rows)?;
    let paused: Vec<String> =
        sqlx::query_scalar(sql::PAUSED_DESTINATIONS).fetch_all(&mut *tx).await.map_err(map_err)?;
    let paused: HashSet<String> = paused.into_iter().collect();
    let mut inserted = insert_events(&mut tx, calls).await?;

    let mut unordered = Deliveries::default();
    let mut leased = LeasedDeliveries::default();
    let mut fates = Vec::with_capacity(calls.len());
    for call in calls {
        let mut of_call = Vec::with_capacity(call.events.len());
        let mut leasing = Leasing::new(call.lease.clone());
        for new in &call.events {
            // A second event with the same id in the group finds the id taken by the first.
            let Some(seq) = inserted.remove(new.event_id.as_str()) else {
                of_call.push(Fate::Taken);
                continue;
            };
            for subscription in subscriptions.iter().filter(|s| s.routes(&new.event_type)) {
                let (ordered, block_on_dead) = subscription.delivery_ordering(new.ordering_key.as_deref());
                let for_claims = ordered || paused.contains(subscription.destination_id.as_str());
                if let Some(delivery) = leasing.lease(new, subscription, for_claims, call.now) {
                    leased.push(delivery);
                } else if ordered {
                    insert_ordered(&mut tx, subscription, new, block_on_dead, call.now).await?;
                } else {
                    unordered.push(subscription, new, call.now);
                }
            }
            of_call.push(Fate::Created(seq));
        }
        fates.push((of_call, leasing));
    }
    unordered.insert(&mut tx).await?;
    leased.insert(&mut tx).await?;
    // Leased deliveries are the ingesting node's to run: only pending ones concern the others.
    if fates.iter().any(|(_, leasing)| leasing.left_pending()) {
        notify_work(&mut tx).await?;
    }
    tx.commit().await.map_err(map_err)?;
    Ok(fates)
}

/// Inserts every event of `calls` in one statement; answers the sequence number of each one
/// inserted, by id (an id given twice is inserted once, the first time).
async fn insert_events(conn: &mut PgConnection, calls: &[Call]) -> StoreResult<HashMap<String, i64>> {
    let count = calls.iter().map(|c| c.events.len()).sum();
    let mut columns = EventColumns::with_capacity(count);
    for call in calls {
        for new in &call.events {
            columns.push(new, call.now)?;
        }
    }
    let rows: Vec<(String, i64)> = sqlx::query_as(INSERT_EVENTS)
        .bind(columns.event_id)
        .bind(columns.event_type)
        .bind(columns.timestamp)
        .bind(columns.payload)
        .bind(columns.correlation_id)
        .bind(columns.causation_id)
        .bind(columns.ordering_key)
        .bind(columns.source)
        .bind(columns.received_at)
        .bind(columns.content_hash)
        .bind(columns.traceparent)
        .bind(columns.request_id)
        .bind(columns.published_by)
        .bind(columns.headers)
        .fetch_all(&mut *conn)
        .await
        .map_err(map_err)?;
    Ok(rows.into_iter().collect())
}

/// The events of a group, one array per column of `INSERT_EVENTS`.
#[derive(Default)]
struct EventColumns {
    event_id: Vec<String>,
    event_type: Vec<String>,
    timestamp: Vec<i64>,
    payload: Vec<String>,
    correlation_id: Vec<String>,
    causation_id: Vec<Option<String>>,
    ordering_key: Vec<Option<String>>,
    source: Vec<String>,
    received_at: Vec<i64>,
    content_hash: Vec<String>,
    traceparent: Vec<Option<String>>,
    request_id: Vec<Option<String>>,
    published_by: Vec<Option<String>>,
    headers: Vec<Option<String>>,
}

impl EventColumns {
    fn with_capacity(n: usize) -> Self {
        Self {
            event_id: Vec::with_capacity(n),
            event_type: Vec::with_capacity(n),
            timestamp: Vec::with_capacity(n),
            payload: Vec::with_capacity(n),
            correlation_id: Vec::with_capacity(n),
            causation_id: Vec::with_capacity(n),
            ordering_key: Vec::with_capacity(n),
            source: Vec::with_capacity(n),
            received_at: Vec::with_capacity(n),
            content_hash: Vec::with_capacity(n),
            traceparent: Vec::with_capacity(n),
            request_id: Vec::with_capacity(n),
            published_by: Vec::with_capacity(n),
            headers: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, new: &NewEvent, now: Millis) -> StoreResult<()> {
        self.event_id.push(new.event_id.as_str().to_owned());
        self.event_type.push(new.event_type.as_str().to_owned());
        self.timestamp.push(new.timestamp);
        self.payload.push(to_json("events.payload", &new.payload)?);
        self.correlation_id.push(new.metadata.correlation_id.clone());
        self.causation_id.push(new.metadata.causation_id.clone());
        self.ordering_key.push(new.ordering_key.clone());
        self.source.push(new.source.as_str().to_owned());
        self.received_at.push(now);
        self.content_hash.push(new.content_hash.clone());
        self.traceparent.push(new.metadata.traceparent.clone());
        self.request_id.push(new.metadata.request_id.clone());
        self.published_by.push(new.publisher.clone());
        self.headers.push(headers_json(new)?);
        Ok(())
    }
}

/// Deliveries of unordered subscriptions, one array per column of
/// `INSERT_UNORDERED_DELIVERIES`.
#[derive(Default)]
struct Deliveries {
    id: Vec<String>,
    event_id: Vec<String>,
    subscription_id: Vec<String>,
    destination_id: Vec<String>,
    ordering_key: Vec<Option<String>>,
    created_at: Vec<i64>,
}

impl Deliveries {
    fn push(&mut self, subscription: &Subscription, new: &NewEvent, now: Millis) {
        self.id.push(DeliveryId::generate().as_str().to_owned());
        self.event_id.push(new.event_id.as_str().to_owned());
        self.subscription_id.push(subscription.id.as_str().to_owned());
        self.destination_id.push(subscription.destination_id.as_str().to_owned());
        self.ordering_key.push(new.ordering_key.clone());
        self.created_at.push(now);
    }

    async fn insert(self, conn: &mut PgConnection) -> StoreResult<()> {
        if self.id.is_empty() {
            return Ok(());
        }
        sqlx::query(INSERT_UNORDERED_DELIVERIES)
            .bind(self.id)
            .bind(self.event_id)
            .bind(self.subscription_id)
            .bind(self.destination_id)
            .bind(self.ordering_key)
            .bind(DeliveryStatus::Pending.as_str())
            .bind(self.created_at)
            .execute(conn)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

/// Deliveries leased at their creation (`Leasing::lease`), one array per column of
/// `sql::INSERT_LEASED_DELIVERIES`.
#[derive(Default)]
struct LeasedDeliveries {
    id: Vec<String>,
    event_id: Vec<String>,
    subscription_id: Vec<String>,
    destination_id: Vec<String>,
    ordering_key: Vec<Option<String>>,
    lease_owner: Vec<Option<String>>,
    lease_expires_at: Vec<Option<i64>>,
    created_at: Vec<i64>,
}

impl LeasedDeliveries {
    fn push(&mut self, delivery: &Delivery) {
        self.id.push(delivery.id.as_str().to_owned());
        self.event_id.push(delivery.event_id.as_str().to_owned());
        self.subscription_id.push(delivery.subscription_id.as_str().to_owned());
        self.destination_id.push(delivery.destination_id.as_str().to_owned());
        self.ordering_key.push(delivery.ordering_key.clone());
        self.lease_owner.push(delivery.lease_owner.clone());
        self.lease_expires_at.push(delivery.lease_expires_at);
        self.created_at.push(delivery.created_at);
    }

    async fn insert(self, conn: &mut PgConnection) -> StoreResult<()> {
        if self.id.is_empty() {
            return Ok(());
        }
        sqlx::query(sql::INSERT_LEASED_DELIVERIES)
            .bind(self.id)
            .bind(self.event_id)
            .bind(self.subscription_id)
            .bind(self.destination_id)
            .bind(self.ordering_key)
            .bind(self.lease_owner)
            .bind(self.lease_expires_at)
            .bind(self.created_at)
            .execute(conn)
            .await
            .map_err(map_err)?;
        Ok(())
    }
}

/// One delivery of an ordered subscription: it waits for its turn if its key has one queued,
/// which must include those inserted before it in this transaction.
async fn insert_ordered(
    conn: &mut PgConnection,
    subscription: &Subscription,
    new: &NewEvent,
    block_on_dead: bool,
    now: Millis,
) -> StoreResult<()> {
    sqlx::query(sql::INSERT_DELIVERY)
        .bind(DeliveryId::generate().as_str())
        .bind(new.event_id.as_str())
        .bind(subscription.id.as_str())
        .bind(subscription.destination_id.as_str())
        .bind(DeliveryStatus::Pending.as_str())
        .bind(true)
        .bind(new.ordering_key.as_deref())
        .bind(block_on_dead)
        .bind(now)
        .execute(conn)
        .await
        .map_err(map_err)?;
    Ok(())
}
